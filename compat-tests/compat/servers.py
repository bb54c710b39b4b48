"""The receiving side as one: the test CA, Postfix and DNS started together
(or why they are not), and the config spoolmail delivers with."""

import os
import shutil
import time
import types

from .common import CA_FILE, DEADLINE, Fail, IS_ROOT, MX_ADDR, MX_HOST, Skip, TLS_DIR, note, run
from .spool import CURRENT
from .provision import write_config
from .postfix import Postfix
from .dns import Dns


TLS_CNF = """\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = placeholder
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:{host}
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


def make_certificates(openssl):
    """A fresh test CA (CA_FILE) and a certificate for MX_HOST signed by it,
    valid for two days, in TLS_DIR: Postfix's smtpd offers STARTTLS with it
    and spoolmail verifies it against tls_ca_file. Keys are root's alone
    (smtpd reads its key as root, before it drops privileges)."""
    shutil.rmtree(TLS_DIR, ignore_errors=True)
    os.makedirs(TLS_DIR, mode=0o755)
    cnf = os.path.join(TLS_DIR, "openssl.cnf")
    with open(cnf, "w") as f:
        f.write(TLS_CNF.format(host=MX_HOST))
    key, cert, csr = (os.path.join(TLS_DIR, n) for n in ("mx.key", "mx.pem", "mx.csr"))
    ca_key = os.path.join(TLS_DIR, "ca.key")
    old = os.umask(0o077)
    try:
        run([openssl, "req", "-config", cnf, "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key,
             "-out", CA_FILE, "-days", "2", "-subj", "/CN=spoolmail compat-tests CA", "-extensions", "ca",
             "-set_serial", "1"], what="openssl req (test CA)")
        run([openssl, "req", "-config", cnf, "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
             "-out", csr, "-subj", f"/CN={MX_HOST}"], what="openssl req (server key)")
        run([openssl, "x509", "-req", "-in", csr, "-CA", CA_FILE, "-CAkey", ca_key, "-set_serial", "2",
             "-days", "2", "-extfile", cnf, "-extensions", "server", "-out", cert], what="openssl x509 (sign)")
    finally:
        os.umask(old)
    for public in (CA_FILE, cert):
        os.chmod(public, 0o644)
    return types.SimpleNamespace(cert=cert, key=key)


class Servers:
    def __init__(self):
        self.postfix = Postfix()
        self.dns = Dns()
        self.ready = False
        self.why_not = None  # why mail is not delivered end to end
        self.failure = None  # a failure to report as such (not a mere absence)

    def start(self, env):
        lifetime = DEADLINE - time.time() + 60
        try:
            if not IS_ROOT:
                raise Skip("Postfix's master must be started as root")
            if "dnsmasq" not in env.path:
                raise Skip(f"no DNS server: {env.missing.get('dnsmasq', 'dnsmasq is not available')}")
            if "openssl" not in env.path:
                raise Skip(f"no openssl to make the test CA: {env.missing.get('openssl', 'openssl is not available')}")
            self.postfix.fetch()
            self.postfix.configure(make_certificates(env.path["openssl"]))
            self.postfix.start(lifetime)
            self.dns.start(lifetime)
            self.ready = True
            note(f"Postfix listening on {MX_ADDR}:{self.postfix.port} (instance in {self.postfix.dir}); "
                 f"DNS fixture on 127.0.0.1:{self.dns.port}")
        except Skip as e:
            self.why_not = str(e)
        except Fail as e:
            self.why_not = f"the receiving side could not be started (FAIL receivers: {e})"
            self.failure = str(e)
        if not self.ready:
            self.stop()

    def stop(self):
        self.dns.stop()
        self.postfix.stop()


# Started by the entry point (compat-tests/run) before the first case.
SERVERS = Servers()


def use_config(*extra):
    """The config for this case only: the usual one plus `extra` lines
    (run_case writes the usual one back after the case)."""
    write_config(SERVERS, extra)
    CURRENT.config_changed = True

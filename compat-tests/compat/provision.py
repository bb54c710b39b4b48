"""Provisioning: spoolmail built and installed into the private prefix, its
config, and the callers installed from Debian's packages (never an MTA:
/usr/sbin/sendmail is never touched)."""

import os
import re
import shutil
import socket
import subprocess
import sys
import time

from .common import (
    CA_FILE,
    CONFIG,
    DOMAIN,
    Fail,
    IS_ROOT,
    LOG,
    MTA_PROVIDES,
    NAGIOS_DIR,
    PREFIX,
    ROOT,
    SENDMAIL,
    SPOOL,
    WORK,
    note,
    run,
    short,
)


def install_spoolmail():
    if os.path.isdir(PREFIX):
        shutil.rmtree(PREFIX)
    os.makedirs(WORK, exist_ok=True)
    # The dev profile: the same code without the release build's LTO, which
    # takes minutes on a small machine. PROFILE=release checks the release build.
    env = dict(os.environ, PROFILE=os.environ.get("PROFILE", "dev"))
    p = run([os.path.join(ROOT, "scripts", "install.sh"), PREFIX], cwd=ROOT, timeout=480, env=env, check=False, what="scripts/install.sh")
    if p.returncode != 0:
        out = (p.stdout + p.stderr).decode(errors="replace").strip().splitlines()
        raise Fail(f"scripts/install.sh exited {p.returncode}: {' | '.join(out[-5:])}")
    # Until the receivers are up, nothing may leave: the only relay is a
    # closed port on loopback (write_config points it at them afterwards).
    write_config(None)
    # The installed binary must read that config without -C (built with SPOOLMAIL_CONFIG).
    p = run([SENDMAIL, "-bp"], what="sendmail -bp")
    if b"Mail queue is empty" not in p.stdout:
        raise Fail(f"sendmail -bp on the new spool printed {short(p.stdout)}")


def write_config(servers, extra=()):
    """spoolmail's config. With the receivers up: MX delivery through the DNS
    fixture to Postfix's port, TLS required and verified against the test CA;
    else a smarthost on a closed loopback port, so that a delivery attempt
    (cronie's -odi) is deferred and nothing leaves. No aliases (the machine's
    /etc/aliases is not the tests' business) unless a case says otherwise:
    `extra` lines come last and override."""
    lines = [f"spool_dir = {SPOOL}", f"log = {LOG}", f"qualify_domain = {DOMAIN}",
             "delivery_mode = queue", "connect_timeout = 10s", "transaction_deadline = 2m"]
    if servers and servers.ready:
        lines += [f"dns_server = 127.0.0.1:{servers.dns.port}", f"smtp_port = {servers.postfix.port}",
                  "tls = required", f"tls_ca_file = {CA_FILE}"]
    else:
        port = closed_local_port()
        lines += [f"smarthost = 127.0.0.1:{port}", f"dns_server = 127.0.0.1:{port}"]
    keys = {line.partition(" = ")[0] for line in extra}
    lines = [line for line in lines if line.partition(" = ")[0] not in keys] + list(extra)
    if "aliases_file" not in keys:
        lines.append("aliases_file = none")
    with open(CONFIG, "w") as f:
        f.write("\n".join(lines) + "\n")


def closed_local_port():
    """A loopback TCP port that nothing listens on (bound, then let go)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def sendmail_state():
    path = "/usr/sbin/sendmail"
    return os.path.realpath(path) if os.path.lexists(path) else None


def find_git_with_send_email():
    for git in [shutil.which("git"), "/usr/bin/git"]:
        if not git or not os.access(git, os.X_OK):
            continue
        p = subprocess.run([git, "--exec-path"], capture_output=True, timeout=30)
        exec_path = p.stdout.decode().strip()
        if p.returncode == 0 and os.access(os.path.join(exec_path, "git-send-email"), os.X_OK):
            return git
    return None


# What each caller is, how to tell it is here, and which Debian package brings it.
TOOLS = {
    "php": ("php-cli", lambda: shutil.which("php")),
    "s-nail": ("s-nail", lambda: shutil.which("s-nail")),
    "mutt": ("mutt", lambda: shutil.which("mutt")),
    "check_mailq": ("monitoring-plugins-standard",
                    lambda: (os.path.join(NAGIOS_DIR, "check_mailq")
                             if os.access(os.path.join(NAGIOS_DIR, "check_mailq"), os.X_OK) else None)),
    "git-send-email": ("git-email", find_git_with_send_email),
    # Symfony Mailer, whose default transport runs `/usr/sbin/sendmail -bs`.
    "symfony-mailer": ("php-symfony-mailer",
                       lambda: ("/usr/share/php" if os.path.exists(
                           "/usr/share/php/Symfony/Component/Mailer/Transport/SendmailTransport.php") else None)),
    # Not a caller: the DNS fixture (tests/fixtures/dns_server.py) runs dnsmasq.
    "dnsmasq": ("dnsmasq-base", lambda: next((p for p in (shutil.which("dnsmasq"), "/usr/sbin/dnsmasq")
                                              if p and os.access(p, os.X_OK)), None)),
    # Not a caller: makes the test CA and Postfix's certificate.
    "openssl": ("openssl", lambda: shutil.which("openssl")),
}


class Env:
    """Where each caller is, or why it is not."""

    def __init__(self):
        self.path = {}
        self.missing = {}


def apt_mta_in(pkgs):
    """The MTA packages that installing `pkgs` would pull in (apt-get -s)."""
    p = run(["apt-get", "install", "-s", "--no-install-recommends", *pkgs], timeout=60, check=False, what="apt-get -s")
    if p.returncode != 0:
        return None, p.stderr.decode(errors="replace").strip().splitlines()[-1:]
    names = re.findall(r"^Inst (\S+)", p.stdout.decode(), re.M)
    if not names:
        return [], []
    show = run(["apt-cache", "show", "--no-all-versions", *names], timeout=60, check=False, what="apt-cache show")
    mtas = []
    for stanza in show.stdout.decode(errors="replace").split("\n\n"):
        pkg = re.search(r"^Package: (\S+)", stanza, re.M)
        provides = re.search(r"^Provides: (.*)$", stanza, re.M)
        if pkg and provides and MTA_PROVIDES in provides.group(1):
            mtas.append(pkg.group(1))
    return mtas, []


def setup_callers():
    env = Env()
    wanted = {}
    for tool, (pkg, find) in TOOLS.items():
        path = find()
        if path:
            env.path[tool] = path
        else:
            wanted[tool] = pkg
    mailx_here = os.path.exists(os.path.join(WORK, "bsd-mailx", "usr", "bin", "bsd-mailx"))
    why_not = ("COMPAT_NO_INSTALL is set" if os.environ.get("COMPAT_NO_INSTALL")
               else "not root" if not IS_ROOT else "no apt-get" if not shutil.which("apt-get") else None)
    if why_not:
        for tool, pkg in wanted.items():
            env.missing[tool] = f"{tool} is not installed (Debian package {pkg}) and cannot be: {why_not}"
        if not mailx_here:
            env.missing["bsd-mailx"] = f"bsd-mailx is not unpacked in work/ and cannot be: {why_not}"
    else:
        try:
            if wanted or not mailx_here:
                note("apt-get update")
                p = run(["apt-get", "update", "-q"], timeout=120, check=False, what="apt-get update")
                if p.returncode != 0:
                    note(f"apt-get update failed: {p.stderr.decode(errors='replace').strip()[-300:]}")
            if wanted:
                apt_install(env, wanted)
            if not mailx_here:
                unpack_bsd_mailx()
        except Fail as e:
            note(f"installing callers: {e}")
            for tool in wanted:
                env.missing.setdefault(tool, f"could not be installed: {e}")
            env.missing.setdefault("bsd-mailx", f"could not be unpacked: {e}")
    for tool, (pkg, find) in TOOLS.items():
        if tool in wanted and tool not in env.missing:
            path = find()
            if path:
                env.path[tool] = path
            else:
                env.missing[tool] = f"installing {pkg} did not provide {tool} (see work/apt-install.log)"
    if os.path.exists(os.path.join(WORK, "bsd-mailx", "usr", "bin", "bsd-mailx")):
        env.missing.pop("bsd-mailx", None)
    setup_nodemailer(env)
    return env


def apt_install(env, wanted):
    """Installs the packages in `wanted` (tool -> package) that pull in no MTA."""
    before = sendmail_state()
    ok = []
    for tool, pkg in wanted.items():
        mtas, err = apt_mta_in([pkg])
        if mtas is None:
            env.missing[tool] = f"apt-get cannot install {pkg}: {' '.join(err)}"
        elif mtas:
            env.missing[tool] = f"{pkg} would pull in an MTA ({', '.join(mtas)}); not installed"
        else:
            ok.append(pkg)
    if not ok:
        return
    note(f"apt-get install {' '.join(ok)}")
    t0 = time.time()
    p = run(["apt-get", "install", "-y", "-q", "--no-install-recommends", "-o", "DPkg::Lock::Timeout=60", *ok],
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"}, timeout=240, check=False,
            what="apt-get install")
    with open(os.path.join(WORK, "apt-install.log"), "wb") as f:
        f.write(p.stdout + p.stderr)
    note(f"apt-get install exited {p.returncode} after {time.time() - t0:.0f}s (log: compat-tests/work/apt-install.log)")
    if sendmail_state() != before:
        # Should never happen: every package was checked with apt-get -s first.
        print(f"FAIL environment: /usr/sbin/sendmail changed from {before} to {sendmail_state()} "
              "while installing callers", flush=True)
        sys.exit(1)


def unpack_bsd_mailx():
    """bsd-mailx Depends on default-mta | mail-transport-agent (exim4 on
    Debian), so it is not installed: its .deb and liblockfile1's are
    downloaded and unpacked into work/bsd-mailx, and it runs from there."""
    debs = os.path.join(WORK, "debs")
    shutil.rmtree(debs, ignore_errors=True)
    os.makedirs(debs)
    note("apt-get download bsd-mailx liblockfile1")
    run(["apt-get", "download", "-q", "-o", "APT::Sandbox::User=root", "bsd-mailx", "liblockfile1"],
        cwd=debs, timeout=60, what="apt-get download")
    tmp = os.path.join(WORK, "bsd-mailx.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    for deb in sorted(os.listdir(debs)):
        run(["dpkg-deb", "-x", os.path.join(debs, deb), tmp], what="dpkg-deb -x")
    shutil.rmtree(os.path.join(WORK, "bsd-mailx"), ignore_errors=True)
    os.rename(tmp, os.path.join(WORK, "bsd-mailx"))


def setup_nodemailer(env):
    """Nodemailer, from the npm registry into work/node (nothing system-wide)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        env.missing["nodemailer"] = "Node.js and npm are not installed on this machine"
        return
    prefix = os.path.join(WORK, "node")
    module = os.path.join(prefix, "node_modules", "nodemailer")
    if not os.path.exists(os.path.join(module, "package.json")):
        if os.environ.get("COMPAT_NO_INSTALL"):
            env.missing["nodemailer"] = "nodemailer is not installed in work/node and COMPAT_NO_INSTALL is set"
            return
        try:
            version = run([node, "--version"], check=False).stdout.decode().strip()
            major = int(re.match(r"v(\d+)", version).group(1)) if re.match(r"v(\d+)", version) else 0
            spec = "nodemailer" if major >= 20 else "nodemailer@6"  # 7 and later want Node 20
            note(f"npm install {spec} (node {version})")
            run([npm, "install", "--no-audit", "--no-fund", "--no-save", "--prefix", prefix, spec],
                timeout=90, what="npm install")
        except Fail as e:
            env.missing["nodemailer"] = f"npm install nodemailer: {e}"
            return
    env.path["nodemailer"] = module

"""The Postfix instance: Debian's postfix package extracted with dpkg -x and
run from a private main.cf, master.cf and queue directory, never installed."""

import glob
import grp
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import time

from .common import DOMAIN, Fail, MX_ADDR, MX_HOST, OTHER, POSTFIX_PKG, Skip, WORK, note, run, short
from .spool import Landed
from .provision import apt_mta_in


# the DNS fixture with the test domains' MX records


def stop_group(proc, what, grace=10):
    """Ends a process we started in its own session, with everything in its
    process group: SIGTERM, then SIGKILL after `grace` seconds."""
    if proc is None:
        return
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(wait)
            # The group may outlive its leader for a moment (Postfix's daemons).
            for _ in range(int(wait * 10)):
                try:
                    os.killpg(proc.pid, 0)
                except ProcessLookupError:
                    return
                time.sleep(0.1)
        except subprocess.TimeoutExpired:
            pass
    note(f"{what} (process group {proc.pid}) did not stop")


def free_port(host):
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def world_traversable(path):
    """True when every directory down to `path` lets others through (the
    virtual(8) delivery agent writes the maildir as nobody)."""
    path = os.path.abspath(path)
    while True:
        if os.path.exists(path) and not os.stat(path).st_mode & stat.S_IXOTH:
            return False
        parent = os.path.dirname(path)
        if parent == path:
            return True
        path = parent


class Postfix:
    """A private Postfix instance: master -c CONF -d, with smtpd on
    MX_ADDR:port, accepting every address of the test domains and delivering
    each recipient's copy with virtual(8) into one maildir (inbox/new), where
    Delivered-To names the recipient and Return-Path the envelope sender.

    The binaries come from Debian's postfix package (apt-get download, dpkg-deb
    -x into work/postfix-pkg); /usr/sbin/sendmail and /etc/postfix are never
    touched. They find their libpostfix-*.so through RUNPATH /usr/lib/postfix,
    which does not exist here: master gets LD_LIBRARY_PATH, and passes it on to
    the daemons it starts through import_environment (none is set-id)."""

    SERVICES = """\
{listen} inet n - n - - smtpd
cleanup   unix  n - n - 0 cleanup
qmgr      unix  n - n 300 1 qmgr
rewrite   unix  - - n - - trivial-rewrite
bounce    unix  - - n - 0 bounce
defer     unix  - - n - 0 bounce
trace     unix  - - n - 0 bounce
verify    unix  - - n - 1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n - - proxymap
virtual   unix  - n n - - virtual
error     unix  - - n - - error
retry     unix  - - n - - error
discard   unix  - - n - - discard
anvil     unix  - - n - 1 anvil
scache    unix  - - n - 1 scache
tlsmgr    unix  - - n 1000? 1 tlsmgr
postlog   unix-dgram n - n - 1 postlogd
"""
    QUEUE_DIRS = ("active", "bounce", "corrupt", "defer", "deferred", "flush", "hold", "incoming", "private",
                  "saved", "trace")
    BUSY_DIRS = ("incoming", "active", "deferred", "hold", "maildrop")

    def __init__(self):
        self.proc = None
        self.watchdog = None
        self.port = None
        self.dir = None
        self.log_offset = 0

    # Where things are
    @property
    def lib(self):
        return os.path.join(POSTFIX_PKG, "usr", "lib", "postfix")

    @property
    def inbox(self):
        return os.path.join(self.dir, "mail", "inbox")

    @property
    def log(self):
        return os.path.join(self.dir, "postfix.log")

    def fetch(self):
        """Debian's postfix .deb, unpacked into work/postfix-pkg (kept between runs)."""
        debs = os.path.join(WORK, "postfix-debs")
        if os.access(os.path.join(self.lib, "sbin", "master"), os.X_OK):
            self.install_libraries(next(iter(glob.glob(os.path.join(debs, "postfix_*.deb"))), None))
            return
        if os.environ.get("COMPAT_NO_INSTALL"):
            raise Skip("Debian's postfix is not unpacked in work/postfix-pkg and COMPAT_NO_INSTALL is set")
        if not shutil.which("apt-get"):
            raise Skip("no apt-get to download Debian's postfix package")
        shutil.rmtree(debs, ignore_errors=True)
        os.makedirs(debs)
        note("apt-get download postfix (unpacked with dpkg-deb -x, never installed)")
        argv = ["apt-get", "download", "-q", "-o", "APT::Sandbox::User=root", "postfix"]
        if run(argv, cwd=debs, timeout=90, check=False, what="apt-get download").returncode != 0:
            run(["apt-get", "update", "-q"], timeout=120, check=False, what="apt-get update")
            run(argv, cwd=debs, timeout=90, what="apt-get download postfix")
        (deb,) = glob.glob(os.path.join(debs, "postfix_*.deb"))
        tmp = POSTFIX_PKG + ".tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        run(["dpkg-deb", "-x", deb, tmp], what="dpkg-deb -x")
        shutil.rmtree(POSTFIX_PKG, ignore_errors=True)
        os.rename(tmp, POSTFIX_PKG)
        self.install_libraries(deb)

    def install_libraries(self, deb):
        """The shared libraries Postfix links and this machine lacks (libicu,
        libsasl2, ...), from the package's Depends; never an MTA."""
        daemons = [os.path.join(self.lib, "sbin", n) for n in ["master"] + re.findall(r"(\S+)$", self.SERVICES, re.M)]
        missing = set()
        for b in daemons:
            p = run(["ldd", b], env={**os.environ, "LD_LIBRARY_PATH": self.lib}, check=False, what="ldd")
            missing |= set(re.findall(rb"^\s*(\S+) => not found", p.stdout, re.M))
        if not missing:
            return
        if os.environ.get("COMPAT_NO_INSTALL"):
            raise Skip(f"Postfix's binaries lack {sorted(m.decode() for m in missing)} and COMPAT_NO_INSTALL is set")
        if deb is None:
            raise Fail(f"Postfix's binaries lack {sorted(m.decode() for m in missing)} (no .deb in work/postfix-debs "
                       "to read its Depends from: remove work/postfix-pkg to download it again)")
        depends = run(["dpkg-deb", "-f", deb, "Depends"], what="dpkg-deb -f").stdout.decode()
        libs = sorted({alt.split()[0] for alt in re.split(r"[,|]", depends) if alt.split() and alt.split()[0].startswith("lib")})
        # Only those not installed (never an upgrade of, say, libc6).
        libs = [lib for lib in libs if b"install ok installed" not in run(
            ["dpkg-query", "-W", "-f=${Status}", lib], check=False, what="dpkg-query").stdout]
        if not libs:
            raise Fail(f"Postfix's binaries lack {sorted(m.decode() for m in missing)}, and every library package "
                       "in its Depends is installed")
        mtas, err = apt_mta_in(libs)
        if mtas is None or mtas:
            raise Fail(f"Postfix needs {sorted(m.decode() for m in missing)}; installing {libs}: "
                       + (f"would pull in an MTA ({', '.join(mtas)})" if mtas else " ".join(err)))
        note(f"apt-get install {' '.join(libs)} (Postfix lacks {', '.join(sorted(m.decode() for m in missing))})")
        run(["apt-get", "install", "-y", "-q", "--no-install-recommends", "-o", "DPkg::Lock::Timeout=60", *libs],
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"}, timeout=240, what="apt-get install (Postfix's libraries)")

    @staticmethod
    def accounts():
        """mail_owner, setgid_group (distinct ids, as Postfix checks) and the
        uid/gid the maildir is written as. Existing accounts are used (postfix
        and postdrop where Postfix is installed, else Debian's base accounts
        mail and news); only where neither exists are postfix and postdrop
        created (useradd/groupadd --system)."""
        def user(name):
            try:
                return pwd.getpwnam(name)
            except KeyError:
                return None

        def group(name):
            try:
                return grp.getgrnam(name)
            except KeyError:
                return None

        owner = next((u for u in ("postfix", "mail") if user(u) and user(u).pw_uid != 0), None)
        if owner is None:
            note("creating the system user postfix (no Postfix account exists)")
            run(["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
                 "--shell", "/usr/sbin/nologin", "postfix"], what="useradd")
            owner = "postfix"
        owner_gid = user(owner).pw_gid
        setgid = next((g for g in ("postdrop", "news") if group(g) and group(g).gr_gid not in (owner_gid, 0)), None)
        if setgid is None:
            note("creating the system group postdrop")
            run(["groupadd", "--system", "postdrop"], what="groupadd")
            setgid = "postdrop"
        nobody = user("nobody")
        if nobody is None or nobody.pw_uid in (0, user(owner).pw_uid):
            raise Fail("no usable `nobody` account for Postfix's default_privs and the maildir")
        return owner, setgid, nobody

    def configure(self, tls):
        """Writes the instance's config; `tls` holds its certificate and key
        (make_certificates)."""
        owner, setgid, nobody = self.accounts()
        inside = os.path.join(WORK, "postfix")
        self.dir = inside if world_traversable(WORK) else "/tmp/spoolmail-compat-postfix"
        shutil.rmtree(self.dir, ignore_errors=True)
        conf, queue, data, mail = (os.path.join(self.dir, n) for n in ("conf", "queue", "data", "mail"))
        for d in (conf, queue, data, mail):
            os.makedirs(d)
        os.chmod(self.dir, 0o755)
        for d in self.QUEUE_DIRS:
            os.mkdir(os.path.join(queue, d), 0o700)
            shutil.chown(os.path.join(queue, d), owner)
        for d, mode in (("maildrop", 0o1730), ("public", 0o710)):
            os.mkdir(os.path.join(queue, d))
            shutil.chown(os.path.join(queue, d), owner, setgid)
            os.chmod(os.path.join(queue, d), mode)
        os.mkdir(os.path.join(queue, "pid"), 0o755)
        shutil.chown(data, owner)
        os.chmod(data, 0o700)
        os.chown(mail, nobody.pw_uid, nobody.pw_gid)
        self.port = free_port(MX_ADDR)
        X = POSTFIX_PKG
        main_cf = f"""\
# Generated by compat-tests/run: a private instance, for the tests only.
compatibility_level = 3.6
queue_directory = {queue}
command_directory = {X}/usr/sbin
daemon_directory = {X}/usr/lib/postfix/sbin
shlib_directory = {X}/usr/lib/postfix
meta_directory = {conf}
data_directory = {data}
mail_owner = {owner}
setgid_group = {setgid}
default_privs = nobody
import_environment = MAIL_CONFIG MAIL_DEBUG MAIL_LOGTAG TZ LANG=C LD_LIBRARY_PATH={self.lib}
maillog_file = {self.log}
maillog_file_prefixes = {self.dir}
myhostname = {MX_HOST}
mydomain = {DOMAIN}
myorigin = $myhostname
mydestination =
relay_domains =
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_peername_lookup = no
alias_maps =
alias_database =
biff = no
# Only the test domains, into one maildir; nothing leaves, nothing is local.
virtual_mailbox_domains = {DOMAIN} {OTHER}
virtual_mailbox_base = {mail}
virtual_mailbox_maps = static:inbox/
virtual_uid_maps = static:{nobody.pw_uid}
virtual_gid_maps = static:{nobody.pw_gid}
local_transport = error:5.1.1 no local delivery in this test instance
default_transport = error:5.7.1 only the test domains are delivered here
relay_transport = error:5.7.1 only the test domains are delivered here
# Headers stay as spoolmail sent them (no address rewriting).
local_header_rewrite_clients =
# STARTTLS offered with mx.example.test's certificate from the test CA; the
# Received header says which protocol and cipher each message came over.
smtpd_tls_cert_file = {tls.cert}
smtpd_tls_key_file = {tls.key}
smtpd_tls_security_level = may
smtpd_tls_received_header = yes
smtpd_tls_loglevel = 1
smtpd_tls_session_cache_database =
"""
        with open(os.path.join(conf, "main.cf"), "w") as f:
            f.write(main_cf)
        with open(os.path.join(conf, "master.cf"), "w") as f:
            f.write(self.SERVICES.format(listen=f"{MX_ADDR}:{self.port}"))

    def start(self, lifetime):
        master = os.path.join(self.lib, "sbin", "master")
        out = open(os.path.join(self.dir, "master.out"), "wb")
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LD_LIBRARY_PATH": self.lib, "LANG": "C", "TZ": "UTC"}
        # -d: in the foreground, as our child; its daemons share its process
        # group, which stop() ends. timeout(1) bounds its life in any case,
        # and a watchdog ends the group when this runner ends, however it ends.
        self.proc = subprocess.Popen(["timeout", "-k", "5", str(int(lifetime)), master, "-c",
                                      os.path.join(self.dir, "conf"), "-d"],
                                     stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env,
                                     start_new_session=True)
        out.close()
        self.watchdog = subprocess.Popen(
            ["sh", "-c", 'tail --pid="$1" -f /dev/null; kill -TERM -"$2" 2>/dev/null || exit 0; sleep 10; '
             'kill -KILL -"$2" 2>/dev/null', "sh",
             str(os.getpid()), str(self.proc.pid)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.time() + 20
        while time.time() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                with socket.create_connection((MX_ADDR, self.port), timeout=2) as sock:
                    sock.settimeout(5)
                    banner = sock.recv(512)
                    sock.sendall(b"QUIT\r\n")
                if banner.startswith(b"220 "):
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise Fail(f"Postfix's smtpd did not greet on {MX_ADDR}:{self.port} within 20s "
                   f"(master {'exited ' + str(self.proc.returncode) if self.proc.poll() is not None else 'running'}): "
                   + self.log_excerpt(everything=True))

    def stop(self):
        if self.watchdog is not None:
            self.watchdog.kill()
            self.watchdog.wait()
            self.watchdog = None
        stop_group(self.proc, "Postfix")
        self.proc = None

    # Between and after cases
    def clear(self):
        """Empties the maildir (once Postfix is idle, at most 5 s: what a
        failed case left must not land in the next); the log is read from
        here on."""
        deadline = time.time() + 5
        while self.busy() and time.time() < deadline:
            time.sleep(0.1)
        for sub in ("new", "cur"):
            d = os.path.join(self.inbox, sub)
            if os.path.isdir(d):
                for name in os.listdir(d):
                    os.unlink(os.path.join(d, name))
        self.log_offset = os.path.getsize(self.log) if os.path.exists(self.log) else 0

    def busy(self):
        queue = os.path.join(self.dir, "queue")
        return any(files for d in self.BUSY_DIRS for _, _, files in os.walk(os.path.join(queue, d)))

    def copies(self):
        d = os.path.join(self.inbox, "new")
        return sorted(os.path.join(d, n) for n in os.listdir(d)) if os.path.isdir(d) else []

    def wait(self, count, timeout=30):
        """The copies in the maildir once `count` have landed and Postfix's
        queue is empty (or the time is up: Fail)."""
        deadline = time.time() + timeout
        while True:
            files = self.copies()
            if len(files) >= count and not self.busy():
                time.sleep(0.3)  # anything more on its way?
                if self.copies() == files and not self.busy():
                    return [Landed(f) for f in files]
            if time.time() > deadline:
                raise Fail(f"{len(files)} of {count} copies landed at Postfix within {timeout}s; "
                           + self.log_excerpt())
            time.sleep(0.1)

    def log_excerpt(self, everything=False):
        """Postfix's log lines of this case that are not routine, in short."""
        try:
            with open(self.log, "rb") as f:
                f.seek(0 if everything else self.log_offset)
                lines = f.read().decode(errors="replace").splitlines()
        except OSError:
            return f"no Postfix log at {self.log}"
        bad = [re.sub(r"^\S+ +\S+ \S+ \S+ ", "", line) for line in lines
               if re.search(r"reject|warning|fatal|panic|error|status=(?!sent)", line)]
        if not bad:
            return f"Postfix logged nothing amiss ({len(lines)} lines in {self.log})"
        return "Postfix logged: " + short(" | ".join(bad[-4:]), 600)

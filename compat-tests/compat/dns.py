"""DNS: the fixture tests/fixtures/dns_server.py (dnsmasq), authoritative for
the test domains, with their MX records pointing at the private Postfix."""

import os
import select
import shutil
import subprocess
import sys

from .common import DNS_FIXTURE, DOMAIN, Fail, MX_ADDR, MX_HOST, OTHER, WORK, short
from .postfix import stop_group


class Dns:
    """tests/fixtures/dns_server.py: dnsmasq on 127.0.0.1, a free port,
    authoritative for .test: example.test and other.test MX 10 mx.example.test,
    mx.example.test A MX_ADDR. It ends when its stdin (our pipe) closes."""

    def __init__(self):
        self.proc = None
        self.port = None

    def start(self, lifetime):
        outdir = os.path.join(WORK, "dns")
        shutil.rmtree(outdir, ignore_errors=True)
        os.makedirs(outdir)
        err = open(os.path.join(outdir, "fixture.stderr"), "wb")
        self.proc = subprocess.Popen(
            [sys.executable, DNS_FIXTURE, "--outdir", outdir, "--listen", "127.0.0.1", "--port", "0",
             "--mx-host", f"{DOMAIN},{MX_HOST},10", "--mx-host", f"{OTHER},{MX_HOST},10",
             "--host-record", f"{MX_HOST},{MX_ADDR}", "--lifetime", str(int(lifetime)), "--exit-on-stdin-eof"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, start_new_session=True)
        err.close()
        ready, _, _ = select.select([self.proc.stdout], [], [], 20)
        line = self.proc.stdout.readline().decode(errors="replace").split() if ready else []
        if len(line) != 3 or line[0] != "READY":
            self.stop()
            with open(os.path.join(outdir, "fixture.stderr"), "rb") as f:
                why = f.read().decode(errors="replace").strip()
            raise Fail(f"the DNS fixture did not start: {short(why, 300)}")
        self.port = int(line[2])

    def stop(self):
        if self.proc is None:
            return
        try:
            self.proc.stdin.close()
            self.proc.wait(5)
        except (OSError, subprocess.TimeoutExpired):
            stop_group(self.proc, "the DNS fixture")
        self.proc = None

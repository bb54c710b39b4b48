/* The floor of a durable enqueue: the least any MTA must do before exit 0.
 * Copies the message on stdin into TMPDIR/NAME (O_CREAT|O_EXCL) through one
 * 64 KiB buffer (the read and write sizes the contenders use; memory stays
 * flat at any size), fsyncs it, renames it to QUEUEDIR/NAME, fsyncs
 * QUEUEDIR, exits.
 * Usage: floor TMPDIR QUEUEDIR < message
 * Compiled at run time by scripts/bench-enqueue (plain gcc -O2, dynamically
 * linked like the contenders, so process start is paid the same way). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static void die(const char *what) { perror(what); exit(75); }

int main(int argc, char **argv) {
    if (argc != 3) { fprintf(stderr, "usage: floor TMPDIR QUEUEDIR\n"); return 64; }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    char name[64], tmp[4096], dst[4096];
    snprintf(name, sizeof name, "%lld.%09ld.%d", (long long)ts.tv_sec, ts.tv_nsec, (int)getpid());
    snprintf(tmp, sizeof tmp, "%s/%s", argv[1], name);
    snprintf(dst, sizeof dst, "%s/%s", argv[2], name);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
    if (fd < 0) die("open");
    static char buf[1 << 16];
    for (;;) {
        ssize_t len = read(0, buf, sizeof buf);
        if (len < 0) die("read");
        if (len == 0) break;
        for (ssize_t off = 0; off < len;) {
            ssize_t n = write(fd, buf + off, (size_t)(len - off));
            if (n < 0) die("write");
            off += n;
        }
    }
    if (fsync(fd) < 0) die("fsync");
    if (close(fd) < 0) die("close");
    if (rename(tmp, dst) < 0) die("rename");
    int dfd = open(argv[2], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) die("open dir");
    if (fsync(dfd) < 0) die("fsync dir");
    return 0;
}

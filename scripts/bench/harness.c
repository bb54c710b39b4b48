/* Timing harness: runs every contender of a spec file N times, round robin
 * (the order rotates each round so no contender always follows another), and
 * writes one line per run: NAME ROUND NANOSECONDS STATUS CPU_NANOSECONDS
 * MAXRSS_KB (tab-separated; ROUND -1 for warm-up runs; MAXRSS_KB is wait4's
 * ru_maxrss: the peak resident set of the child, or of the largest process
 * it waited for when that is larger). Each run is timed the same
 * way: clock_gettime(CLOCK_MONOTONIC) around fork + dup2 + execve + wait4
 * (whose rusage gives the CPU time, children waited for included); stdin is the contender's message file
 * (opened before the clock starts), stdout and stderr go to /dev/null
 * (warm-up runs: both to ERRDIR/NAME.err). Every child calls setns(2) into
 * its contender's mount namespace before execve: the harness's own for most,
 * a private one (`ns PATH`) for peers whose config paths are compiled in, so
 * every contender pays the same one system call.
 *
 * Usage: harness SPEC ROUNDS WARMUP OUTFILE ERRDIR
 * SPEC: blocks of lines `contender NAME`, `stdin PATH`, `env K=V`...,
 * `arg ARG`... (the first arg is the program), optional `ns PATH` (a
 * /proc/PID/ns/mnt to run in), `end`. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAXC 16
#define MAXA 64

struct contender {
    char *name, *stdin_path, *ns_path;
    int nsfd;
    char *argv[MAXA + 1];
    char *envp[MAXA + 1];
    int argc, envc;
};

static struct contender cs[MAXC];
static int nc;

static void die(const char *msg) { perror(msg); exit(2); }

static void load(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) die(path);
    char line[8192];
    struct contender *c = NULL;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        char *sp = strchr(line, ' ');
        char *val = sp ? strdup(sp + 1) : NULL;
        if (sp) *sp = 0;
        if (!strcmp(line, "contender")) {
            if (nc == MAXC) { fprintf(stderr, "too many contenders\n"); exit(2); }
            c = &cs[nc++];
            c->name = val;
        } else if (!c) {
            continue;
        } else if (!strcmp(line, "ns")) {
            c->ns_path = val;
        } else if (!strcmp(line, "stdin")) {
            c->stdin_path = val;
        } else if (!strcmp(line, "env") && c->envc < MAXA) {
            c->envp[c->envc++] = val;
        } else if (!strcmp(line, "arg") && c->argc < MAXA) {
            c->argv[c->argc++] = val;
        } else if (!strcmp(line, "end")) {
            c = NULL;
        }
    }
    fclose(f);
}

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Returns the wait status; *ns gets the elapsed time, *cpu the user + system
 * CPU time of the child and of the children it waited for, *rss its peak
 * resident set (KiB). */
static int run_once(struct contender *c, int errfd, long long *ns, long long *cpu, long *rss) {
    int in = open(c->stdin_path ? c->stdin_path : "/dev/null", O_RDONLY | O_CLOEXEC);
    if (in < 0) die(c->stdin_path);
    long long t0 = now_ns();
    pid_t pid = fork();
    if (pid < 0) die("fork");
    if (pid == 0) {
        dup2(in, 0);
        dup2(errfd, 1);
        dup2(errfd, 2);
        if (setns(c->nsfd, CLONE_NEWNS) < 0) _exit(126);
        execve(c->argv[0], c->argv, c->envp);
        _exit(127);
    }
    int status;
    struct rusage ru;
    while (wait4(pid, &status, 0, &ru) < 0)
        if (errno != EINTR) die("wait4");
    *ns = now_ns() - t0;
    *cpu = (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000LL +
           (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000LL;
    *rss = ru.ru_maxrss;
    close(in);
    return status;
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: harness SPEC ROUNDS WARMUP OUTFILE ERRDIR\n");
        return 2;
    }
    load(argv[1]);
    int rounds = atoi(argv[2]), warmup = atoi(argv[3]);
    FILE *out = fopen(argv[4], "w");
    if (!out) die(argv[4]);
    int devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (devnull < 0) die("/dev/null");
    for (int i = 0; i < nc; i++) {
        if (!cs[i].argc) { fprintf(stderr, "%s: no program\n", cs[i].name); return 2; }
        const char *ns = cs[i].ns_path ? cs[i].ns_path : "/proc/self/ns/mnt";
        cs[i].nsfd = open(ns, O_RDONLY | O_CLOEXEC);
        if (cs[i].nsfd < 0) die(ns);
        char path[4096];
        snprintf(path, sizeof path, "%s/%s.err", argv[5], cs[i].name);
        int errfd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (errfd < 0) die(path);
        for (int w = 0; w < warmup; w++) {
            long long ns, cpu;
            long rss;
            int st = run_once(&cs[i], errfd, &ns, &cpu, &rss);
            fprintf(out, "%s\t-1\t%lld\t%d\t%lld\t%ld\n", cs[i].name, ns, st, cpu, rss);
        }
        close(errfd);
    }
    for (int r = 0; r < rounds; r++) {
        for (int k = 0; k < nc; k++) {
            struct contender *c = &cs[(r + k) % nc];
            long long ns, cpu;
            long rss;
            int st = run_once(c, devnull, &ns, &cpu, &rss);
            fprintf(out, "%s\t%d\t%lld\t%d\t%lld\t%ld\n", c->name, r, ns, st, cpu, rss);
        }
    }
    fclose(out);
    return 0;
}

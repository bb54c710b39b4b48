/* tls-source: the cheapest client this project has for measuring what a
 * STARTTLS sink can take (scripts/bench-queue's TLS limit), as Postfix's
 * smtp-source is for a plain one (which cannot do STARTTLS). SESSIONS
 * threads, each one connection: EHLO, STARTTLS, a handshake verified
 * against CA (the certificate must hold IP 127.0.0.1 or the host name
 * given), EHLO, then messages until COUNT are sent in all, each as MAIL,
 * RCPT and DATA in one write (PIPELINING), the content (the file MESSAGE,
 * LF line ends made CRLF, dot-stuffed, after an `X-Bench-Seq: N` header
 * numbering the messages 1..COUNT), then QUIT. Any unexpected reply is
 * fatal (exit 1). Prints `tls-source: sent=N handshakes=H secs=S` on stderr.
 *
 * --plain: no STARTTLS (CA is not read; give `-`).
 * --spool: the durable floor, the least a queue runner does that keeps
 *   every outcome durable. SOURCE is then a spool directory: SOURCE/queue
 *   holds the COUNT messages, one file each (sent as they are: each carries
 *   its own X-Bench-Seq), SOURCE/tmp is empty. Each session thread keeps
 *   one spare file in tmp/ (opened once) and, per message: opens and reads
 *   the message file; writes a small attempt record into the spare, fsyncs
 *   it and renames it to queue/NAME.att (the attempt is on disk before the
 *   message leaves, as a durable runner records it); sends the message;
 *   after the 250 unlinks the message, renames the record back to the
 *   spare and fsyncs queue/ (the outcome is on disk). This is the cheapest
 *   durable way there is (spoolmail's own: doc/SPOOL.md, the spare file),
 *   and it omits what a real runner adds: locks, state parsing, logs.
 * --disk-only (with --spool): the same file work with no connection at all
 *   (HOST, PORT and CA are not used): where the time of --spool goes.
 * --no-sync (with --spool): the same file work and sending with no fsync at
 *   all: not durable, and so faster than any runner that keeps its outcomes,
 *   however it groups its fsyncs or overlaps them with sending (one fsync
 *   for many messages, or on another thread). What no such scheme can beat.
 *
 * Usage: tls-source [--plain] [--spool [--disk-only|--no-sync]] HOST PORT CA SESSIONS COUNT SOURCE
 *   SOURCE: the MESSAGE file, or with --spool the spool directory
 * Build: cc -O2 -o tls-source tls-source.c -lssl -lcrypto -lpthread */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char *host, *ca;
static int port, count, plain, disk_only, no_sync;
static char *body;   /* the message, CRLF and dot-stuffed, with the final ".\r\n" */
static size_t body_len;
static int next_seq = 1, handshakes;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static SSL_CTX *ctx;
/* --spool: the spool, its queue/ (an open descriptor, for the fsyncs), and
 * the names of the queued messages, handed out in order by take_seq. */
static const char *spool;
static int queue_fd = -1;
static char **names;
static int next_thread;

static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("tls-source: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    exit(1);
}

struct conn {
    int fd;
    SSL *ssl;
    char buf[16384];
    size_t have, at;
};

static void put(struct conn *c, const char *p, size_t n) {
    while (n > 0) {
        int w = c->ssl ? SSL_write(c->ssl, p, (int)n) : (int)write(c->fd, p, n);
        if (w <= 0) die("write failed");
        p += w;
        n -= (size_t)w;
    }
}

static int getbyte(struct conn *c) {
    if (c->at == c->have) {
        int r = c->ssl ? SSL_read(c->ssl, c->buf, sizeof c->buf) : (int)read(c->fd, c->buf, sizeof c->buf);
        if (r <= 0) die("connection lost");
        c->have = (size_t)r;
        c->at = 0;
    }
    return (unsigned char)c->buf[c->at++];
}

/* Reads one reply (every line of it) and checks its code. */
static void expect(struct conn *c, const char *code) {
    for (;;) {
        char line[1024];
        size_t n = 0;
        int b;
        while ((b = getbyte(c)) != '\n')
            if (n < sizeof line - 1) line[n++] = (char)b;
        line[n] = 0;
        if (strncmp(line, code, 3) != 0) die("wanted %s, got '%s'", code, line);
        if (n < 4 || line[3] != '-') return;
    }
}

static int take_seq(void) {
    pthread_mutex_lock(&mu);
    int s = next_seq <= count ? next_seq++ : 0;
    pthread_mutex_unlock(&mu);
    return s;
}

/* SRC (N bytes, LF line ends) as it goes after DATA, appended to OUT at
 * *LEN (room for 2N + 5 bytes): CRLF line ends, dot-stuffed, ".\r\n". */
static void wire_form(const char *src, size_t n, char *out, size_t *len) {
    size_t k = *len;
    int bol = 1;
    for (size_t i = 0; i < n; i++) {
        char ch = src[i];
        if (bol && ch == '.') out[k++] = '.';
        if (ch == '\n') out[k++] = '\r';
        out[k++] = ch;
        bol = ch == '\n';
    }
    if (!bol) { out[k++] = '\r'; out[k++] = '\n'; }
    memcpy(out + k, ".\r\n", 3);
    *len = k + 3;
}

/* A connected session, ready for MAIL: EHLO, and with TLS, STARTTLS, the
 * verified handshake and EHLO again. */
static void open_session(struct conn *c) {
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
    if (inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr) != 1) die("bad address");
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&sa, sizeof sa) != 0) die("cannot connect");
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    expect(c, "220");
    put(c, "EHLO tls-source\r\n", 17);
    expect(c, "250");
    if (plain) return;
    put(c, "STARTTLS\r\n", 10);
    expect(c, "220");
    if (c->at != c->have) die("bytes after the reply to STARTTLS");
    c->ssl = SSL_new(ctx);
    SSL_set_fd(c->ssl, c->fd);
    X509_VERIFY_PARAM *vp = SSL_get0_param(c->ssl);
    if (X509_VERIFY_PARAM_set1_ip_asc(vp, "127.0.0.1") != 1 && X509_VERIFY_PARAM_set1_host(vp, host, 0) != 1)
        die("cannot set the name to verify");
    if (SSL_connect(c->ssl) != 1) die("TLS handshake failed: %s", ERR_error_string(ERR_get_error(), NULL));
    if (SSL_get_verify_result(c->ssl) != X509_V_OK) die("certificate did not verify");
    pthread_mutex_lock(&mu);
    handshakes++;
    pthread_mutex_unlock(&mu);
    put(c, "EHLO tls-source\r\n", 17);
    expect(c, "250");
}

static void close_session(struct conn *c) {
    put(c, "QUIT\r\n", 6);
    expect(c, "221");
    if (c->ssl) {
        SSL_shutdown(c->ssl);
        SSL_free(c->ssl);
    }
    close(c->fd);
}

/* One transaction: MAIL, RCPT and DATA in one write, the content, its 250. */
static void send_one(struct conn *c, const char *msg, size_t len) {
    static const char env[] = "MAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n";
    put(c, env, sizeof env - 1);
    expect(c, "250");
    expect(c, "250");
    expect(c, "354");
    put(c, msg, len);
    expect(c, "250");
}

static void *session(void *arg) {
    (void)arg;
    int seq = take_seq();
    if (!seq) return NULL;
    struct conn c = {0};
    open_session(&c);
    char *msg = malloc(body_len + 256);
    if (!msg) die("out of memory");
    for (; seq; seq = take_seq()) {
        int h = snprintf(msg, 256, "X-Bench-Seq: %d\r\n", seq);
        memcpy(msg + h, body, body_len);
        send_one(&c, msg, (size_t)h + body_len);
    }
    close_session(&c);
    free(msg);
    return NULL;
}

/* --spool: the message NAME read whole from queue/ into *RAW (grown as
 * needed), then put in its wire form into *WIRE; returns the wire length. */
static size_t read_queued(const char *name, char **raw, size_t *raw_cap, char **wire, size_t *wire_cap) {
    int fd = openat(queue_fd, name, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) die("cannot open queue/%s", name);
    size_t n = (size_t)st.st_size;
    if (n > *raw_cap && !(*raw = realloc(*raw, *raw_cap = n))) die("out of memory");
    if (2 * n + 5 > *wire_cap && !(*wire = realloc(*wire, *wire_cap = 2 * n + 5))) die("out of memory");
    for (size_t got = 0; got < n;) {
        ssize_t r = read(fd, *raw + got, n - got);
        if (r <= 0) die("cannot read queue/%s", name);
        got += (size_t)r;
    }
    close(fd);
    size_t len = 0;
    wire_form(*raw, n, *wire, &len);
    return len;
}

/* --spool: one session thread over the queued messages (see the top). */
static void *spool_session(void *arg) {
    (void)arg;
    int seq = take_seq();
    if (!seq) return NULL;
    struct conn c = {0};
    if (!disk_only) open_session(&c);
    pthread_mutex_lock(&mu);
    int me = next_thread++;
    pthread_mutex_unlock(&mu);
    char spare[4096], record[4096], att[300];
    snprintf(spare, sizeof spare, "%s/tmp/spare.%d", spool, me);
    int sfd = open(spare, O_WRONLY | O_CREAT | O_CLOEXEC, 0640);
    if (sfd < 0) die("cannot create %s", spare);
    char *raw = NULL, *wire = NULL;
    size_t raw_cap = 0, wire_cap = 0;
    for (; seq; seq = take_seq()) {
        const char *name = names[seq - 1];
        size_t len = read_queued(name, &raw, &raw_cap, &wire, &wire_cap);
        /* The attempt, on disk before the message leaves. */
        char text[64];
        int tn = snprintf(text, sizeof text, "attempts 1\nlast %lld\n", (long long)time(NULL));
        if (pwrite(sfd, text, (size_t)tn, 0) != tn || ftruncate(sfd, tn) != 0 || (!no_sync && fsync(sfd) != 0))
            die("cannot write %s", spare);
        snprintf(att, sizeof att, "%s.att", name);
        snprintf(record, sizeof record, "%s/queue/%s", spool, att);
        if (rename(spare, record) != 0) die("cannot rename %s", spare);
        if (!disk_only) send_one(&c, wire, len);
        /* The outcome, on disk before the next message. */
        if (unlinkat(queue_fd, name, 0) != 0) die("cannot unlink queue/%s", name);
        if (rename(record, spare) != 0) die("cannot rename %s", record);
        if (!no_sync && fsync(queue_fd) != 0) die("cannot fsync %s/queue", spool);
    }
    if (!disk_only) close_session(&c);
    close(sfd);
    unlink(spare);
    free(raw);
    free(wire);
    return NULL;
}

/* --spool: the names of the files in queue/, COUNT of them. */
static void list_queue(void) {
    char path[4096];
    snprintf(path, sizeof path, "%s/queue", spool);
    DIR *d = opendir(path);
    if (!d) die("cannot open %s", path);
    queue_fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (queue_fd < 0) die("cannot open %s", path);
    names = calloc((size_t)count, sizeof *names);
    if (!names) die("out of memory");
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        if (n == count) die("more than %d files in %s", count, path);
        if (!(names[n++] = strdup(e->d_name))) die("out of memory");
    }
    closedir(d);
    if (n != count) die("%d files in %s, not %d", n, path, count);
}

/* The message file as it goes after DATA: CRLF line ends, dot-stuffed, ".\r\n". */
static void load(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) die("cannot open %s", path);
    size_t n = 0, cap = 1 << 16;
    char *raw = malloc(cap);
    size_t r;
    while (raw && (r = fread(raw + n, 1, cap - n, f)) > 0)
        if ((n += r) == cap) raw = realloc(raw, cap *= 2);
    fclose(f);
    if (!raw || !(body = malloc(2 * n + 5))) die("out of memory");
    wire_form(raw, n, body, &body_len);
    free(raw);
}

int main(int argc, char **argv) {
    int a = 1, use_spool = 0;
    for (; a < argc && strncmp(argv[a], "--", 2) == 0; a++) {
        if (strcmp(argv[a], "--plain") == 0) plain = 1;
        else if (strcmp(argv[a], "--spool") == 0) use_spool = 1;
        else if (strcmp(argv[a], "--disk-only") == 0) disk_only = 1;
        else if (strcmp(argv[a], "--no-sync") == 0) no_sync = 1;
        else die("unknown option %s", argv[a]);
    }
    if (argc - a != 6 || ((disk_only || no_sync) && !use_spool) || (disk_only && no_sync))
        die("usage: tls-source [--plain] [--spool [--disk-only|--no-sync]] HOST PORT CA SESSIONS COUNT SOURCE");
    host = argv[a];
    port = atoi(argv[a + 1]);
    ca = argv[a + 2];
    int sessions = atoi(argv[a + 3]);
    count = atoi(argv[a + 4]);
    if ((port <= 0 && !disk_only) || sessions <= 0 || sessions > 1000 || count <= 0) die("bad arguments");
    if (!plain && !disk_only) {
        ctx = SSL_CTX_new(TLS_client_method());
        if (!ctx || SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1) die("cannot load %s", ca);
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (use_spool) {
        spool = argv[a + 5];
        list_queue();   /* timed: a queue runner looks at its queue too */
    } else {
        load(argv[a + 5]);
    }
    pthread_t *th = calloc((size_t)sessions, sizeof *th);
    for (int i = 0; i < sessions; i++)
        if (pthread_create(&th[i], NULL, use_spool ? spool_session : session, NULL) != 0)
            die("cannot start a thread");
    for (int i = 0; i < sessions; i++) pthread_join(th[i], NULL);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    fprintf(stderr, "tls-source: sent=%d handshakes=%d secs=%.3f\n", next_seq - 1, handshakes, secs);
    return 0;
}

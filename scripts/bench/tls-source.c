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
 * Usage: tls-source HOST PORT CA SESSIONS COUNT MESSAGE
 * Build: cc -O2 -o tls-source tls-source.c -lssl -lcrypto -lpthread */
#define _GNU_SOURCE
#include <arpa/inet.h>
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
#include <time.h>
#include <unistd.h>

static const char *host, *ca;
static int port, count;
static char *body;   /* the message, CRLF and dot-stuffed, with the final ".\r\n" */
static size_t body_len;
static int next_seq = 1, handshakes;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static SSL_CTX *ctx;

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

static void *session(void *arg) {
    (void)arg;
    int seq = take_seq();
    if (!seq) return NULL;
    struct conn c = {0};
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
    if (inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr) != 1) die("bad address");
    c.fd = socket(AF_INET, SOCK_STREAM, 0);
    if (c.fd < 0 || connect(c.fd, (struct sockaddr *)&sa, sizeof sa) != 0) die("cannot connect");
    int one = 1;
    setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    expect(&c, "220");
    put(&c, "EHLO tls-source\r\n", 17);
    expect(&c, "250");
    put(&c, "STARTTLS\r\n", 10);
    expect(&c, "220");
    if (c.at != c.have) die("bytes after the reply to STARTTLS");
    c.ssl = SSL_new(ctx);
    SSL_set_fd(c.ssl, c.fd);
    X509_VERIFY_PARAM *vp = SSL_get0_param(c.ssl);
    if (X509_VERIFY_PARAM_set1_ip_asc(vp, "127.0.0.1") != 1 && X509_VERIFY_PARAM_set1_host(vp, host, 0) != 1)
        die("cannot set the name to verify");
    if (SSL_connect(c.ssl) != 1) die("TLS handshake failed: %s", ERR_error_string(ERR_get_error(), NULL));
    if (SSL_get_verify_result(c.ssl) != X509_V_OK) die("certificate did not verify");
    pthread_mutex_lock(&mu);
    handshakes++;
    pthread_mutex_unlock(&mu);
    put(&c, "EHLO tls-source\r\n", 17);
    expect(&c, "250");
    char *msg = malloc(body_len + 256);
    if (!msg) die("out of memory");
    for (; seq; seq = take_seq()) {
        static const char env[] = "MAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n";
        put(&c, env, sizeof env - 1);
        expect(&c, "250");
        expect(&c, "250");
        expect(&c, "354");
        int h = snprintf(msg, 256, "X-Bench-Seq: %d\r\n", seq);
        memcpy(msg + h, body, body_len);
        put(&c, msg, (size_t)h + body_len);
        expect(&c, "250");
    }
    put(&c, "QUIT\r\n", 6);
    expect(&c, "221");
    free(msg);
    SSL_shutdown(c.ssl);
    SSL_free(c.ssl);
    close(c.fd);
    return NULL;
}

/* The message file as it goes after DATA: CRLF line ends, dot-stuffed, ".\r\n". */
static void load(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) die("cannot open %s", path);
    size_t cap = 1 << 16;
    body = malloc(cap);
    int bol = 1, ch;
    while ((ch = getc(f)) != EOF) {
        if (body_len + 4 >= cap) body = realloc(body, cap *= 2);
        if (!body) die("out of memory");
        if (bol && ch == '.') body[body_len++] = '.';
        if (ch == '\n') body[body_len++] = '\r';
        body[body_len++] = (char)ch;
        bol = ch == '\n';
    }
    fclose(f);
    if (!bol) { body[body_len++] = '\r'; body[body_len++] = '\n'; }
    memcpy(body + body_len, ".\r\n", 3);
    body_len += 3;
}

int main(int argc, char **argv) {
    if (argc != 7) die("usage: tls-source HOST PORT CA SESSIONS COUNT MESSAGE");
    host = argv[1];
    port = atoi(argv[2]);
    ca = argv[3];
    int sessions = atoi(argv[4]);
    count = atoi(argv[5]);
    if (port <= 0 || sessions <= 0 || sessions > 1000 || count <= 0) die("bad arguments");
    load(argv[6]);
    ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx || SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1) die("cannot load %s", ca);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pthread_t *th = calloc((size_t)sessions, sizeof *th);
    for (int i = 0; i < sessions; i++)
        if (pthread_create(&th[i], NULL, session, NULL) != 0) die("cannot start a thread");
    for (int i = 0; i < sessions; i++) pthread_join(th[i], NULL);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    fprintf(stderr, "tls-source: sent=%d handshakes=%d secs=%.3f\n", next_seq - 1, handshakes, secs);
    return 0;
}

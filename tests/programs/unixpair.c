/* A parent and its forked child talk over two UNIX socket pairs, a
 * SOCK_SEQPACKET one and a SOCK_STREAM one, in both directions: each side
 * keeps WINDOW numbered, checksummed messages of varying sizes ahead of
 * the other, so several are always in flight both ways. Every received
 * message is checked (number, length — on the seqpacket pair, a message's
 * boundaries — and checksum) and logged to p.out / c.out, opened once and
 * kept open. The parent's seqpacket end is non-blocking (it polls), and
 * its stream end has a SO_SNDBUF of its own; both show in the log.
 * With "path", the stream pair is made through bind/listen/connect on
 * ./pair.sock instead, both keep the listening socket, and near the end the
 * child connects once more and the parent accepts that late connection.
 * Usage: unixpair STEPS DELAY_MS [path] */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define WINDOW 4
#define MAXMSG 4096

static FILE *log_f;
static int listener = -1;

static void fail(const char *what, int step) {
    fprintf(log_f, "FAIL %s at step %d (errno %d)\n", what, step, errno);
    exit(80);
}

static uint32_t fnv(const unsigned char *p, size_t n) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 16777619u;
    return h;
}

/* Message `s` from side `side` on channel `ch`: its length and bytes. */
static size_t make(int side, int ch, int s, unsigned char *buf) {
    size_t len = ch == 0 ? 8 + (size_t)(s * 7919 + side * 131) % 3000
                         : 8 + (size_t)(s * 104729 + side * 17) % 2000;
    uint32_t x = (uint32_t)(s * 2654435761u) ^ (uint32_t)(side * 40503 + ch);
    memcpy(buf, &s, 4);
    for (size_t i = 4; i < len; i++) {
        x = x * 1103515245u + 12345u;
        buf[i] = (unsigned char)(x >> 16);
    }
    return len;
}

static void full(int fd, void *buf, size_t n, int rd, int step) {
    size_t done = 0;
    while (done < n) {
        ssize_t r = rd ? read(fd, (char *)buf + done, n - done)
                       : write(fd, (char *)buf + done, n - done);
        if (r <= 0) fail(rd ? "stream read" : "stream write", step);
        done += r;
    }
}

static void wait_fd(int fd, short ev) {
    struct pollfd p = {fd, ev, 0};
    poll(&p, 1, -1);
}

static void send_one(int side, int sp, int st, int s) {
    unsigned char buf[MAXMSG];
    size_t len = make(side, 0, s, buf);
    for (;;) {
        ssize_t r = send(sp, buf, len, MSG_NOSIGNAL);
        if (r == (ssize_t)len) break;
        if (r < 0 && errno == EAGAIN) {
            wait_fd(sp, POLLOUT);
            continue;
        }
        fail("seqpacket send", s);
    }
    len = make(side, 1, s, buf);
    uint32_t hdr[2] = {(uint32_t)s, (uint32_t)len};
    uint32_t sum = fnv(buf, len);
    full(st, hdr, sizeof hdr, 0, s);
    full(st, buf, len, 0, s);
    full(st, &sum, sizeof sum, 0, s);
}

static void recv_one(int side, int sp, int st, int s) {
    int other = 1 - side;
    unsigned char want[MAXMSG], got[MAXMSG];
    size_t wlen = make(other, 0, s, want);
    ssize_t r;
    for (;;) {
        r = recv(sp, got, sizeof got, MSG_TRUNC);
        if (r >= 0) break;
        if (errno == EAGAIN) {
            wait_fd(sp, POLLIN);
            continue;
        }
        fail("seqpacket recv", s);
    }
    if ((size_t)r != wlen) fail("seqpacket message length", s);
    if (memcmp(got, want, wlen)) fail("seqpacket message bytes", s);
    uint32_t sp_sum = fnv(got, wlen);

    uint32_t hdr[2], sum;
    full(st, hdr, sizeof hdr, 1, s);
    size_t slen = make(other, 1, s, want);
    if (hdr[0] != (uint32_t)s || hdr[1] != slen) fail("stream header", s);
    full(st, got, slen, 1, s);
    full(st, &sum, sizeof sum, 1, s);
    if (sum != fnv(got, slen) || memcmp(got, want, slen)) fail("stream checksum", s);

    int type = 0, sndbuf = 0;
    socklen_t l = sizeof type;
    getsockopt(sp, SOL_SOCKET, SO_TYPE, &type, &l);
    l = sizeof sndbuf;
    getsockopt(st, SOL_SOCKET, SO_SNDBUF, &sndbuf, &l);
    int nb = (fcntl(sp, F_GETFL) & O_NONBLOCK) != 0;
    fprintf(log_f, "%s got %d: seqpacket %zu bytes sum %08x, stream %zu bytes sum %08x, "
            "type %d nonblock %d sndbuf %d\n",
            side ? "child" : "parent", s, wlen, sp_sum, slen, sum, type, nb, sndbuf);
}

static int connect_path(void) {
    struct sockaddr_un a = {.sun_family = AF_UNIX, .sun_path = "pair.sock"};
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a)) return -1;
    return fd;
}

/* Near the end: one more connection through the listening socket. */
static void late_connection(int side, int s) {
    unsigned char buf[MAXMSG];
    size_t len = make(1, 2, s, buf); /* the child sends it */
    if (len > 200) len = 200;
    if (side == 1) {
        int fd = connect_path();
        if (fd < 0) fail("late connect", s);
        full(fd, buf, len, 0, s);
        close(fd);
        return;
    }
    int fd = accept(listener, NULL, NULL);
    if (fd < 0) fail("late accept", s);
    unsigned char got[256];
    size_t n = 0;
    ssize_t r;
    while ((r = read(fd, got + n, sizeof got - n)) > 0) n += r;
    close(fd);
    struct sockaddr_un a;
    socklen_t al = sizeof a;
    getsockname(listener, (struct sockaddr *)&a, &al);
    fprintf(log_f, "parent accepted a late connection on %s: %zu bytes sum %08x (%s)\n",
            a.sun_path, n, fnv(got, n), n == len && !memcmp(got, buf, len) ? "ok" : "BAD");
}

static void run(int side, int sp, int st, int steps, int delay) {
    log_f = fopen(side ? "c.out" : "p.out", "w");
    if (!log_f) exit(90);
    setvbuf(log_f, NULL, _IOLBF, 0);
    for (int s = 0; s < steps + WINDOW; s++) {
        if (s < steps) send_one(side, sp, st, s);
        if (s >= WINDOW) recv_one(side, sp, st, s - WINDOW);
        if (listener >= 0 && s == steps - 6) late_connection(side, s);
        usleep(delay * 1000);
    }
    fprintf(log_f, "%s done\n", side ? "child" : "parent");
}

int main(int argc, char **argv) {
    int steps = argc > 1 ? atoi(argv[1]) : 50;
    int delay = argc > 2 ? atoi(argv[2]) : 40;
    int sp[2], st[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sp)) return 1;
    int path = argc > 3 && !strcmp(argv[3], "path");
    if (path) {
        struct sockaddr_un a = {.sun_family = AF_UNIX, .sun_path = "pair.sock"};
        unlink("pair.sock");
        listener = socket(AF_UNIX, SOCK_STREAM, 0);
        if (listener < 0 || bind(listener, (struct sockaddr *)&a, sizeof a) || listen(listener, 4))
            return 1;
    } else if (socketpair(AF_UNIX, SOCK_STREAM, 0, st)) {
        return 1;
    }
    pid_t k = fork();
    if (k < 0) return 1;
    if (path && k == 0 && (st[1] = connect_path()) < 0) return 1;
    if (path && k > 0 && (st[0] = accept(listener, NULL, NULL)) < 0) return 1;
    if (k == 0) {
        close(sp[0]);
        if (!path) close(st[0]);
        run(1, sp[1], st[1], steps, delay);
        return 0;
    }
    close(sp[1]);
    if (!path) close(st[1]);
    fcntl(sp[0], F_SETFL, fcntl(sp[0], F_GETFL) | O_NONBLOCK);
    int sndbuf = 48 * 1024;
    setsockopt(st[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
    run(0, sp[0], st[0], steps, delay);
    int status = 0;
    if (waitpid(k, &status, 0) != k) return 2;
    printf("unixpair done %d\n", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    return 0;
}

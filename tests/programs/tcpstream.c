/* A TCP server and its forked client stream checksummed blocks to each
 * other over loopback (IPv4, or IPv6 with "v6"), both directions at once:
 * each side keeps up to AHEAD blocks of 32-256 KiB written ahead of what
 * the other has read, so at any moment megabytes are in flight both ways
 * (in the receiver's queue and unacknowledged in the sender's). Every
 * block received is checked (length, bytes, checksum) and logged to
 * p.out / c.out with the options the socket shows: the client's
 * TCP_NODELAY and non-blocking flag, the server's SO_RCVBUF (set by the
 * program), and both addresses. At the end both sides shut down writing,
 * read to end of file, and log "done".
 * Usage: tcpstream STEPS DELAY_MS [v6] */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define AHEAD 3

static FILE *log_f;
static int steps;
static int lport; /* the listener's port */

static void fail(const char *what, int step) {
    fprintf(log_f, "FAIL %s at step %d (errno %d)\n", what, step, errno);
    fflush(log_f);
    exit(80);
}

static size_t block_len(int side, int s) {
    return 32768 + (size_t)((s * 7919u + side * 104729u) % (224 * 1024));
}

static unsigned char block_byte(int side, int s, size_t i) {
    uint32_t x = (uint32_t)(s * 2654435761u) ^ (uint32_t)(side * 40503u) ^ (uint32_t)(i * 2246822519u);
    x ^= x >> 15;
    return (unsigned char)(x * 2654435761u >> 24);
}

static uint32_t fnv_step(uint32_t h, unsigned char c) { return (h ^ c) * 16777619u; }

static void name(int fd, int peer, char *out, size_t n) {
    struct sockaddr_storage ss;
    socklen_t l = sizeof ss;
    int r = peer ? getpeername(fd, (struct sockaddr *)&ss, &l) : getsockname(fd, (struct sockaddr *)&ss, &l);
    char ip[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (r == 0 && ss.ss_family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip);
        port = ntohs(a->sin_port);
    } else if (r == 0 && ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof ip);
        port = ntohs(a->sin6_port);
    }
    /* Port numbers differ from run to run: only whether it is the
     * listener's shows. */
    snprintf(out, n, "%s:%s", ip, port == lport ? "listener" : "other");
}

/* Streams with the peer: side 0 is the server, 1 the client. */
static void run(int side, int fd, int delay_ms) {
    int other = 1 - side;
    /* Outgoing: block `ws` at offset `wo`. Incoming: block `rs` at `ro`. */
    int ws = 0, rs = 0;
    size_t wo = 0, ro = 0;
    uint32_t sum = 2166136261u;
    static unsigned char buf[1 << 16];
    int flags = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, flags | O_NONBLOCK);
    while (rs < steps) {
        /* Write ahead. */
        while (ws < steps && ws < rs + AHEAD) {
            size_t len = block_len(side, ws), n = 0;
            while (n < sizeof buf && wo + n < len) {
                buf[n] = block_byte(side, ws, wo + n);
                n++;
            }
            ssize_t w = send(fd, buf, n, MSG_NOSIGNAL);
            if (w < 0 && errno == EAGAIN) break;
            if (w <= 0) fail("send", ws);
            wo += w;
            if (wo == len) { ws++; wo = 0; }
        }
        /* Read what came. */
        size_t len = block_len(other, rs);
        size_t want = len - ro < sizeof buf ? len - ro : sizeof buf;
        ssize_t r = recv(fd, buf, want, 0);
        if (r == 0) fail("early end of file", rs);
        if (r < 0 && errno != EAGAIN) fail("recv", rs);
        if (r < 0) {
            struct pollfd p = {fd, POLLIN | (ws < steps && ws < rs + AHEAD ? POLLOUT : 0), 0};
            poll(&p, 1, 1000);
            continue;
        }
        for (ssize_t i = 0; i < r; i++) {
            if (buf[i] != block_byte(other, rs, ro + i)) fail("wrong byte", rs);
            sum = fnv_step(sum, buf[i]);
        }
        ro += r;
        if (ro < len) continue;
        int nodelay = 0, rcvbuf = 0;
        socklen_t l = sizeof nodelay;
        getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &nodelay, &l);
        l = sizeof rcvbuf;
        getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, &l);
        char me[80], peer[80];
        name(fd, 0, me, sizeof me);
        name(fd, 1, peer, sizeof peer);
        char extra[32] = "";
        if (side == 0) snprintf(extra, sizeof extra, " rcvbuf %d", rcvbuf);
        fprintf(log_f, "%s got block %d: %zu bytes, running sum %08x; nodelay %d nonblock %d%s; %s <- %s\n",
                side ? "client" : "server", rs, len, sum, nodelay, (fcntl(fd, F_GETFL) & O_NONBLOCK) != 0,
                extra, me, peer);
        fflush(log_f);
        rs++;
        ro = 0;
        usleep(delay_ms * 1000);
    }
    /* Finish writing, then close our direction and read to the end. */
    fcntl(fd, F_SETFL, flags);
    while (ws < steps) {
        size_t len = block_len(side, ws);
        while (wo < len) {
            size_t n = 0;
            while (n < sizeof buf && wo + n < len) { buf[n] = block_byte(side, ws, wo + n); n++; }
            ssize_t w = send(fd, buf, n, MSG_NOSIGNAL);
            if (w <= 0) fail("final send", ws);
            wo += w;
        }
        ws++;
        wo = 0;
    }
    shutdown(fd, SHUT_WR);
    ssize_t r;
    while ((r = read(fd, buf, sizeof buf)) > 0) fail("bytes after the last block", steps);
    if (r < 0) fail("final read", steps);
    fprintf(log_f, "%s done, sum %08x\n", side ? "client" : "server", sum);
    fflush(log_f);
}

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    steps = atoi(argv[1]);
    int delay = atoi(argv[2]);
    int v6 = argc > 3 && !strcmp(argv[3], "v6");
    int fam = v6 ? AF_INET6 : AF_INET;
    int l = socket(fam, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_storage ss = {0};
    socklen_t sl;
    if (v6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        a->sin6_addr = in6addr_loopback;
        sl = sizeof *a;
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        sl = sizeof *a;
    }
    if (bind(l, (struct sockaddr *)&ss, sl) || listen(l, 4)) { perror("listen"); return 1; }
    getsockname(l, (struct sockaddr *)&ss, &sl);
    lport = ntohs(v6 ? ((struct sockaddr_in6 *)&ss)->sin6_port : ((struct sockaddr_in *)&ss)->sin_port);
    pid_t child = fork();
    if (child == 0) {
        close(l);
        log_f = fopen("c.out", "w");
        int c = socket(fam, SOCK_STREAM, 0);
        setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (connect(c, (struct sockaddr *)&ss, sl)) fail("connect", 0);
        run(1, c, delay);
        return 0;
    }
    log_f = fopen("p.out", "w");
    int s = accept(l, NULL, NULL);
    if (s < 0) fail("accept", 0);
    int rcv = 96 * 1024;
    setsockopt(s, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof rcv);
    run(0, s, delay);
    int st = 0;
    waitpid(child, &st, 0);
    printf("tcpstream done %d\n", WIFEXITED(st) ? WEXITSTATUS(st) : 99);
    return 0;
}

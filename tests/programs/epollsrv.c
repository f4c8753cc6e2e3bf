/* An epoll server with several clients. The server listens on TCP and
 * binds a UDP socket (both on 127.0.0.1, ports the kernel chose), then
 * forks CLIENTS clients. Each client connects, then makes STEPS requests
 * with up to WINDOW of them in flight on its connection: a header (client,
 * step, length) and 1-20000 bytes; the server, one epoll loop over the
 * listener, the UDP socket and every connection, answers each with the
 * bytes transformed and their checksum. Every few steps a client also
 * asks over UDP (a connected UDP socket) for the server's count of its
 * requests, resending after 200 ms without an answer, as UDP programs do.
 * Clients log each answer to cN.out; the server logs, once every client
 * has hung up, what it served per client to s.out (order-independent).
 * Usage: epollsrv STEPS DELAY_MS */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define CLIENTS 4
#define WINDOW 3
#define MAXLEN 20000

struct hdr {
    uint32_t client, step, len;
};

static FILE *log_f;

static void fail(const char *what, int step) {
    fprintf(log_f, "FAIL %s at step %d (errno %d)\n", what, step, errno);
    fflush(log_f);
    exit(80);
}

static uint32_t req_len(int c, int s) { return 1 + (uint32_t)(s * 7919u + c * 3571u) % MAXLEN; }
static unsigned char req_byte(int c, int s, uint32_t i) { return (unsigned char)(c * 31 + s * 7 + i * 13); }

static void full(int fd, void *buf, size_t n, int rd, int step) {
    size_t done = 0;
    while (done < n) {
        ssize_t r = rd ? read(fd, (char *)buf + done, n - done)
                       : write(fd, (char *)buf + done, n - done);
        if (r <= 0) fail(rd ? "read" : "write", step);
        done += r;
    }
}

static void client(int c, struct sockaddr_in *tcp, struct sockaddr_in *udp, int steps, int delay) {
    char name[16];
    snprintf(name, sizeof name, "c%d.out", c);
    log_f = fopen(name, "w");
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(fd, (struct sockaddr *)tcp, sizeof *tcp)) fail("connect", 0);
    int u = socket(AF_INET, SOCK_DGRAM, 0);
    if (connect(u, (struct sockaddr *)udp, sizeof *udp)) fail("udp connect", 0);
    static unsigned char buf[MAXLEN];
    int sent = 0;
    for (int s = 0; s < steps; s++) {
        while (sent < steps && sent < s + WINDOW) {
            struct hdr h = {c, sent, req_len(c, sent)};
            for (uint32_t i = 0; i < h.len; i++) buf[i] = req_byte(c, sent, i);
            full(fd, &h, sizeof h, 0, sent);
            full(fd, buf, h.len, 0, sent);
            sent++;
        }
        struct hdr h;
        uint32_t sum;
        full(fd, &h, sizeof h, 1, s);
        if (h.client != (uint32_t)c || h.step != (uint32_t)s || h.len != req_len(c, s)) fail("answer header", s);
        full(fd, buf, h.len, 1, s);
        full(fd, &sum, sizeof sum, 1, s);
        uint32_t want = 0;
        for (uint32_t i = 0; i < h.len; i++) {
            if (buf[i] != (unsigned char)~req_byte(c, s, i)) fail("answer bytes", s);
            want = want * 31 + buf[i];
        }
        if (sum != want) fail("answer checksum", s);
        fprintf(log_f, "client %d step %d: %u bytes, sum %08x\n", c, s, h.len, sum);
        if (s % 5 == 4) {
            /* How many requests has the server seen from us? At least s+1. */
            uint32_t q[2] = {c, s}, a[3];
            for (;;) {
                send(u, q, sizeof q, 0);
                struct pollfd p = {u, POLLIN, 0};
                if (poll(&p, 1, 200) == 1 && recv(u, a, sizeof a, 0) == sizeof a && a[0] == q[0] && a[1] == q[1]) break;
            }
            fprintf(log_f, "client %d step %d: udp says at least %d served: %s\n", c, s, s + 1,
                    a[2] >= (uint32_t)(s + 1) ? "yes" : "no");
        }
        fflush(log_f);
        usleep(delay * 1000);
    }
    close(fd);
    exit(0);
}

struct conn {
    int fd;
    size_t have;
    struct hdr h;
    unsigned char buf[MAXLEN];
};

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    int steps = atoi(argv[1]), delay = atoi(argv[2]);
    struct sockaddr_in tcp = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct sockaddr_in udp = tcp;
    socklen_t sl = sizeof tcp;
    int l = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(l, (struct sockaddr *)&tcp, sl) || listen(l, 16)) return 1;
    getsockname(l, (struct sockaddr *)&tcp, &sl);
    int u = socket(AF_INET, SOCK_DGRAM, 0);
    if (bind(u, (struct sockaddr *)&udp, sl)) return 1;
    getsockname(u, (struct sockaddr *)&udp, &sl);
    pid_t kids[CLIENTS];
    for (int c = 0; c < CLIENTS; c++) {
        kids[c] = fork();
        if (kids[c] == 0) {
            close(l);
            close(u);
            client(c, &tcp, &udp, steps, delay);
        }
    }
    log_f = fopen("s.out", "w");
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 100};
    epoll_ctl(ep, EPOLL_CTL_ADD, l, &ev);
    ev.data.u64 = 101;
    epoll_ctl(ep, EPOLL_CTL_ADD, u, &ev);
    static struct conn conns[CLIENTS];
    uint32_t served[CLIENTS] = {0}, bytes[CLIENTS] = {0};
    int accepted = 0, open_conns = 0;
    while (accepted < CLIENTS || open_conns > 0) {
        struct epoll_event evs[8];
        int n = epoll_wait(ep, evs, 8, -1);
        if (n < 0 && errno == EINTR) {
            fprintf(log_f, "FAIL epoll_wait EINTR\n");
            return 81;
        }
        for (int i = 0; i < n; i++) {
            uint64_t id = evs[i].data.u64;
            if (id == 100) {
                int fd = accept(l, NULL, NULL);
                if (fd < 0) fail("accept", 0);
                conns[accepted].fd = fd;
                ev.data.u64 = accepted++;
                open_conns++;
                epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
                continue;
            }
            if (id == 101) {
                uint32_t q[2], a[3];
                struct sockaddr_in from;
                socklen_t fl = sizeof from;
                if (recvfrom(u, q, sizeof q, 0, (struct sockaddr *)&from, &fl) != sizeof q || q[0] >= CLIENTS) continue;
                a[0] = q[0];
                a[1] = q[1];
                a[2] = served[q[0]];
                sendto(u, a, sizeof a, 0, (struct sockaddr *)&from, fl);
                continue;
            }
            struct conn *k = &conns[id];
            /* One read per event: header first, then the payload. */
            size_t want = k->have < sizeof k->h ? sizeof k->h - k->have : sizeof k->h + k->h.len - k->have;
            unsigned char *dst = k->have < sizeof k->h ? (unsigned char *)&k->h + k->have
                                                       : k->buf + (k->have - sizeof k->h);
            ssize_t r = read(k->fd, dst, want);
            if (r == 0) {
                epoll_ctl(ep, EPOLL_CTL_DEL, k->fd, NULL);
                close(k->fd);
                open_conns--;
                continue;
            }
            if (r < 0) fail("server read", (int)id);
            k->have += r;
            if (k->have < sizeof k->h || k->h.len > MAXLEN || k->have < sizeof k->h + k->h.len) continue;
            uint32_t sum = 0;
            for (uint32_t j = 0; j < k->h.len; j++) {
                k->buf[j] = ~k->buf[j];
                sum = sum * 31 + k->buf[j];
            }
            full(k->fd, &k->h, sizeof k->h, 0, (int)k->h.step);
            full(k->fd, k->buf, k->h.len, 0, (int)k->h.step);
            full(k->fd, &sum, sizeof sum, 0, (int)k->h.step);
            if (k->h.client < CLIENTS) {
                served[k->h.client]++;
                bytes[k->h.client] += k->h.len;
            }
            k->have = 0;
        }
    }
    for (int c = 0; c < CLIENTS; c++) fprintf(log_f, "server: client %d: %u requests, %u bytes\n", c, served[c], bytes[c]);
    fflush(log_f);
    int bad = 0;
    for (int c = 0; c < CLIENTS; c++) {
        int st = 0;
        waitpid(kids[c], &st, 0);
        bad += !WIFEXITED(st) || WEXITSTATUS(st) != 0;
    }
    printf("epollsrv done %d\n", bad);
    return 0;
}

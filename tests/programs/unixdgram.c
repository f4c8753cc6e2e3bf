/* UNIX datagram sockets that are not pairs: a server bound to ./dg.sock
 * and two forked clients. Client 1 binds ./c1.sock and connect()s to the
 * server; client 2 stays unbound and unconnected and uses sendto(). Each
 * client sends numbered, checksummed messages of varying sizes, several
 * ahead (the server reads slowly, so some always wait in its queue);
 * the server checks each (boundaries, bytes, per-client order) and
 * answers client 1's with a reply sent to ./c1.sock, which client 1
 * checks. Logs: s1.out and s2.out (what the server got from each
 * client, in order), c1.out.
 * Usage: unixdgram STEPS DELAY_MS */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define AHEAD 4

static FILE *log_f;

static void fail(const char *what, int step) {
    fprintf(log_f, "FAIL %s at step %d (errno %d)\n", what, step, errno);
    fflush(log_f);
    exit(80);
}

static struct sockaddr_un addr(const char *p) {
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    strcpy(a.sun_path, p);
    return a;
}

static size_t make(int c, int s, unsigned char *buf) {
    size_t len = 8 + (size_t)(s * 7919 + c * 131) % 1500;
    memcpy(buf, &c, 4);
    memcpy(buf + 4, &s, 4);
    for (size_t i = 8; i < len; i++) buf[i] = (unsigned char)(c * 17 + s * 3 + i);
    return len;
}

static void client(int c, int steps, int delay) {
    log_f = fopen(c == 1 ? "c1.out" : "c2.out", "w");
    int fd = socket(AF_UNIX, SOCK_DGRAM, 0);
    struct sockaddr_un srv = addr("dg.sock");
    if (c == 1) {
        struct sockaddr_un me = addr("c1.sock");
        unlink("c1.sock");
        if (bind(fd, (struct sockaddr *)&me, sizeof me)) fail("bind", 0);
        if (connect(fd, (struct sockaddr *)&srv, sizeof srv)) fail("connect", 0);
    }
    unsigned char buf[2048], got[2048];
    int sent = 0;
    for (int s = 0; s < steps; s++) {
        while (sent < steps && sent < s + AHEAD) {
            size_t len = make(c, sent, buf);
            ssize_t r = c == 1 ? send(fd, buf, len, 0)
                               : sendto(fd, buf, len, 0, (struct sockaddr *)&srv, sizeof srv);
            if (r != (ssize_t)len) fail("send", sent);
            sent++;
        }
        if (c == 1) {
            ssize_t r = recv(fd, got, sizeof got, 0);
            size_t len = make(c, s, buf);
            if (r != (ssize_t)len) fail("reply length", s);
            for (size_t i = 0; i < len; i++) buf[i] ^= 0xff;
            if (memcmp(got, buf, len)) fail("reply bytes", s);
            fprintf(log_f, "client 1 reply %d: %zd bytes\n", s, r);
            fflush(log_f);
        }
        usleep(delay * 1000);
    }
    if (c == 2) {
        unsigned char end[8] = {2, 0, 0, 0, 0xff, 0xff, 0xff, 0xff};
        sendto(fd, end, sizeof end, 0, (struct sockaddr *)&srv, sizeof srv);
    }
    exit(0);
}

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    int steps = atoi(argv[1]), delay = atoi(argv[2]);
    unlink("dg.sock");
    int fd = socket(AF_UNIX, SOCK_DGRAM, 0);
    struct sockaddr_un me = addr("dg.sock"), c1 = addr("c1.sock");
    if (bind(fd, (struct sockaddr *)&me, sizeof me)) return 1;
    pid_t kids[2];
    for (int c = 1; c <= 2; c++)
        if ((kids[c - 1] = fork()) == 0) { close(fd); client(c, steps, delay); }
    FILE *logs[3] = {NULL, fopen("s1.out", "w"), fopen("s2.out", "w")};
    log_f = logs[1];
    int next[3] = {0, 0, 0}, ended = 0;
    unsigned char buf[2048], want[2048];
    while (next[1] < steps || !ended) {
        ssize_t r = recv(fd, buf, sizeof buf, 0);
        if (r < 8) fail("server recv", next[1]);
        int c, s;
        memcpy(&c, buf, 4);
        memcpy(&s, buf + 4, 4);
        if (c == 2 && s == -1) { ended = 1; continue; }
        if (c < 1 || c > 2 || s != next[c]) {
            fprintf(log_f, "FAIL client %d sent %d, expected %d\n", c, s, c >= 1 && c <= 2 ? next[c] : -1);
            fflush(log_f);
            exit(80);
        }
        size_t len = make(c, s, want);
        if ((size_t)r != len || memcmp(buf, want, len)) fail("message bytes", s);
        fprintf(logs[c], "server got %d/%d: %zd bytes\n", c, s, r);
        fflush(logs[c]);
        next[c]++;
        if (c == 1) {
            for (ssize_t i = 0; i < r; i++) buf[i] ^= 0xff;
            if (sendto(fd, buf, r, 0, (struct sockaddr *)&c1, sizeof c1) != r) fail("reply", s);
        }
        usleep(delay * 500);
    }
    for (int c = 0; c < 2; c++) waitpid(kids[c], NULL, 0);
    printf("unixdgram done %d %d\n", next[1], next[2]);
    return 0;
}

/* A client of a server outside the computation, with its own reconnect
 * logic: it sends "ping K" lines and expects "pong K" back, logging each
 * answer to log.out. When the connection ends (end of file or an error),
 * it notes that in reconnects.out, connects again (retrying every 100 ms)
 * and asks for K again — so log.out is the same whether or not the
 * connection broke on the way.
 * Usage: tcpclient PORT STEPS DELAY_MS */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int dial(int port) {
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    for (;;) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0) return fd;
        close(fd);
        usleep(100000);
    }
}

/* One line, or -1 when the connection ended. */
static int read_line(int fd, char *buf, size_t n) {
    size_t i = 0;
    while (i + 1 < n) {
        ssize_t r = read(fd, buf + i, 1);
        if (r <= 0) return -1;
        if (buf[i++] == '\n') break;
    }
    buf[i] = 0;
    return (int)i;
}

int main(int argc, char **argv) {
    if (argc < 4) return 2;
    int port = atoi(argv[1]), steps = atoi(argv[2]), delay = atoi(argv[3]);
    FILE *log_f = fopen("log.out", "w"), *rec = fopen("reconnects.out", "w");
    int fd = dial(port);
    for (int k = 0; k < steps;) {
        char q[64], a[64], want[64];
        int n = snprintf(q, sizeof q, "ping %d\n", k);
        snprintf(want, sizeof want, "pong %d\n", k);
        if (write(fd, q, n) != n || read_line(fd, a, sizeof a) < 0) {
            fprintf(rec, "connection lost at %d (errno %d); reconnecting\n", k, errno);
            fflush(rec);
            close(fd);
            fd = dial(port);
            continue;
        }
        if (strcmp(a, want)) {
            fprintf(log_f, "FAIL at %d: %s", k, a);
            return 80;
        }
        fprintf(log_f, "%d: %s", k, a);
        fflush(log_f);
        k++;
        usleep(delay * 1000);
    }
    printf("tcpclient done\n");
    return 0;
}

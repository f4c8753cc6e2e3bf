/* Socket pairs whose other end sent everything and exited: a SOCK_SEQPACKET
 * pair (messages of varying lengths) and a SOCK_STREAM pair (12-byte lines).
 * The parent takes one message and one line per step, across checkpoints,
 * then sees end-of-file on both.
 * Usage: unixleft STEPS DELAY_MS */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
    int steps = argc > 1 ? atoi(argv[1]) : 40;
    int delay = argc > 2 ? atoi(argv[2]) : 30;
    setvbuf(stdout, NULL, _IOLBF, 0);
    int sp[2], st[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sp)) return 1;
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, st)) return 1;
    pid_t w = fork();
    if (w == 0) {
        close(sp[0]);
        close(st[0]);
        char m[256];
        for (int i = 0; i < steps; i++) {
            int len = snprintf(m, sizeof m, "msg %03d ", i);
            int pad = (i * 37) % 150;
            memset(m + len, 'a' + i % 26, pad);
            if (send(sp[1], m, len + pad, 0) != len + pad) return 2;
            char line[32];
            snprintf(line, sizeof line, "line %03d...\n", i % 1000);
            if (write(st[1], line, 12) != 12) return 3;
        }
        return 0;
    }
    close(sp[1]);
    close(st[1]);
    int status;
    waitpid(w, &status, 0);
    printf("writer exited %d\n", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    char m[512], line[13];
    int n = 0;
    for (;;) {
        ssize_t r = recv(sp[0], m, sizeof m, 0);
        if (r <= 0) break;
        if (read(st[0], line, 12) != 12) break;
        line[12] = 0;
        printf("read %d: %zd bytes '%.7s' last '%c' and %s", n++, r, m, m[r - 1], line);
        usleep(delay * 1000);
    }
    printf("seqpacket eof after %d, stream read returns %zd\n", n, read(st[0], line, 12));
    return 0;
}

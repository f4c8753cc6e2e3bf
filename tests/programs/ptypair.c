/* A pty pair through forkpty: the parent (master side, packet mode) sends
 * numbered lines two ahead of the replies; the child (slave side, raw mode,
 * session leader with the slave as controlling terminal) answers each with
 * what it sees: length and checksum of the line, its terminal modes, the
 * window size, SIGWINCHs received, whether it is in the foreground and has
 * a controlling terminal. Bytes are in flight both ways at every moment.
 * The parent prints every reply and what it sees of the pair, so an
 * uninterrupted run and a checkpointed one print the same.
 *
 * usage: ptypair ROUNDS */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pty.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t winches;
static void on_winch(int s) { (void)s; winches++; }

static void msleep(int ms) {
    struct timespec ts = {0, ms * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {}
}

static int child(void) {
    /* Nothing of the test harness's (its process-tracking pipe would come
     * back as a placeholder, with a warning on stderr: the pty). */
    for (int fd = 3; fd < 300; fd++) close(fd);
    struct sigaction sa = {0};
    sa.sa_handler = on_winch;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGWINCH, &sa, NULL);
    struct termios t;
    tcgetattr(0, &t);
    cfmakeraw(&t);
    tcsetattr(0, TCSANOW, &t);
    write(1, "R\n", 2);
    char line[512];
    for (int r = 1;; r++) {
        size_t n = 0;
        char c;
        for (;;) {
            ssize_t k = read(0, &c, 1);
            if (k <= 0) return 3;
            if (c == '\n' || n + 1 >= sizeof line) break;
            line[n++] = c;
        }
        line[n] = 0;
        if (strcmp(line, "q") == 0) return 0;
        unsigned sum = 0;
        for (size_t i = 0; i < n; i++) sum = sum * 31 + (unsigned char)line[i];
        struct termios now;
        tcgetattr(0, &now);
        struct winsize ws;
        ioctl(0, TIOCGWINSZ, &ws);
        int tty = open("/dev/tty", O_RDWR | O_NOCTTY);
        if (tty >= 0) close(tty);
        msleep(10);
        char out[256];
        int len = snprintf(out, sizeof out,
            "c%d len=%zu sum=%08x icanon=%d echo=%d isig=%d opost=%d icrnl=%d "
            "ws=%dx%d winch=%d fg=%d leader=%d ctty=%d\n",
            r, n, sum, !!(now.c_lflag & ICANON), !!(now.c_lflag & ECHO),
            !!(now.c_lflag & ISIG), !!(now.c_oflag & OPOST), !!(now.c_iflag & ICRNL),
            ws.ws_row, ws.ws_col, (int)winches, tcgetpgrp(0) == getpgrp(),
            getsid(0) == getpid(), tty >= 0);
        write(1, out, len);
    }
}

/* One reply line from the master (packet mode: each read starts with a
 * status byte, TIOCPKT_DATA for plain data). */
static char pending[8192];
static size_t npending;
static int read_line(int m, char *out, size_t cap) {
    for (;;) {
        char *nl = memchr(pending, '\n', npending);
        if (nl) {
            size_t len = nl - pending;
            if (len >= cap) len = cap - 1;
            memcpy(out, pending, len);
            out[len] = 0;
            npending -= nl + 1 - pending;
            memmove(pending, nl + 1, npending);
            return 0;
        }
        char buf[4096];
        ssize_t k = read(m, buf, sizeof buf);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return -1;
        if (buf[0] != TIOCPKT_DATA) {
            printf("status byte %#x\n", (unsigned char)buf[0]);
            continue;
        }
        if (npending + k - 1 > sizeof pending) return -1;
        memcpy(pending + npending, buf + 1, k - 1);
        npending += k - 1;
    }
}

static void send_msg(int m, int r) {
    char msg[300];
    int len = snprintf(msg, sizeof msg, "m%d:", r);
    for (int i = 0; i < 20 + r % 37; i++) msg[len++] = 'a' + (r * 7 + i) % 26;
    /* Bytes raw mode leaves alone but cooked mode would not. */
    msg[len++] = '\r';
    msg[len++] = 0x03; /* ^C */
    msg[len++] = '\n';
    write(m, msg, len);
}

int main(int argc, char **argv) {
    int rounds = argc > 1 ? atoi(argv[1]) : 40;
    setvbuf(stdout, NULL, _IOLBF, 0);
    struct winsize ws = {.ws_row = 24, .ws_col = 80};
    int m;
    pid_t pid = forkpty(&m, NULL, NULL, &ws);
    if (pid < 0) { perror("forkpty"); return 1; }
    if (pid == 0) _exit(child());
    int on = 1;
    ioctl(m, TIOCPKT, &on);
    char line[512];
    if (read_line(m, line, sizeof line) < 0 || strcmp(line, "R") != 0) {
        printf("child not ready: %s\n", line);
        return 1;
    }
    send_msg(m, 1);
    send_msg(m, 2);
    for (int r = 1; r <= rounds; r++) {
        msleep(40);
        if (read_line(m, line, sizeof line) < 0) { printf("lost the child\n"); return 1; }
        struct termios t;
        tcgetattr(m, &t);
        struct winsize now;
        ioctl(m, TIOCGWINSZ, &now);
        int pkt = -1;
        ioctl(m, TIOCGPKT, &pkt);
        printf("round %d: %s | master sees icanon=%d ws=%dx%d pkt=%d\n", r, line,
               !!(t.c_lflag & ICANON), now.ws_row, now.ws_col, pkt);
        if (r == rounds / 2) {
            struct winsize big = {.ws_row = 40, .ws_col = 132};
            ioctl(m, TIOCSWINSZ, &big);
        }
        if (r + 2 <= rounds) send_msg(m, r + 2);
    }
    write(m, "q\n", 2);
    int st;
    waitpid(pid, &st, 0);
    printf("child exit %d\n", WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
    printf("ptypair done\n");
    return 0;
}

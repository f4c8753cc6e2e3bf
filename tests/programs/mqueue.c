/* POSIX message queues shared by a parent and its child: the parent keeps
 * two numbered messages (priorities 0-2) ahead in a data queue, then says
 * "go" on a second queue; the child takes one message per "go" and answers
 * on a third queue the parent waits on. Each
 * logs to p.out / c.out (kept open); the parent unlinks both queues at the
 * end. Usage: mqueue TAG STEPS DELAY_MS (queues /hiber-test-mq-TAG-{d,g,a}). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <mqueue.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void send(mqd_t q, int n) {
    char m[32];
    snprintf(m, sizeof m, "message %d", n);
    if (mq_send(q, m, strlen(m) + 1, (unsigned)(n % 3))) { perror("mq_send"); exit(83); }
}

int main(int argc, char **argv) {
    if (argc < 4) return 2;
    int steps = atoi(argv[2]), delay = atoi(argv[3]);
    char dname[64], gname[64], aname[64];
    snprintf(dname, sizeof dname, "/hiber-test-mq-%s-d", argv[1]);
    snprintf(gname, sizeof gname, "/hiber-test-mq-%s-g", argv[1]);
    snprintf(aname, sizeof aname, "/hiber-test-mq-%s-a", argv[1]);
    struct mq_attr attr = { .mq_maxmsg = 8, .mq_msgsize = 32 };
    mqd_t d = mq_open(dname, O_RDWR | O_CREAT | O_EXCL, 0600, &attr);
    mqd_t g = mq_open(gname, O_RDWR | O_CREAT | O_EXCL, 0600, &attr);
    mqd_t a = mq_open(aname, O_RDWR | O_CREAT | O_EXCL, 0600, &attr);
    if (d < 0 || g < 0 || a < 0) { perror("mq_open"); return 80; }
    send(d, 0);
    send(d, 1);
    pid_t kid = fork();
    int child = kid == 0;
    FILE *f = fopen(child ? "c.out" : "p.out", "a");
    setvbuf(f, NULL, _IOLBF, 0);
    char buf[32];
    unsigned prio;
    for (int s = 0; s < steps; s++) {
        struct mq_attr now;
        if (child) {
            if (mq_receive(g, buf, sizeof buf, &prio) < 0) { perror("mq_receive go"); return 87; }
            if (mq_receive(d, buf, sizeof buf, &prio) < 0) { perror("mq_receive"); return 84; }
            mq_getattr(d, &now);
            fprintf(f, "child step %d got \"%s\" prio %u left %ld\n", s, buf, prio, now.mq_curmsgs);
            usleep(delay * 1000);
            snprintf(buf, sizeof buf, "ack %d", s);
            if (mq_send(a, buf, strlen(buf) + 1, 0)) return 85;
        } else {
            send(d, s + 2);
            if (mq_send(g, "go", 3, 0)) return 88;
            if (mq_receive(a, buf, sizeof buf, &prio) < 0) { perror("mq_receive ack"); return 86; }
            mq_getattr(d, &now);
            fprintf(f, "parent step %d got \"%s\" queued %ld\n", s, buf, now.mq_curmsgs);
            usleep(delay * 1000);
        }
    }
    if (child) return 0;
    int st = 0;
    waitpid(kid, &st, 0);
    struct mq_attr now;
    mq_getattr(d, &now);
    fprintf(f, "left %ld child %d\n", now.mq_curmsgs, WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    mq_unlink(dname);
    mq_unlink(gname);
    mq_unlink(aname);
    printf("done\n");
    return 0;
}

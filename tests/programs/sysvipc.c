/* System V IPC shared by a parent and its child, which take turns (two
 * semaphores of one set): a keyed shm segment with a counter and a log
 * both append to, a private segment removed (IPC_RMID) while attached, and
 * a message queue through which the parent sends numbered messages two
 * ahead of the child, so the queue always holds some. Each logs its view
 * to p.out / c.out (kept open). The parent removes every object at the
 * end. Usage: sysvipc KEY STEPS DELAY_MS (KEY, KEY+1, KEY+2 are used). */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/wait.h>
#include <unistd.h>

struct area { long counter; long loglen; char log[8000]; };
struct msg { long type; char text[32]; };

static int semid;

static void turn(int wait_for, int post) {
    struct sembuf op = { .sem_num = (unsigned short)wait_for, .sem_op = -1 };
    if (wait_for >= 0 && semop(semid, &op, 1)) { perror("semop wait"); exit(81); }
    op.sem_num = (unsigned short)post;
    op.sem_op = 1;
    if (post >= 0 && semop(semid, &op, 1)) { perror("semop post"); exit(82); }
}

static void send(int q, int n) {
    struct msg m = { .type = 1 };
    snprintf(m.text, sizeof m.text, "message %d", n);
    if (msgsnd(q, &m, strlen(m.text) + 1, 0)) { perror("msgsnd"); exit(83); }
}

int main(int argc, char **argv) {
    if (argc < 4) return 2;
    key_t key = (key_t)strtol(argv[1], NULL, 0);
    int steps = atoi(argv[2]), delay = atoi(argv[3]);
    int shmid = shmget(key, sizeof(struct area), IPC_CREAT | IPC_EXCL | 0600);
    semid = semget(key + 1, 2, IPC_CREAT | IPC_EXCL | 0600);
    int q = msgget(key + 2, IPC_CREAT | IPC_EXCL | 0600);
    int privid = shmget(IPC_PRIVATE, 4096, IPC_CREAT | 0600);
    if (shmid < 0 || semid < 0 || q < 0 || privid < 0) { perror("get"); return 80; }
    struct area *a = shmat(shmid, NULL, 0);
    long *priv = shmat(privid, NULL, 0);
    if (a == (void *)-1 || priv == (void *)-1) return 84;
    shmctl(privid, IPC_RMID, NULL); /* stays while attached */
    unsigned short init[2] = { 0, 1 }; /* sem 0: child's turn, 1: parent's */
    if (semctl(semid, 0, SETALL, init)) return 85;
    send(q, 0);
    send(q, 1);
    pid_t kid = fork();
    int child = kid == 0;
    FILE *f = fopen(child ? "c.out" : "p.out", "a");
    setvbuf(f, NULL, _IOLBF, 0);
    for (int s = 0; s < steps; s++) {
        turn(child ? 0 : 1, -1);
        long want = 2L * s + child;
        int ok = a->counter == want && priv[0] == want;
        a->counter++;
        priv[0]++;
        a->loglen += snprintf(a->log + a->loglen, sizeof a->log - a->loglen, "%c%d;", child ? 'C' : 'P', s);
        /* Same key, same id: the program may look its objects up again. */
        int same = shmget(key, 0, 0) == shmid && semget(key + 1, 0, 0) == semid && msgget(key + 2, 0) == q;
        struct msqid_ds ds;
        msgctl(q, IPC_STAT, &ds);
        if (child) {
            struct msg m;
            ssize_t n = msgrcv(q, &m, sizeof m.text, 0, 0);
            if (n < 0) { perror("msgrcv"); return 86; }
            fprintf(f, "child step %d ok %d same %d queued %lu got \"%s\" loglen %ld\n", s, ok, same,
                    (unsigned long)ds.msg_qnum, m.text, a->loglen);
        } else {
            send(q, s + 2);
            fprintf(f, "parent step %d ok %d same %d queued %lu sem %d loglen %ld\n", s, ok, same,
                    (unsigned long)ds.msg_qnum, semctl(semid, 0, GETVAL), a->loglen);
        }
        usleep(delay * 1000);
        turn(-1, child ? 1 : 0);
    }
    if (child) return 0;
    int st = 0;
    waitpid(kid, &st, 0);
    fprintf(f, "log %s\n", a->log);
    struct msqid_ds ds;
    msgctl(q, IPC_STAT, &ds);
    fprintf(f, "left in queue %lu, child %d\n", (unsigned long)ds.msg_qnum, WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    shmdt(a);
    shmdt(priv);
    shmctl(shmid, IPC_RMID, NULL);
    semctl(semid, 0, IPC_RMID);
    msgctl(q, IPC_RMID, NULL);
    printf("done\n");
    return 0;
}

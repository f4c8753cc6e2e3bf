/* Descriptors hiber cannot recreate, or only partly: O_PATH descriptors of
 * a file, a directory, a symbolic link (O_NOFOLLOW) and a FIFO, which can
 * be reopened as O_PATH for real; a pidfd of itself, a netlink socket, an
 * io_uring with its three rings mmap'ed from its fd, and a perf software
 * counter on itself with its ring buffer mmap'ed (each of the last two is
 * skipped, and said so, where the kernel refuses it: perf_event_paranoid,
 * io_uring_disabled). Then it loops, appending to odd.out (kept open) each
 * round's number and, for every odd fd, whether it is still open at its
 * number with its close-on-exec flag, and for the O_PATH ones whether they
 * still work as O_PATH descriptors (O_PATH in F_GETFL, fstat, openat on
 * the directory, reopening the file through /proc/self/fd, readlinkat on
 * the link). The ring mappings must stay readable with what they held.
 * Usage: oddfds ROUNDS DELAY_MS */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/io_uring.h>
#include <linux/perf_event.h>
#include <linux/netlink.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

static FILE *out;

/* "open" (no close-on-exec), "cloexec", or "closed". */
static const char *state(int fd) {
    if (fd < 0) return "none";
    int f = fcntl(fd, F_GETFD);
    if (f < 0) return "closed";
    return f & FD_CLOEXEC ? "cloexec" : "open";
}

int main(int argc, char **argv) {
    int rounds = argc > 1 ? atoi(argv[1]) : 40;
    int delay = argc > 2 ? atoi(argv[2]) : 30;
    int ofd = open("odd.out", O_WRONLY | O_CREAT | O_APPEND, 0644);
    out = ofd < 0 ? NULL : fdopen(ofd, "a");
    if (!out) return 90;
    setvbuf(out, NULL, _IOLBF, 0);

    FILE *d = fopen("data.txt", "w");
    if (!d) return 91;
    fputs("payload\n", d);
    fclose(d);
    int path_file = open("data.txt", O_PATH);
    int path_dir = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
    unlink("link");
    if (symlink("data.txt", "link") != 0) return 92;
    int path_link = open("link", O_PATH | O_NOFOLLOW);
    unlink("fifo");
    if (mkfifo("fifo", 0600) != 0) return 93;
    int path_fifo = open("fifo", O_PATH | O_CLOEXEC); /* does not block, unlike a read open */
    int pidfd = (int)syscall(SYS_pidfd_open, getpid(), 0);
    int nl = socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE);

    struct io_uring_params p;
    memset(&p, 0, sizeof p);
    int uring = (int)syscall(SYS_io_uring_setup, 4, &p);
    unsigned char *sq = MAP_FAILED, *cq = MAP_FAILED, *sqes = MAP_FAILED;
    size_t sq_len = 0, cq_len = 0, sqes_len = 0;
    if (uring >= 0) {
        sq_len = p.sq_off.array + p.sq_entries * sizeof(unsigned);
        cq_len = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
        sqes_len = p.sq_entries * sizeof(struct io_uring_sqe);
        sq = mmap(NULL, sq_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, uring,
                  IORING_OFF_SQ_RING);
        cq = mmap(NULL, cq_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, uring,
                  IORING_OFF_CQ_RING);
        sqes = mmap(NULL, sqes_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, uring,
                    IORING_OFF_SQES);
    }

    struct perf_event_attr a;
    memset(&a, 0, sizeof a);
    a.size = sizeof a;
    a.type = PERF_TYPE_SOFTWARE;
    a.config = PERF_COUNT_SW_TASK_CLOCK;
    a.exclude_kernel = 1;
    a.exclude_hv = 1;
    int perf = (int)syscall(SYS_perf_event_open, &a, 0, -1, -1, PERF_FLAG_FD_CLOEXEC);
    long page = sysconf(_SC_PAGESIZE);
    unsigned char *pring = MAP_FAILED;
    if (perf >= 0) pring = mmap(NULL, 2 * page, PROT_READ, MAP_SHARED, perf, 0);
    unsigned version = pring != MAP_FAILED ? ((struct perf_event_mmap_page *)pring)->version : 0;

    /* (Not the numbers: the reference run may inherit other descriptors.) */
    fprintf(out, "opened file %d dir %d link %d fifo %d pidfd %d netlink %d uring %d\n",
            path_file >= 0, path_dir >= 0, path_link >= 0, path_fifo >= 0, pidfd >= 0, nl >= 0,
            uring >= 0);
    fprintf(out, "uring rings %s\n",
            uring < 0 ? "refused (skipped)"
            : sq != MAP_FAILED && cq != MAP_FAILED && sqes != MAP_FAILED ? "mapped"
                                                                          : "not mapped");
    fprintf(out, "perf %s, ring %s\n", perf < 0 ? "refused (skipped)" : "counting",
            pring != MAP_FAILED ? "mapped" : "not mapped");
    unsigned entries = sq != MAP_FAILED ? *(unsigned *)(sq + p.sq_off.ring_entries) : 0;
    unsigned cq_entries = cq != MAP_FAILED ? *(unsigned *)(cq + p.cq_off.ring_entries) : 0;

    for (int r = 0; r < rounds; r++) {
        struct stat st;
        int fl = fcntl(path_file, F_GETFL);
        int dfl = fcntl(path_dir, F_GETFL);
        int via_dir = openat(path_dir, "data.txt", O_RDONLY | O_CLOEXEC);
        char proc[64], buf[16] = {0};
        snprintf(proc, sizeof proc, "/proc/self/fd/%d", path_file);
        int via_proc = open(proc, O_RDONLY | O_CLOEXEC);
        struct stat lst;
        char target[32] = {0};
        int is_link = fstat(path_link, &lst) == 0 && S_ISLNK(lst.st_mode);
        if (readlinkat(path_link, "", target, sizeof target - 1) < 0) target[0] = 0;
        struct stat fst;
        int ffl = fcntl(path_fifo, F_GETFL);
        int is_fifo = fstat(path_fifo, &fst) == 0 && S_ISFIFO(fst.st_mode);
        if (via_proc >= 0 && read(via_proc, buf, sizeof buf - 1) < 0) buf[0] = 0;
        buf[strcspn(buf, "\n")] = 0;
        fprintf(out,
                "round %d: file %s opath %d stat %d reopen %s | dir %s opath %d openat %d | link %s %d -> %s | fifo %s opath %d %d | "
                "pidfd %s netlink %s uring %s perf %s | rings %u %u %s\n",
                r, state(path_file), fl >= 0 && (fl & O_PATH) != 0, fstat(path_file, &st) == 0,
                buf, state(path_dir), dfl >= 0 && (dfl & O_PATH) != 0, via_dir >= 0,
                state(path_link), is_link, target, state(path_fifo),
                ffl >= 0 && (ffl & O_PATH) != 0, is_fifo,
                state(pidfd), state(nl), state(uring), state(perf),
                sq != MAP_FAILED ? *(unsigned *)(sq + p.sq_off.ring_entries) == entries : 0,
                cq != MAP_FAILED ? *(unsigned *)(cq + p.cq_off.ring_entries) == cq_entries : 0,
                pring == MAP_FAILED                                                ? "-"
                : ((struct perf_event_mmap_page *)pring)->version == version ? "same"
                                                                                   : "changed");
        if (via_dir >= 0) close(via_dir);
        if (via_proc >= 0) close(via_proc);
        usleep(delay * 1000);
    }
    fprintf(out, "done\n");
    return 0;
}

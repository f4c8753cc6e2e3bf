/* One anonymous MAP_SHARED object mapped as two areas: its second page is
 * made read-only by mprotect, which splits the mapping (same object, other
 * offset). Each round adds to a counter in the first page and prints it
 * with the second page's contents, which must survive a restart too.
 * Usage: shmsplit ROUNDS DELAY_MS */
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

int main(int argc, char **argv) {
    int rounds = argc > 1 ? atoi(argv[1]) : 40;
    int delay = argc > 2 ? atoi(argv[2]) : 30;
    long page = sysconf(_SC_PAGESIZE);
    char *p = mmap(NULL, 2 * page, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return 1;
    long *counter = (long *)p;
    snprintf(p + page, 32, "second page");
    if (mprotect(p + page, page, PROT_READ)) return 2;
    for (int r = 0; r < rounds; r++) {
        *counter += r;
        printf("round %d counter %ld %s\n", r, *counter, p + page);
        fflush(stdout);
        usleep(delay * 1000);
    }
    return 0;
}

/* Built statically by the tests: a program that cannot load the agent.
 * Appends to probe.out whether descriptor 900 (where the agent keeps its
 * coordinator connection) was inherited, then stays a while so that the
 * test can list the computation meanwhile. */
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

int main(void) {
    FILE *f = fopen("probe.out", "a");
    if (!f) return 1;
    fprintf(f, "fd 900 %s\n", fcntl(900, F_GETFD) >= 0 ? "open" : "closed");
    fclose(f);
    sleep(2);
    return 0;
}

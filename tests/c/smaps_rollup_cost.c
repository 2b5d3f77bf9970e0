/* What one read of /proc/<pid>/smaps_rollup costs (docs/performance.md):
 * the parent maps and touches 1 GiB, a forked child copies half of it
 * (copy-on-write), then each one's smaps_rollup is read 20 times.
 *   gcc -O2 -o /tmp/smaps_rollup_cost tests/c/smaps_rollup_cost.c && /tmp/smaps_rollup_cost
 */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static void measure(const char *what, pid_t pid) {
    char path[64], buf[8192];
    double best = 1e9, total = 0;
    const int n = 20;
    snprintf(path, sizeof path, "/proc/%d/smaps_rollup", pid);
    for (int i = 0; i < n; i++) {
        double t0 = now();
        int fd = open(path, O_RDONLY);
        if (fd < 0 || read(fd, buf, sizeof buf) <= 0) {
            perror(path);
            return;
        }
        close(fd);
        double d = now() - t0;
        total += d;
        if (d < best)
            best = d;
    }
    printf("%s: mean %.2f ms, best %.2f ms\n", what, total / n * 1e3, best * 1e3);
}

int main(void) {
    size_t size = 1UL << 30;
    char *p = mmap(0, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return 1;
    memset(p, 1, size);
    pid_t child = fork();
    if (child == 0) {
        for (size_t i = 0; i < size / 2; i += 4096)
            p[i] = 2;
        pause();
        _exit(0);
    }
    sleep(2);
    measure("parent (1 GiB touched)", getpid());
    measure("child (1 GiB mapped, 512 MiB copied)", child);
    kill(child, SIGKILL);
    waitpid(child, 0, 0);
    return 0;
}

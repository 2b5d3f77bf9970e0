/* Leaks through two frameless callers: main -> leak_outer -> leak_inner,
 * built -O2 -fomit-frame-pointer. Every page is touched in leak_inner. */
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>

volatile long sink;

__attribute__((noinline)) long leak_inner(size_t mib) {
    char *p = mmap(0, mib << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return 0;
    for (size_t i = 0; i < (mib << 20); i += 4096) p[i] = (char)i | 1;
    return p[4096];
}

__attribute__((noinline)) long leak_outer(size_t mib) {
    long r = leak_inner(mib);
    sink += r; /* work after the call: no tail call */
    return r + 1;
}

int main(int argc, char **argv) {
    int rate = argc > 1 ? atoi(argv[1]) : 40, secs = argc > 2 ? atoi(argv[2]) : 30;
    struct timespec ts = {0, 25 * 1000 * 1000};
    for (int i = 0; i < secs * 40; i++) {
        sink += leak_outer(rate / 40 ? rate / 40 : 1);
        nanosleep(&ts, 0);
    }
    return 0;
}

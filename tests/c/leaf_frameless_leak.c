/* Frame pointers everywhere but in the leaf (-O1 -fno-omit-frame-pointer
 * -momit-leaf-frame-pointer): a frame-pointer walk from touch_leaf skips
 * its caller, leak_caller. */
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>

volatile long sink;

__attribute__((noinline)) long touch_leaf(char *p, size_t n) {
    for (size_t i = 0; i < n; i += 4096) p[i] = (char)i | 1;
    return p[0];
}

__attribute__((noinline)) long leak_caller(size_t mib) {
    char *p = mmap(0, mib << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return 0;
    long r = touch_leaf(p, mib << 20);
    sink += r;
    return r + 1;
}

int main(int argc, char **argv) {
    int rate = argc > 1 ? atoi(argv[1]) : 40, secs = argc > 2 ? atoi(argv[2]) : 30;
    struct timespec ts = {0, 25 * 1000 * 1000};
    for (int i = 0; i < secs * 40; i++) {
        sink += leak_caller(rate / 40 ? rate / 40 : 1);
        nanosleep(&ts, 0);
    }
    return 0;
}

/* Programs that `mallocator trace` runs in tests/trace_cli.rs, one per
 * mode (the first argument). Each knows what it leaks; the test checks
 * that the trace finds exactly that. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

static void check(int ok, const char *what) {
    if (!ok) {
        fprintf(stderr, "programs: %s failed\n", what);
        exit(99);
    }
}

/* A null pointer the compiler cannot see, so that free(NULL) is made. */
static void *volatile null;

/* One malloc/free pair of `size` bytes. The block passes through a
 * volatile variable (of this call's own: threads call this at once), so
 * that the compiler keeps the pair: it drops a malloc whose block is only
 * freed. */
static void pair(size_t size) {
    void *volatile block = malloc(size);
    free(block);
}

/* Leaks 3 blocks of 100 bytes from here (not a tail call, which would
 * leave no frame of this function). */
__attribute__((noinline)) static void *leak_here(void) {
    char *p = malloc(100);
    check(p != NULL, "malloc");
    p[0] = 1;
    return p;
}

/* Every function of the malloc family, all freed but for the leaks:
 * 3 x 100 (leak_here), 1 x 40 (calloc), 1 x 256 (realloc). */
/* Sizes whose product overflows, out of the compiler's sight. */
static volatile size_t huge = (size_t)-1;

/* with_pvalloc 0 (the argument without-pvalloc) leaves pvalloc out:
 * Valgrind's memcheck aborts the program at it. */
__attribute__((noinline)) static int family(int with_pvalloc) {
    for (int i = 0; i < 3; i++) check(leak_here() != NULL, "malloc");
    int *zeroed = calloc(10, 4);
    check(zeroed != NULL && zeroed[9] == 0, "calloc");
    char *grown = malloc(8);
    strcpy(grown, "1234567");
    grown = realloc(grown, 256);
    check(grown != NULL && strcmp(grown, "1234567") == 0, "realloc keeps the contents");
    void *p = NULL;
    check(posix_memalign(&p, 64, 100) == 0 && (size_t)p % 64 == 0, "posix_memalign");
    free(p);
    check(posix_memalign(&p, 3, 100) == EINVAL, "posix_memalign rejects a bad alignment");
    p = aligned_alloc(128, 256);
    check(p != NULL && (size_t)p % 128 == 0, "aligned_alloc");
    check(malloc_usable_size(p) >= 256, "malloc_usable_size");
    free(p);
    p = memalign(256, 10);
    check(p != NULL && (size_t)p % 256 == 0, "memalign");
    free(p);
    p = valloc(10);
    check(p != NULL && (size_t)p % 4096 == 0, "valloc");
    free(p);
    if (with_pvalloc) {
        p = pvalloc(10);
        check(p != NULL && (size_t)p % 4096 == 0, "pvalloc");
        free(p);
    }
    p = reallocarray(NULL, 10, 10);
    check(p != NULL, "reallocarray");
    check(reallocarray(p, huge, 16) == NULL, "reallocarray overflow");
    free(p);
    check(calloc(huge, 16) == NULL, "calloc overflow");
    p = malloc(16);
    check(realloc(p, 0) == NULL, "realloc to 0 frees");
    free(null);
    return 0;
}

/* Resident memory of this process, in KiB. */
static long resident_kib(void) {
    FILE *f = fopen("/proc/self/status", "r");
    check(f != NULL, "open /proc/self/status");
    char line[256];
    long kib = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1) break;
    fclose(f);
    check(kib >= 0, "VmRSS");
    return kib;
}

/* What the C library promises of sizes, which a tracker that serves the
 * block from an allocator underneath must keep. Leaks nothing. */
#define DIRTY 16
#define DIRTY_SIZE (200 * 1024)
__attribute__((noinline)) static int sizes(void) {
    /* Every byte malloc_usable_size allows survives a realloc. */
    unsigned char *p = malloc(10);
    size_t usable = malloc_usable_size(p);
    check(p != NULL && usable >= 10, "malloc_usable_size");
    for (size_t i = 0; i < usable; i++) p[i] = (unsigned char)(i + 1);
    p = realloc(p, 4096);
    check(p != NULL, "realloc");
    for (size_t i = 0; i < usable; i++) check(p[i] == (unsigned char)(i + 1), "realloc keeps the usable bytes");
    free(p);

    /* calloc clears memory that held something. The blocks are made and
     * freed before the guard, so their memory is reused, not given back. */
    mallopt(M_MMAP_THRESHOLD, 1 << 20);
    unsigned char *dirty[DIRTY];
    for (int i = 0; i < DIRTY; i++) {
        dirty[i] = malloc(DIRTY_SIZE);
        check(dirty[i] != NULL, "malloc");
        memset(dirty[i], 0xab, DIRTY_SIZE);
    }
    void *guard = malloc(32);
    for (int i = 0; i < DIRTY; i++) free(dirty[i]);
    for (int i = 0; i < DIRTY; i++) {
        dirty[i] = calloc(1, DIRTY_SIZE);
        check(dirty[i] != NULL, "calloc");
        for (size_t j = 0; j < DIRTY_SIZE; j++) check(dirty[i][j] == 0, "calloc clears reused memory");
    }
    for (int i = 0; i < DIRTY; i++) free(dirty[i]);
    free(guard);

    /* A large sparse table stays out of memory until it is written. */
    size_t big = (size_t)256 << 20;
    long before = resident_kib();
    unsigned char *table = calloc(1, big);
    check(table != NULL && table[0] == 0 && table[big / 2] == 0 && table[big - 1] == 0, "calloc");
    long grown = resident_kib() - before;
    if (grown > 32 * 1024) {
        fprintf(stderr, "programs: a 256 MiB calloc made %ld KiB resident\n", grown);
        exit(99);
    }
    free(table);
    return 0;
}

/* 8 threads; each frees the blocks of the next one. Leaks 8 x 24. */
#define THREADS 8
#define PER_THREAD 5000
static void *slots[THREADS][PER_THREAD];
static pthread_barrier_t barrier;

static void *worker(void *arg) {
    long me = (long)arg;
    for (int i = 0; i < PER_THREAD; i++) slots[me][i] = malloc(16 + (i % 64));
    pthread_barrier_wait(&barrier);
    long next = (me + 1) % THREADS;
    for (int i = 0; i < PER_THREAD; i++) free(slots[next][i]);
    check(malloc(24) != NULL, "a thread's leak");
    return NULL;
}

__attribute__((noinline)) static int threads(void) {
    pthread_t t[THREADS];
    pthread_barrier_init(&barrier, NULL, THREADS);
    for (long i = 0; i < THREADS; i++) pthread_create(&t[i], NULL, worker, (void *)i);
    for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
    return 0;
}

/* Forks while 4 threads allocate; every child allocates and exits, every
 * other one through _exit (which writes no stdio buffers and runs no exit
 * handler: the preload library must still end the child's log). No leaks
 * in the parent. */
static volatile int stop;

static void *churn(void *arg) {
    (void)arg;
    while (!stop) pair(32);
    return NULL;
}

__attribute__((noinline)) static int forks(void) {
    pthread_t t[4];
    for (int i = 0; i < 4; i++) pthread_create(&t[i], NULL, churn, NULL);
    for (int round = 0; round < 50; round++) {
        pid_t pid = fork();
        check(pid >= 0, "fork");
        if (pid == 0) {
            alarm(10); /* a hang kills the child, and fails the test */
            for (int i = 0; i < 100; i++) pair(64);
            if (round % 2) _exit(0);
            exit(0);
        }
        int status;
        check(waitpid(pid, &status, 0) == pid, "waitpid");
        check(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the child ended well");
    }
    stop = 1;
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    return 0;
}

/* A SIGALRM handler that allocates (as programs do, unsafe as it is),
 * while the main thread is in the tracker: it calls free(NULL), which
 * goes through the tracker's free path but never into the C library's
 * allocator (which a handler's malloc may corrupt if it interrupts it,
 * traced or not). The handler leaks 1 x 12 once. */
static volatile sig_atomic_t rings;
static volatile sig_atomic_t leaked;

static void on_alarm(int sig) {
    (void)sig;
    pair(48);
    if (!leaked) {
        leaked = 1;
        check(malloc(12) != NULL, "the handler's leak");
    }
    rings++;
}

__attribute__((noinline)) static int signals(void) {
    signal(SIGALRM, on_alarm);
    struct itimerval every_ms = {{0, 1000}, {0, 1000}};
    setitimer(ITIMER_REAL, &every_ms, NULL);
    while (rings < 200) free(null);
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &off, NULL);
    return 0;
}

/* Runs this program again, in mode family, and waits for it. */
__attribute__((noinline)) static int run_family(void) {
    pid_t pid = fork();
    check(pid >= 0, "fork");
    if (pid == 0) {
        execl("/proc/self/exe", "programs", "family", (char *)NULL);
        _exit(98);
    }
    int status;
    check(waitpid(pid, &status, 0) == pid, "waitpid");
    check(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the child ended well");
    return 0;
}

/* Leaks 1 x 601; calls every function of the exec family on a program
 * that does not exist, each of which fails and returns with errno set;
 * leaks 1 x 602; then becomes env with an environment of its own,
 * through execle, and so prints it. Each exec ends the log first, and
 * each failed one takes that end back. */
__attribute__((noinline)) static void leak_sized(size_t size) {
    char *volatile p = malloc(size);
    check(p != NULL, "malloc");
}

#define MISSING "/nonexistent/mallocator-test"

static void failed(int result, int expected, const char *what) {
    if (result != -1 || errno != expected) {
        fprintf(stderr, "programs: %s returned %d, errno %d\n", what, result, errno);
        exit(99);
    }
}

__attribute__((noinline)) static int exec_fails_then_execs(void) {
    extern char **environ;
    char *const argv[] = {"missing", NULL};
    leak_sized(601);
    failed(execl(MISSING, "missing", "an", "argument", (char *)NULL), ENOENT, "execl");
    failed(execle(MISSING, "missing", (char *)NULL, environ), ENOENT, "execle");
    failed(execlp(MISSING, "missing", (char *)NULL), ENOENT, "execlp");
    failed(execv(MISSING, argv), ENOENT, "execv");
    failed(execve(MISSING, argv, environ), ENOENT, "execve");
    failed(execvp(MISSING, argv), ENOENT, "execvp");
    failed(execvpe(MISSING, argv, environ), ENOENT, "execvpe");
    failed(fexecve(-1, argv, environ), EINVAL, "fexecve");
    failed(execveat(AT_FDCWD, MISSING, argv, environ, 0), ENOENT, "execveat");
    leak_sized(602);
    char *const env[] = {"MALLOCATOR_TEST=execle", NULL};
    execle("/usr/bin/env", "env", (char *)NULL, env);
    return 98;
}

/* Cleans its descriptor table as OpenSSH and daemons do, every way
 * there is: close_range and closefrom above 2, then dup2 of /dev/null
 * onto every descriptor up to the limit (at most 4096) and close of each
 * in a loop. Prints how many of those dup2 were refused (those onto the
 * log's descriptor). Then writes a file of its own, at path, which opens
 * at descriptor 3, and leaks once before it all and once after. */
__attribute__((noinline)) static int close_all(const char *path) {
    leak_sized(701);
    check(close_range(3, ~0U, 0) == 0, "close_range");
    closefrom(3);
    long limit = sysconf(_SC_OPEN_MAX);
    if (limit > 4096) limit = 4096;
    int null = open("/dev/null", O_WRONLY);
    check(null == 3, "/dev/null at descriptor 3");
    int refused = 0;
    for (int fd = 4; fd < limit; fd++) {
        if (dup2(null, fd) == fd) continue;
        check(errno == EBADF, "dup2's errno");
        refused++;
    }
    for (int fd = 3; fd < limit; fd++) close(fd);
    int own = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    check(own == 3, "the program's file at descriptor 3");
    static const char text[] = "the program's own\n";
    check(write(own, text, sizeof text - 1) == sizeof text - 1, "write");
    check(close(own) == 0, "close");
    leak_sized(702);
    /* Not printf: its buffer would be one more block never freed. */
    char line[32];
    int n = snprintf(line, sizeof line, "dup2 refused %d\n", refused);
    check(write(1, line, n) == n, "write the count");
    return 0;
}

/* A child that allocates nothing and frees nothing: fork, then _exit. */
__attribute__((noinline)) static int idle_child(void) {
    pid_t pid = fork();
    check(pid >= 0, "fork");
    if (pid == 0) _exit(0);
    int status;
    check(waitpid(pid, &status, 0) == pid && WIFEXITED(status), "the child");
    return 0;
}

/* A library that leaks 1 x 64 when called, loaded and unloaded. */
__attribute__((noinline)) static int plugin(const char *path) {
    void *lib = dlopen(path, RTLD_NOW);
    check(lib != NULL, "dlopen");
    void *(*leak)(void) = (void *(*)(void))dlsym(lib, "plugin_leak");
    check(leak != NULL && leak() != NULL, "the plugin's leak");
    check(dlclose(lib) == 0, "dlclose");
    return 0;
}

/* Opens the library at path; its plugin_leak, and where the library
 * was loaded. */
static void *open_plugin(const char *path, void **lib, void **base) {
    *lib = dlopen(path, RTLD_NOW);
    check(*lib != NULL, "dlopen");
    void *leak = dlsym(*lib, "plugin_leak");
    Dl_info info;
    check(leak != NULL && dladdr(leak, &info) != 0, "dladdr");
    *base = info.dli_fbase;
    return leak;
}

/* Loads the library at first, which leaks 1 x 64, unloads it, then loads
 * the one at second (which leaks 1 x 65) and calls it from another line
 * (so its stack is a new one). Says on stdout whether the loader put the
 * second where the first was. */
__attribute__((noinline)) static int replugin(const char *first, const char *second) {
    void *lib, *base_first, *base_second;
    void *(*leak)(void) = (void *(*)(void))open_plugin(first, &lib, &base_first);
    check(leak() != NULL, "the first plugin's leak");
    check(dlclose(lib) == 0, "dlclose");
    leak = (void *(*)(void))open_plugin(second, &lib, &base_second);
    check(leak() != NULL, "the second plugin's leak");
    printf("%s\n", base_first == base_second ? "loaded where the first was" : "loaded elsewhere");
    return 0;
}

/* Exits (status 7) from a destructor, which leaks 1 x 33 first. */
static int exit_in_destructor;

__attribute__((destructor)) static void last_words(void) {
    if (exit_in_destructor) {
        check(malloc(33) != NULL, "the destructor's leak");
        exit(7);
    }
}

__attribute__((noinline)) static int destructor(void) {
    exit_in_destructor = 1;
    return 0;
}

/* The churn workload of the speed comparison (scripts/bench-trace.sh):
 * PAIRS malloc/free pairs of 16 to 80 bytes from a three-deep call
 * chain, one block in 1000 leaked. */
__attribute__((noinline)) static char *make_block(size_t size) {
    char *p = malloc(size);
    check(p != NULL, "malloc");
    p[0] = (char)size;
    return p;
}

__attribute__((noinline)) static char *middle(long i) { return make_block(16 + (i * 7919) % 65); }

__attribute__((noinline)) static void churn_one(long i) {
    char *block = middle(i);
    if (i % 1000 != 0) free(block);
}

/* A heap whose peak is known: 3 blocks of 100000 bytes from peak_big
 * and 10 of 1000 from peak_small live at once, then all freed, then one
 * block of 200000 bytes (more than any one stack held at the peak, but
 * less than the peak). Nothing leaks. */
__attribute__((noinline)) static void *peak_big(void) {
    void *volatile block = malloc(100000);
    return block;
}

__attribute__((noinline)) static void *peak_small(void) {
    void *volatile block = malloc(1000);
    return block;
}

__attribute__((noinline)) static int peak(void) {
    void *volatile blocks[13];
    for (int i = 0; i < 3; i++) blocks[i] = peak_big();
    for (int i = 3; i < 13; i++) blocks[i] = peak_small();
    for (int i = 0; i < 13; i++) free(blocks[i]);
    pair(200000);
    return 0;
}

__attribute__((noinline)) static int churn_pairs(long pairs) {
    for (long i = 0; i < pairs; i++) churn_one(i);
    return 0;
}

/* C23's sized frees, called as a program built against a C library that
 * has them would: the traced run finds the preload library's whether or
 * not this C library has them. Leaks nothing. */
__attribute__((noinline)) static int sized_frees(void) {
    void (*sized)(void *, size_t) = (void (*)(void *, size_t))dlsym(RTLD_DEFAULT, "free_sized");
    void (*aligned)(void *, size_t, size_t) =
        (void (*)(void *, size_t, size_t))dlsym(RTLD_DEFAULT, "free_aligned_sized");
    check(sized != NULL && aligned != NULL, "free_sized and free_aligned_sized are defined");
    sized(malloc(24), 24);
    aligned(aligned_alloc(64, 128), 64, 128);
    sized(null, 0);
    return 0;
}

/* The same from THREADS threads at once, PAIRS in all. */
static long pairs_per_thread;

static void *churn_thread(void *arg) {
    (void)arg;
    churn_pairs(pairs_per_thread);
    return NULL;
}

__attribute__((noinline)) static int churn_threads(int threads, long pairs) {
    pthread_t t[64];
    check(threads >= 1 && threads <= 64, "1 to 64 threads");
    pairs_per_thread = pairs / threads;
    for (int i = 0; i < threads; i++) check(pthread_create(&t[i], NULL, churn_thread, NULL) == 0, "pthread_create");
    for (int i = 0; i < threads; i++) pthread_join(t[i], NULL);
    return 0;
}

/* Frees one block twice: a double free, which the tracker reports and
 * survives (glibc alone would abort). Leaks nothing. */
__attribute__((noinline)) static int double_free(void) {
    char *volatile block = malloc(16);
    check(block != NULL, "malloc");
    free(block);
    free(block);
    return 0;
}

/* Blocks of each class a leak scan at exit finds, each allocated by a
 * function of its own: 1 x 48 a global points to (still reachable), 1 x
 * 64 only a global's pointer into its middle reaches (possibly lost), and
 * a list of three 48-byte nodes whose head was dropped (the head
 * definitely lost, the two nodes after it indirectly). */
struct node {
    struct node *next;
    char payload[40];
};
static void *volatile kept_start, *volatile kept_middle, *volatile dropped;

/* Not tail calls, which would leave no frame of these functions. */
__attribute__((noinline)) static void *reachable_block(void) {
    void *p = malloc(48);
    check(p != NULL, "malloc");
    return p;
}
__attribute__((noinline)) static void *middle_block(void) {
    void *p = malloc(64);
    check(p != NULL, "malloc");
    return p;
}
__attribute__((noinline)) static struct node *list_node(struct node *next) {
    struct node *n = malloc(sizeof *n);
    check(n != NULL, "malloc");
    n->next = next;
    return n;
}
__attribute__((noinline)) static void drop_list(void) {
    dropped = list_node(list_node(list_node(NULL)));
    dropped = NULL;
}

__attribute__((noinline)) static int reachability(void) {
    kept_start = reachable_block();
    kept_middle = (char *)middle_block() + 16;
    drop_list();
    return 0;
}

/* A block with a page the program made unreadable, as a coroutine
 * library guards the end of a stack it allocated with malloc: the leak
 * scan at exit must read around it. A static holds the 3-page block, and
 * its last page a 40-byte block: both still reachable. */
static void *volatile guarded;

__attribute__((noinline)) static int guard_page(void) {
    long page = sysconf(_SC_PAGESIZE);
    char *p = NULL;
    check(posix_memalign((void **)&p, page, 3 * page) == 0, "posix_memalign");
    check(mprotect(p + page, page, PROT_NONE) == 0, "mprotect");
    *(void **)(p + 2 * page) = malloc(40);
    guarded = p;
    return 0;
}

/* A child that leaks 1 x 40 and exits 0; the parent leaks nothing. */
__attribute__((noinline)) static int leaky_child(void) {
    pid_t pid = fork();
    check(pid >= 0, "fork");
    if (pid == 0) {
        check(malloc(40) != NULL, "the child's leak");
        exit(0);
    }
    int status;
    check(waitpid(pid, &status, 0) == pid, "waitpid");
    check(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the child ended well");
    return 0;
}

/* Threads whose first call is pthread_getattr_np, as a new thread of the
 * JVM's makes: glibc's allocates while it holds the lock of the thread
 * it describes. One asks for its own, then two ask for each other's at
 * once. A deadlock ends the program by SIGALRM. Leaks nothing. */
static pthread_t peers[2];
static pthread_barrier_t peers_ready, peers_done;

static void stack_of(pthread_t thread) {
    pthread_attr_t attr;
    void *addr;
    size_t size;
    check(pthread_getattr_np(thread, &attr) == 0, "pthread_getattr_np");
    check(pthread_attr_getstack(&attr, &addr, &size) == 0 && size > 0, "pthread_attr_getstack");
    pthread_attr_destroy(&attr);
}

static void *own_stack(void *arg) {
    stack_of(pthread_self());
    return arg;
}

static void *peer_stack(void *arg) {
    pthread_barrier_wait(&peers_ready);
    stack_of(peers[1 - (long)arg]);
    /* Alive until the other has asked: glibc's answer for a thread that
     * has ended is ESRCH (it asks the kernel for the thread's CPU set). */
    pthread_barrier_wait(&peers_done);
    return NULL;
}

__attribute__((noinline)) static int getattr_first(void) {
    alarm(10);
    pthread_t asker;
    check(pthread_create(&asker, NULL, own_stack, NULL) == 0, "pthread_create");
    check(pthread_join(asker, NULL) == 0, "pthread_join");
    check(pthread_barrier_init(&peers_ready, NULL, 3) == 0 && pthread_barrier_init(&peers_done, NULL, 2) == 0,
          "pthread_barrier_init");
    for (long i = 0; i < 2; i++) check(pthread_create(&peers[i], NULL, peer_stack, (void *)i) == 0, "pthread_create");
    pthread_barrier_wait(&peers_ready);
    for (int i = 0; i < 2; i++) check(pthread_join(peers[i], NULL) == 0, "pthread_join");
    pthread_barrier_destroy(&peers_ready);
    pthread_barrier_destroy(&peers_done);
    return 0;
}

/* Threads cancelled (pthread_cancel, deferred) while they allocate: each
 * makes 1000 malloc/free pairs between its own cancellation points, so
 * that a cancellation requested meanwhile would act at the tracker's log
 * writes first, were those cancellation points. 20 rounds of 2 threads.
 * Leaks nothing. */
static void *cancellable_churn(void *arg) {
    for (;;) {
        for (int i = 0; i < 1000; i++) pair(48);
        pthread_testcancel();
    }
    return arg;
}

__attribute__((noinline)) static int cancel_threads(void) {
    alarm(20);
    for (int round = 0; round < 20; round++) {
        pthread_t t[2];
        for (int i = 0; i < 2; i++) check(pthread_create(&t[i], NULL, cancellable_churn, NULL) == 0, "pthread_create");
        usleep(10000);
        for (int i = 0; i < 2; i++) {
            void *result;
            check(pthread_cancel(t[i]) == 0, "pthread_cancel");
            check(pthread_join(t[i], &result) == 0 && result == PTHREAD_CANCELED, "cancelled");
        }
    }
    return 0;
}

/* Ends by quick_exit (status 5), which runs only the at_quick_exit
 * functions: leaks 1 x 77 before, and 1 x 78 in its own such function. */
static void last_quick_words(void) { check(malloc(78) != NULL, "the handler's leak"); }

__attribute__((noinline)) static int quick(void) {
    check(at_quick_exit(last_quick_words) == 0, "at_quick_exit");
    check(malloc(77) != NULL, "leak");
    quick_exit(5);
}

int main(int argc, char **argv) {
    check(argc >= 2, "a mode");
    const char *mode = argv[1];
    if (!strcmp(mode, "family")) return family(argc < 3 || strcmp(argv[2], "without-pvalloc"));
    if (!strcmp(mode, "sizes")) return sizes();
    if (!strcmp(mode, "sized-frees")) return sized_frees();
    if (!strcmp(mode, "threads")) return threads();
    if (!strcmp(mode, "fork")) return forks();
    if (!strcmp(mode, "signal")) return signals();
    if (!strcmp(mode, "plugin")) return plugin(argv[2]);
    if (!strcmp(mode, "replugin")) { check(argc >= 4, "replugin FIRST SECOND"); return replugin(argv[2], argv[3]); }
    if (!strcmp(mode, "exec")) return run_family();
    if (!strcmp(mode, "exec-fails")) return exec_fails_then_execs();
    if (!strcmp(mode, "destructor")) return destructor();
    if (!strcmp(mode, "idle-child")) return idle_child();
    if (!strcmp(mode, "close-all")) { check(argc >= 3, "close-all PATH"); return close_all(argv[2]); }
    if (!strcmp(mode, "peak")) return peak();
    if (!strcmp(mode, "double-free")) return double_free();
    if (!strcmp(mode, "getattr-first")) return getattr_first();
    if (!strcmp(mode, "cancel")) return cancel_threads();
    if (!strcmp(mode, "quick_exit")) return quick();
    if (!strcmp(mode, "leaky-child")) return leaky_child();
    if (!strcmp(mode, "reachability")) return reachability();
    if (!strcmp(mode, "guard-page")) return guard_page();
    if (!strcmp(mode, "churn")) return churn_pairs(argc > 2 ? atol(argv[2]) : 1000000);
    if (!strcmp(mode, "churn-threads")) { check(argc >= 4, "churn-threads THREADS PAIRS"); return churn_threads(atoi(argv[2]), atol(argv[3])); }
    if (!strcmp(mode, "_exit")) { check(malloc(21) != NULL, "leak"); _exit(4); }
    if (!strcmp(mode, "abort")) { check(malloc(22) != NULL, "leak"); abort(); }
    fprintf(stderr, "programs: unknown mode %s\n", mode);
    return 99;
}

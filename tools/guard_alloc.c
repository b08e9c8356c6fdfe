/* Guard pages behind aligned heap blocks, to stop a native kernel at the instruction that writes past the end of a
 * buffer (or into one already freed), instead of at a later malloc that finds the heap corrupted.
 *
 *   gcc -O2 -shared -fPIC -o /tmp/guard_alloc.so tools/guard_alloc.c -ldl -lpthread
 *   LD_PRELOAD=/tmp/guard_alloc.so python train.py ...     (tools/crash_soak.py --guard does both)
 *
 * TensorFlow's CPU tensors, and oneDNN's own buffers, come from posix_memalign / aligned_alloc / memalign. Each
 * such block of at least GUARD_MIN_BYTES gets its own mapping, placed so that its last byte (rounded up to the
 * alignment) is the last byte before a PROT_NONE page: a write past the end faults at once (SIGSEGV in the
 * kernel that wrote, which gdb shows in the core). free() makes the whole mapping PROT_NONE and keeps it in a
 * quarantine of QUARANTINE blocks before unmapping, so a write to a freed block faults too. With
 * GUARD_ALLOC_MALLOC=1, malloc and calloc blocks of at least MALLOC_MIN_BYTES get the same (Eigen's temporaries
 * come from malloc); smaller ones, and Python's small objects, are untouched. Not for production: every guarded
 * block costs a mapping and a system call: a training process holds some 20,000 mappings with it, so raise
 * vm.max_map_count (sysctl -w vm.max_map_count=1048576); past the limit, blocks are left unguarded.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define GUARD_MIN_BYTES 256
#define MALLOC_MIN_BYTES 4096
#define QUARANTINE 2048
#define MAGIC 0x67756172645f616cULL /* "guard_al" */

/* 16 bytes just below the user pointer: for a block that is not ours, the same 16 bytes are glibc's chunk header,
 * always readable. */
typedef struct {
  uint64_t tag;   /* MAGIC ^ the mapping's start */
  size_t length;  /* the whole mapping, guard page included */
} header_t;

static void (*real_free)(void *);
static void *(*real_malloc)(size_t);
static void *(*real_calloc)(size_t, size_t);
static void *(*real_realloc)(void *, size_t);
static int (*real_posix_memalign)(void **, size_t, size_t);
static size_t page;
static int guard_malloc, initializing;
static char boot[16384] __attribute__((aligned(64))); /* what dlsym allocates while the real functions are found */
static size_t boot_used;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct { void *base; size_t length; } quarantine[QUARANTINE];
static size_t next_slot;

__attribute__((constructor)) static void init(void) {
  if (real_free || initializing) return;
  initializing = 1;
  page = (size_t)sysconf(_SC_PAGESIZE);
  real_malloc = dlsym(RTLD_NEXT, "malloc");
  real_calloc = dlsym(RTLD_NEXT, "calloc");
  real_realloc = dlsym(RTLD_NEXT, "realloc");
  real_posix_memalign = dlsym(RTLD_NEXT, "posix_memalign");
  const char *m = getenv("GUARD_ALLOC_MALLOC");
  guard_malloc = m && m[0] == '1';
  real_free = dlsym(RTLD_NEXT, "free");
  initializing = 0;
}

static void *boot_alloc(size_t size) {
  size_t at = (boot_used + 15) & ~(size_t)15;
  if (at + size > sizeof boot) abort();
  boot_used = at + size;
  return boot + at; /* zeroed: static storage */
}

static int in_boot(void *p) { return (char *)p >= boot && (char *)p < boot + sizeof boot; }

static size_t round_up(size_t x, size_t to) { return (x + to - 1) / to * to; }

static char *base_of(header_t *h) { return (char *)(uintptr_t)(h->tag ^ MAGIC); }

/* Ours: the tag names a page-aligned mapping that holds p. */
static header_t *header_of(void *p) {
  if (!p || ((uintptr_t)p & 15)) return NULL;
  header_t *h = (header_t *)p - 1;
  char *base = base_of(h);
  if (((uintptr_t)base & (page - 1)) || (char *)p <= base || (char *)p >= base + h->length) return NULL;
  return h;
}

/* The caller's bytes, rounded up to the alignment: from p to the guard page. */
static size_t usable(void *p, header_t *h) { return (size_t)(base_of(h) + h->length - page - (char *)p); }

static void *guarded(size_t alignment, size_t size) {
  if (alignment < 16) alignment = 16;
  size_t body = round_up(size ? size : 1, alignment);
  size_t front = round_up(sizeof(header_t), alignment);
  size_t data_pages = round_up(body + front, page);
  size_t length = data_pages + page;
  char *base = mmap(NULL, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (base == MAP_FAILED) return NULL;
  if (mprotect(base + data_pages, page, PROT_NONE)) {
    munmap(base, length);
    return NULL;
  }
  char *p = base + data_pages - body; /* aligned: data_pages and body are multiples of alignment (<= page) */
  header_t *h = (header_t *)p - 1;
  h->tag = MAGIC ^ (uintptr_t)base;
  h->length = length;
  return p;
}

static int want_guard(size_t alignment, size_t size) {
  return size >= GUARD_MIN_BYTES && alignment <= page;
}

int posix_memalign(void **out, size_t alignment, size_t size) {
  if (!real_posix_memalign) init();
  if (!want_guard(alignment, size)) return real_posix_memalign(out, alignment, size);
  void *p = guarded(alignment, size);
  if (!p) return real_posix_memalign(out, alignment, size); /* out of mappings (vm.max_map_count): unguarded */
  *out = p;
  return 0;
}

void *aligned_alloc(size_t alignment, size_t size) {
  void *p = NULL;
  if (alignment < sizeof(void *)) alignment = sizeof(void *); /* aligned_alloc takes 1, 2, 4; posix_memalign not */
  return posix_memalign(&p, alignment, size) ? NULL : p;
}

void *memalign(size_t alignment, size_t size) { return aligned_alloc(alignment, size); }

void *malloc(size_t size) {
  if (!real_malloc) {
    if (initializing) return boot_alloc(size);
    init();
  }
  void *p = guard_malloc && size >= MALLOC_MIN_BYTES ? guarded(16, size) : NULL;
  return p ? p : real_malloc(size);
}

void *calloc(size_t n, size_t size) {
  if (!real_calloc) {
    if (initializing) return boot_alloc(n * size);
    init();
  }
  if (size && n > (size_t)-1 / size) return NULL;
  void *p = guard_malloc && n * size >= MALLOC_MIN_BYTES ? guarded(16, n * size) : NULL;
  return p ? p : real_calloc(n, size);
}

void free(void *p) {
  if (in_boot(p)) return;
  if (!real_free) init();
  header_t *h = header_of(p);
  if (!h) {
    real_free(p);
    return;
  }
  void *base = base_of(h);
  size_t length = h->length;
  h->tag = 0;
  mprotect(base, length, PROT_NONE); /* a write to the freed block now faults */
  pthread_mutex_lock(&lock);
  size_t slot = next_slot++ % QUARANTINE;
  void *old_base = quarantine[slot].base;
  size_t old_length = quarantine[slot].length;
  quarantine[slot].base = base;
  quarantine[slot].length = length;
  pthread_mutex_unlock(&lock);
  if (old_base) munmap(old_base, old_length);
}

void *realloc(void *p, size_t size) {
  if (!real_realloc) init();
  if (in_boot(p)) {
    void *q = malloc(size);
    size_t left = (size_t)(boot + sizeof boot - (char *)p);
    if (q) memcpy(q, p, size < left ? size : left);
    return q;
  }
  header_t *h = header_of(p);
  if (!h) return real_realloc(p, size);
  void *q = malloc(size);
  if (!q) return NULL;
  memcpy(q, p, usable(p, h) < size ? usable(p, h) : size);
  free(p);
  return q;
}

size_t malloc_usable_size(void *p) {
  static size_t (*real_usable)(void *);
  header_t *h = header_of(p);
  if (h) return usable(p, h);
  if (!real_usable) real_usable = dlsym(RTLD_NEXT, "malloc_usable_size");
  return real_usable(p);
}

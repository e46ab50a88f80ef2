// fileio.h — small file helpers shared by the loaders and writers: whole-file size, and the
// atomic write protocol (write PATH.tmp, fsync, rename) so a crash never leaves a half-written
// file in place of a good one.
#ifndef T5_FILEIO_H
#define T5_FILEIO_H

#include <stdio.h>      // defines: FILE, fopen, fwrite, snprintf
#include <stdint.h>     // defines: int64_t
#include <string.h>     // defines: strerror
#include <errno.h>      // defines: errno
#include <unistd.h>     // defines: fsync, unlink
#include <sys/stat.h>   // defines: stat

// size of a regular file in bytes, or -1 (with a message) if it cannot be inspected
static inline int64_t file_size_of(const char* path, char* err, size_t errlen) {
    struct stat st;
    if (stat(path, &st) != 0) { snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno)); return -1; }
    if (!S_ISREG(st.st_mode)) { snprintf(err, errlen, "%s: not a regular file", path); return -1; }
    return (int64_t)st.st_size;
}

// mkdir -p DIR (0755); 0 on success or if it exists as a directory
static inline int mkdir_p(const char* dir, char* err, size_t errlen) {
    char buf[4096];
    if (snprintf(buf, sizeof(buf), "%s", dir) >= (int)sizeof(buf)) { snprintf(err, errlen, "%s: path too long", dir); return -1; }
    for (char* p = buf + 1; ; p++) {
        if (*p != '/' && *p != 0) continue;
        char c = *p;
        *p = 0;
        struct stat st;
        if (mkdir(buf, 0755) != 0 && (errno != EEXIST || stat(buf, &st) != 0 || !S_ISDIR(st.st_mode))) {
            int exists = errno == EEXIST;
            snprintf(err, errlen, "%s: cannot create directory: %s", buf, exists ? "a file of that name is in the way" : strerror(errno));
            return -1;
        }
        if (c == 0) return 0;
        *p = c;
    }
}

// mkdir -p of the directory that will hold PATH
static inline int mkdir_parent(const char* path, char* err, size_t errlen) {
    const char* slash = strrchr(path, '/');
    if (slash == NULL || slash == path) return 0;
    char dir[4096];
    if ((size_t)(slash - path) >= sizeof(dir)) { snprintf(err, errlen, "%s: path too long", path); return -1; }
    memcpy(dir, path, (size_t)(slash - path));
    dir[slash - path] = 0;
    return mkdir_p(dir, err, errlen);
}

// an open temporary file PATH.tmp for an atomic write
typedef struct { FILE* f; char tmp[4096]; const char* path; } AtomicFile;

static inline int atomic_open(AtomicFile* a, const char* path, char* err, size_t errlen) {
    a->path = path;
    if (snprintf(a->tmp, sizeof(a->tmp), "%s.tmp", path) >= (int)sizeof(a->tmp)) {
        snprintf(err, errlen, "%s: path too long", path); return -1;
    }
    a->f = fopen(a->tmp, "wb");
    if (!a->f) { snprintf(err, errlen, "%s: cannot create: %s", a->tmp, strerror(errno)); return -1; }
    return 0;
}

static inline int atomic_write(AtomicFile* a, const void* data, size_t bytes, char* err, size_t errlen) {
    if (bytes && fwrite(data, 1, bytes, a->f) != bytes) {
        snprintf(err, errlen, "%s: write failed: %s", a->tmp, strerror(errno)); return -1;
    }
    return 0;
}

// ok = 1: flush, fsync, rename over PATH. ok = 0 (an earlier step failed): remove the temporary.
static inline int atomic_close(AtomicFile* a, int ok, char* err, size_t errlen) {
    int rc = 0;
    if (ok && (fflush(a->f) != 0 || fsync(fileno(a->f)) != 0)) {
        snprintf(err, errlen, "%s: flush failed: %s", a->tmp, strerror(errno)); rc = -1;
    }
    if (fclose(a->f) != 0 && ok && rc == 0) { snprintf(err, errlen, "%s: close failed: %s", a->tmp, strerror(errno)); rc = -1; }
    a->f = NULL;
    if (!ok || rc != 0) { unlink(a->tmp); return ok ? rc : -1; }
    if (rename(a->tmp, a->path) != 0) {
        snprintf(err, errlen, "%s: cannot rename into place: %s", a->path, strerror(errno));
        unlink(a->tmp); return -1;
    }
    return 0;
}

// copies SRC to DST by the atomic protocol (DST is whole or untouched)
static inline int file_copy(const char* src, const char* dst, char* err, size_t errlen) {
    FILE* in = fopen(src, "rb");
    if (!in) { snprintf(err, errlen, "%s: cannot open: %s", src, strerror(errno)); return -1; }
    AtomicFile a;
    if (atomic_open(&a, dst, err, errlen)) { fclose(in); return -1; }
    char buf[1 << 16];
    int ok = 1;
    for (size_t n; ok && (n = fread(buf, 1, sizeof(buf), in)) > 0;) ok = atomic_write(&a, buf, n, err, errlen) == 0;
    if (ok && ferror(in)) { snprintf(err, errlen, "%s: read error", src); ok = 0; }
    fclose(in);
    return atomic_close(&a, ok, err, errlen);
}

#endif // T5_FILEIO_H

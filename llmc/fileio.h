// fileio.h — small file helpers shared by the loaders and writers: whole-file size, free space, and
// the durable publication protocol (docs/durability.md):
//   1. write PATH.tmp            3. rename PATH.tmp -> PATH  (atomic: readers see the old or the new file)
//   2. fsync PATH.tmp            4. fsync PATH's directory  (the rename itself survives a power cut)
// so a crash never leaves a half-written file in place of a good one, and a file reported as written
// is still there after the machine goes down. Only after step 4 may the caller delete what the new
// file replaces (rundir.h's ckpt_prune).
#ifndef T5_FILEIO_H
#define T5_FILEIO_H

#include <stdio.h>       // defines: FILE, fopen, fwrite, snprintf
#include <stdint.h>      // defines: int64_t, uint64_t
#include <string.h>      // defines: strerror, strrchr, memcpy
#include <errno.h>       // defines: errno, EINVAL, ENOTSUP
#include <unistd.h>      // defines: fsync, unlink, close
#include <fcntl.h>       // defines: open, O_RDONLY, O_DIRECTORY, O_CLOEXEC
#include <sys/stat.h>    // defines: stat
#include <sys/statvfs.h> // defines: statvfs (disk_space_check)

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

// "2.97 GiB", "512.0 MiB", "12.0 KiB", "100 bytes": a size for a person to read
static inline const char* human_bytes(uint64_t bytes, char* buf, size_t len) {
    if (bytes >= (1ull << 30)) snprintf(buf, len, "%.2f GiB", (double)bytes / (double)(1ull << 30));
    else if (bytes >= (1ull << 20)) snprintf(buf, len, "%.1f MiB", (double)bytes / (double)(1ull << 20));
    else if (bytes >= (1ull << 10)) snprintf(buf, len, "%.1f KiB", (double)bytes / 1024.0);
    else snprintf(buf, len, "%llu bytes", (unsigned long long)bytes);
    return buf;
}

// the directory part of PATH into dir ("." when PATH has no slash, "/" for "/name"); 0, or -1 when too long
static inline int dir_of(const char* path, char* dir, size_t len) {
    const char* slash = strrchr(path, '/');
    size_t n = slash == NULL ? 0 : slash == path ? 1 : (size_t)(slash - path);
    if (n + 2 > len) return -1;
    if (n == 0) { dir[0] = '.'; dir[1] = 0; return 0; }
    memcpy(dir, path, n);
    dir[n] = 0;
    return 0;
}

// the free space of the file system holding DIR as an unprivileged user sees it (f_bavail: root may still
// have the reserved blocks, a trainer should not count on them); 0, or -1 with errno set
static inline int disk_free_bytes(const char* dir, uint64_t* avail) {
    struct statvfs vfs;
    if (statvfs(dir, &vfs) != 0) return -1;
    *avail = (uint64_t)vfs.f_bavail * (uint64_t)vfs.f_frsize;
    return 0;
}

// "DIR: not enough free space[ for FILE]: N bytes (x GiB) needed, M bytes (y MiB) free"
static inline void disk_space_message(const char* dir, const char* file, uint64_t need, uint64_t avail, char* err,
                                      size_t errlen) {
    char hn[32], ha[32];
    snprintf(err, errlen, "%s: not enough free space%s%s: %llu bytes (%s) needed, %llu bytes (%s) free", dir,
             file ? " for " : "", file ? file : "", (unsigned long long)need, human_bytes(need, hn, sizeof(hn)),
             (unsigned long long)avail, human_bytes(avail, ha, sizeof(ha)));
}

// Is there room in DIR for BYTES more? 0, or -1 with a message naming the directory, the bytes needed and
// the bytes free. Called before a large write, so that a full disk fails in a second with a clear message
// instead of after minutes with ENOSPC and a removed .tmp. Not a reservation: the disk may still fill
// during the write (then the write fails and the atomic protocol keeps the old file).
static inline int disk_space_check(const char* dir, uint64_t bytes_needed, char* err, size_t errlen) {
    uint64_t avail;
    if (disk_free_bytes(dir, &avail)) { snprintf(err, errlen, "%s: cannot query free space: %s", dir, strerror(errno)); return -1; }
    if (avail >= bytes_needed) return 0;
    disk_space_message(dir, NULL, bytes_needed, avail, err, errlen);
    return -1;
}

// disk_space_check for the directory that will hold PATH (which must exist); the message names PATH too
static inline int disk_space_check_for(const char* path, uint64_t bytes_needed, char* err, size_t errlen) {
    char dir[4096];
    uint64_t avail;
    if (dir_of(path, dir, sizeof(dir))) { snprintf(err, errlen, "%s: path too long", path); return -1; }
    if (disk_free_bytes(dir, &avail)) {
        snprintf(err, errlen, "%s: cannot query the free space of its directory: %s", path, strerror(errno));
        return -1;
    }
    if (avail >= bytes_needed) return 0;
    const char* base = strrchr(path, '/');
    disk_space_message(dir, base ? base + 1 : path, bytes_needed, avail, err, errlen);
    return -1;
}

// fsync of the directory holding PATH: makes a rename (or unlink) in it durable. 0, or -1 with a message.
// A file system that cannot sync directories (EINVAL, ENOTSUP: some FUSE and network mounts) has
// nothing to do here: that counts as success, the data itself was already synced.
static inline int fsync_parent_dir(const char* path, char* err, size_t errlen) {
    char dir[4096];
    if (dir_of(path, dir, sizeof(dir))) { snprintf(err, errlen, "%s: path too long", path); return -1; }
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) { snprintf(err, errlen, "%s: cannot open directory to sync it: %s", dir, strerror(errno)); return -1; }
    int rc = fsync(fd), e = errno;
    close(fd);
    if (rc != 0 && e != EINVAL && e != ENOTSUP) {
        snprintf(err, errlen, "%s: cannot sync directory (after publishing %s): %s", dir, path, strerror(e));
        return -1;
    }
    return 0;
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

// ok = 1: flush, fsync, rename over PATH, fsync PATH's directory. ok = 0 (an earlier step failed): remove
// the temporary. A failure before the rename leaves PATH as it was and no temporary; a failure of the
// directory sync leaves the new PATH in place but not known to be durable, and is reported.
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
    return fsync_parent_dir(a->path, err, errlen);
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

/* The wrapped functions (included by shim.c). Each one: if a rule names its call family,
 * ask decide(); on a hit set errno and return the failure value without calling libc
 * (except close, which closes anyway: on Linux the descriptor is gone even when close
 * reports an error). copy_file_range and sendfile match against their output fd. */

static int needs_mode(int flags) { return (flags & O_CREAT) || ((flags & O_TMPFILE) == O_TMPFILE); }

#define VA_MODE(flags)                                                                         \
    mode_t mode = 0;                                                                           \
    if (needs_mode(flags)) { va_list ap; va_start(ap, flags); mode = va_arg(ap, mode_t); va_end(ap); }

#define NOFD -1
#define FDCALL(id, fd, failret) CHECK(id, AT_FDCWD, NULL, AT_FDCWD, NULL, fd, failret)
#define PATHCALL(id, dirfd, path, failret) CHECK(id, dirfd, path, AT_FDCWD, NULL, NOFD, failret)

/* ---- opens */
REAL(open); REAL(open64); REAL(openat); REAL(openat64);
int open(const char *path, int flags, ...) {
    VA_MODE(flags); PATHCALL(C_OPEN, AT_FDCWD, path, -1);
    return CALL_REAL(open, path, flags, mode);
}
int open64(const char *path, int flags, ...) {
    VA_MODE(flags); PATHCALL(C_OPEN, AT_FDCWD, path, -1);
    return CALL_REAL(open64, path, flags, mode);
}
int openat(int dirfd, const char *path, int flags, ...) {
    VA_MODE(flags); PATHCALL(C_OPENAT, dirfd, path, -1);
    return CALL_REAL(openat, dirfd, path, flags, mode);
}
int openat64(int dirfd, const char *path, int flags, ...) {
    VA_MODE(flags); PATHCALL(C_OPENAT, dirfd, path, -1);
    return CALL_REAL(openat64, dirfd, path, flags, mode);
}

/* ---- directory entries */
REAL(mkdir); REAL(mkdirat); REAL(rename); REAL(renameat); REAL(renameat2); REAL(unlink);
REAL(rmdir); REAL(unlinkat); REAL(link); REAL(linkat); REAL(symlink); REAL(symlinkat);
int mkdir(const char *p, mode_t m) { PATHCALL(C_MKDIR, AT_FDCWD, p, -1); return CALL_REAL(mkdir, p, m); }
int mkdirat(int d, const char *p, mode_t m) { PATHCALL(C_MKDIRAT, d, p, -1); return CALL_REAL(mkdirat, d, p, m); }
int rename(const char *a, const char *b) {
    CHECK(C_RENAME, AT_FDCWD, a, AT_FDCWD, b, NOFD, -1); return CALL_REAL(rename, a, b);
}
int renameat(int da, const char *a, int db, const char *b) {
    CHECK(C_RENAMEAT, da, a, db, b, NOFD, -1); return CALL_REAL(renameat, da, a, db, b);
}
int renameat2(int da, const char *a, int db, const char *b, unsigned int fl) {
    CHECK(C_RENAMEAT, da, a, db, b, NOFD, -1); return CALL_REAL(renameat2, da, a, db, b, fl);
}
int unlink(const char *p) { PATHCALL(C_UNLINK, AT_FDCWD, p, -1); return CALL_REAL(unlink, p); }
int rmdir(const char *p) { PATHCALL(C_RMDIR, AT_FDCWD, p, -1); return CALL_REAL(rmdir, p); }
int unlinkat(int d, const char *p, int fl) { PATHCALL(C_UNLINKAT, d, p, -1); return CALL_REAL(unlinkat, d, p, fl); }
int link(const char *a, const char *b) {
    CHECK(C_LINK, AT_FDCWD, a, AT_FDCWD, b, NOFD, -1); return CALL_REAL(link, a, b);
}
int linkat(int da, const char *a, int db, const char *b, int fl) {
    CHECK(C_LINKAT, da, a, db, b, NOFD, -1); return CALL_REAL(linkat, da, a, db, b, fl);
}
int symlink(const char *t, const char *p) { PATHCALL(C_SYMLINK, AT_FDCWD, p, -1); return CALL_REAL(symlink, t, p); }
int symlinkat(const char *t, int d, const char *p) {
    PATHCALL(C_SYMLINKAT, d, p, -1); return CALL_REAL(symlinkat, t, d, p);
}

/* ---- stat family (glibc >= 2.33 exports these as real functions) */
REAL(stat); REAL(stat64); REAL(lstat); REAL(lstat64); REAL(fstat); REAL(fstat64);
REAL(fstatat); REAL(fstatat64); REAL(statx);
int stat(const char *p, struct stat *b) { PATHCALL(C_STAT, AT_FDCWD, p, -1); return CALL_REAL(stat, p, b); }
int stat64(const char *p, struct stat64 *b) { PATHCALL(C_STAT, AT_FDCWD, p, -1); return CALL_REAL(stat64, p, b); }
int lstat(const char *p, struct stat *b) { PATHCALL(C_LSTAT, AT_FDCWD, p, -1); return CALL_REAL(lstat, p, b); }
int lstat64(const char *p, struct stat64 *b) { PATHCALL(C_LSTAT, AT_FDCWD, p, -1); return CALL_REAL(lstat64, p, b); }
int fstat(int fd, struct stat *b) { FDCALL(C_FSTAT, fd, -1); return CALL_REAL(fstat, fd, b); }
int fstat64(int fd, struct stat64 *b) { FDCALL(C_FSTAT, fd, -1); return CALL_REAL(fstat64, fd, b); }
int fstatat(int d, const char *p, struct stat *b, int fl) {
    PATHCALL(C_FSTATAT, d, p, -1); return CALL_REAL(fstatat, d, p, b, fl);
}
int fstatat64(int d, const char *p, struct stat64 *b, int fl) {
    PATHCALL(C_FSTATAT, d, p, -1); return CALL_REAL(fstatat64, d, p, b, fl);
}
int statx(int d, const char *p, int fl, unsigned int mask, struct statx *b) {
    PATHCALL(C_STATX, d, p, -1); return CALL_REAL(statx, d, p, fl, mask, b);
}

/* ---- data */
REAL(read); REAL(readv); REAL(pread); REAL(pread64); REAL(write); REAL(writev); REAL(pwrite);
REAL(pwrite64); REAL(copy_file_range); REAL(sendfile); REAL(sendfile64);
ssize_t read(int fd, void *b, size_t n) { FDCALL(C_READ, fd, -1); return CALL_REAL(read, fd, b, n); }
ssize_t readv(int fd, const struct iovec *v, int n) { FDCALL(C_READV, fd, -1); return CALL_REAL(readv, fd, v, n); }
ssize_t pread(int fd, void *b, size_t n, off_t o) { FDCALL(C_PREAD, fd, -1); return CALL_REAL(pread, fd, b, n, o); }
ssize_t pread64(int fd, void *b, size_t n, off64_t o) {
    FDCALL(C_PREAD, fd, -1); return CALL_REAL(pread64, fd, b, n, o);
}
ssize_t write(int fd, const void *b, size_t n) { FDCALL(C_WRITE, fd, -1); return CALL_REAL(write, fd, b, n); }
ssize_t writev(int fd, const struct iovec *v, int n) {
    FDCALL(C_WRITEV, fd, -1); return CALL_REAL(writev, fd, v, n);
}
ssize_t pwrite(int fd, const void *b, size_t n, off_t o) {
    FDCALL(C_PWRITE, fd, -1); return CALL_REAL(pwrite, fd, b, n, o);
}
ssize_t pwrite64(int fd, const void *b, size_t n, off64_t o) {
    FDCALL(C_PWRITE, fd, -1); return CALL_REAL(pwrite64, fd, b, n, o);
}
ssize_t copy_file_range(int in, off64_t *oi, int out, off64_t *oo, size_t n, unsigned int fl) {
    FDCALL(C_COPY_FILE_RANGE, out, -1); return CALL_REAL(copy_file_range, in, oi, out, oo, n, fl);
}
ssize_t sendfile(int out, int in, off_t *o, size_t n) {
    FDCALL(C_SENDFILE, out, -1); return CALL_REAL(sendfile, out, in, o, n);
}
ssize_t sendfile64(int out, int in, off64_t *o, size_t n) {
    FDCALL(C_SENDFILE, out, -1); return CALL_REAL(sendfile64, out, in, o, n);
}

/* ---- metadata, sync, close */
REAL(fchmod); REAL(fchmodat); REAL(fchown); REAL(fchownat); REAL(futimens); REAL(utimensat);
REAL(fsync); REAL(fdatasync); REAL(close); REAL(ftruncate); REAL(ftruncate64);
REAL(fgetxattr); REAL(fsetxattr); REAL(flistxattr);
int fchmod(int fd, mode_t m) { FDCALL(C_FCHMOD, fd, -1); return CALL_REAL(fchmod, fd, m); }
int fchmodat(int d, const char *p, mode_t m, int fl) {
    PATHCALL(C_FCHMODAT, d, p, -1); return CALL_REAL(fchmodat, d, p, m, fl);
}
int fchown(int fd, uid_t u, gid_t g) { FDCALL(C_FCHOWN, fd, -1); return CALL_REAL(fchown, fd, u, g); }
int fchownat(int d, const char *p, uid_t u, gid_t g, int fl) {
    PATHCALL(C_FCHOWNAT, d, p, -1); return CALL_REAL(fchownat, d, p, u, g, fl);
}
int futimens(int fd, const struct timespec t[2]) { FDCALL(C_FUTIMENS, fd, -1); return CALL_REAL(futimens, fd, t); }
int utimensat(int d, const char *p, const struct timespec t[2], int fl) {
    const char *q = p;
    __asm__("" : "+r"(q));   /* the header says nonnull, Linux allows NULL: keep the test */
    if (q) PATHCALL(C_UTIMENSAT, d, q, -1); else FDCALL(C_UTIMENSAT, d, -1);
    return CALL_REAL(utimensat, d, p, t, fl);
}
int fsync(int fd) { FDCALL(C_FSYNC, fd, -1); return CALL_REAL(fsync, fd); }
int fdatasync(int fd) { FDCALL(C_FDATASYNC, fd, -1); return CALL_REAL(fdatasync, fd); }
int close(int fd) {
    int e = armed[C_CLOSE] ? decide(C_CLOSE, AT_FDCWD, NULL, AT_FDCWD, NULL, fd) : 0;
    int r = CALL_REAL(close, fd);
    if (e) { errno = e; return -1; }
    return r;
}
int ftruncate(int fd, off_t n) { FDCALL(C_FTRUNCATE, fd, -1); return CALL_REAL(ftruncate, fd, n); }
int ftruncate64(int fd, off64_t n) { FDCALL(C_FTRUNCATE, fd, -1); return CALL_REAL(ftruncate64, fd, n); }
ssize_t fgetxattr(int fd, const char *n, void *v, size_t s) {
    FDCALL(C_FGETXATTR, fd, -1); return CALL_REAL(fgetxattr, fd, n, v, s);
}
int fsetxattr(int fd, const char *n, const void *v, size_t s, int fl) {
    FDCALL(C_FSETXATTR, fd, -1); return CALL_REAL(fsetxattr, fd, n, v, s, fl);
}
ssize_t flistxattr(int fd, char *l, size_t s) { FDCALL(C_FLISTXATTR, fd, -1); return CALL_REAL(flistxattr, fd, l, s); }

/* faultshim: deterministic errno injection for the libc calls libfiu does not wrap.
 *
 * Why: CPython 3.11 reaches the file system through openat64, fstatat64, renameat,
 * unlinkat, mkdirat, linkat, futimens... libfiu 1.1 wraps open/open64, rename, unlink,
 * readdir but none of the *at calls, so pcopy's dir-fd code paths cannot be faulted with
 * it. This LD_PRELOAD library can, deterministically, and for a chosen path only.
 *
 * PCOPY_FAULTS="rule;rule;..."   rule = CALL[:key=value]...
 *   CALL    a family name: openat (also openat64), open (open64), fstatat (fstatat64,
 *           newfstatat), renameat (renameat2), pread (pread64), ... see NAMES below
 *   match=S substring of the path argument; relative paths are also tried resolved
 *           against their dir fd; fd calls (read, write, fchmod...) use /proc/self/fd/N
 *   nth=N   fail only the Nth matching call of this rule (counted per process)
 *   prob=P  fail a matching call with probability P, decided by hashing (seed, rule,
 *   seed=S  call index): deterministic, thread-safe, no shared PRNG state
 *   perpid=1  mix getpid() into the hash (each process gets its own pattern)
 *   errno=NAME (or a number; default EIO)
 *   delay=US  sleep US microseconds when the rule fires; without errno= the call then
 *           goes ahead (a slow disk), with errno= it then fails
 *   pid=parent|child  only in the process whose pid is $PCOPY_FAULTS_ROOT_PID, or only
 *           in the others (unset: the first process loading the shim sets it to itself)
 * PCOPY_FAULTS_LOG=FILE  append "pid call errno path" for each injected fault.
 * A malformed PCOPY_FAULTS prints a message and exits 97 (a typo must not pass silently).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#define MAX_RULES 32
#define MATCH_MAX 256
#define BUF 4352

enum { C_OPEN, C_OPENAT, C_MKDIR, C_MKDIRAT, C_RENAME, C_RENAMEAT, C_UNLINK, C_RMDIR, C_UNLINKAT,
       C_LINK, C_LINKAT, C_SYMLINK, C_SYMLINKAT, C_STAT, C_LSTAT, C_FSTAT, C_FSTATAT, C_STATX,
       C_READ, C_READV, C_PREAD, C_WRITE, C_WRITEV, C_PWRITE, C_FCHMOD, C_FCHMODAT, C_FCHOWN,
       C_FCHOWNAT, C_FUTIMENS, C_UTIMENSAT, C_FSYNC, C_FDATASYNC, C_CLOSE, C_FTRUNCATE,
       C_FGETXATTR, C_FSETXATTR, C_FLISTXATTR, C_COPY_FILE_RANGE, C_SENDFILE, C_COUNT };

static const struct { const char *name; int id; } NAMES[] = {
    {"open", C_OPEN}, {"open64", C_OPEN}, {"openat", C_OPENAT}, {"openat64", C_OPENAT},
    {"mkdir", C_MKDIR}, {"mkdirat", C_MKDIRAT}, {"rename", C_RENAME}, {"renameat", C_RENAMEAT},
    {"renameat2", C_RENAMEAT}, {"unlink", C_UNLINK}, {"rmdir", C_RMDIR}, {"unlinkat", C_UNLINKAT},
    {"link", C_LINK}, {"linkat", C_LINKAT}, {"symlink", C_SYMLINK}, {"symlinkat", C_SYMLINKAT},
    {"stat", C_STAT}, {"stat64", C_STAT}, {"lstat", C_LSTAT}, {"lstat64", C_LSTAT},
    {"fstat", C_FSTAT}, {"fstat64", C_FSTAT}, {"fstatat", C_FSTATAT}, {"fstatat64", C_FSTATAT},
    {"newfstatat", C_FSTATAT}, {"statx", C_STATX}, {"read", C_READ}, {"readv", C_READV},
    {"pread", C_PREAD}, {"pread64", C_PREAD}, {"write", C_WRITE}, {"writev", C_WRITEV},
    {"pwrite", C_PWRITE}, {"pwrite64", C_PWRITE}, {"fchmod", C_FCHMOD}, {"fchmodat", C_FCHMODAT},
    {"fchown", C_FCHOWN}, {"fchownat", C_FCHOWNAT}, {"futimens", C_FUTIMENS},
    {"utimensat", C_UTIMENSAT}, {"fsync", C_FSYNC}, {"fdatasync", C_FDATASYNC}, {"close", C_CLOSE},
    {"ftruncate", C_FTRUNCATE}, {"ftruncate64", C_FTRUNCATE}, {"fgetxattr", C_FGETXATTR},
    {"fsetxattr", C_FSETXATTR}, {"flistxattr", C_FLISTXATTR},
    {"copy_file_range", C_COPY_FILE_RANGE}, {"sendfile", C_SENDFILE}, {"sendfile64", C_SENDFILE},
};
#define NNAMES (sizeof NAMES / sizeof NAMES[0])

static const struct { const char *name; int code; } ERRNOS[] = {
    {"EPERM", EPERM}, {"ENOENT", ENOENT}, {"EINTR", EINTR}, {"EIO", EIO}, {"ENXIO", ENXIO},
    {"EBADF", EBADF}, {"EAGAIN", EAGAIN}, {"ENOMEM", ENOMEM}, {"EACCES", EACCES},
    {"EFAULT", EFAULT}, {"EBUSY", EBUSY}, {"EEXIST", EEXIST}, {"EXDEV", EXDEV},
    {"ENOTDIR", ENOTDIR}, {"EISDIR", EISDIR}, {"EINVAL", EINVAL}, {"ENFILE", ENFILE},
    {"EMFILE", EMFILE}, {"ETXTBSY", ETXTBSY}, {"EFBIG", EFBIG}, {"ENOSPC", ENOSPC},
    {"EROFS", EROFS}, {"EMLINK", EMLINK}, {"EPIPE", EPIPE}, {"ERANGE", ERANGE},
    {"ENAMETOOLONG", ENAMETOOLONG}, {"ENOSYS", ENOSYS}, {"ENOTEMPTY", ENOTEMPTY},
    {"ELOOP", ELOOP}, {"ENODATA", ENODATA}, {"EOVERFLOW", EOVERFLOW}, {"ENOTSUP", ENOTSUP},
    {"EOPNOTSUPP", EOPNOTSUPP}, {"ESTALE", ESTALE}, {"EDQUOT", EDQUOT},
};

struct rule {
    int call, err, pid_mode, perpid;   /* pid_mode: 0 any, 1 root process only, 2 others only */
    int fail;                          /* 0: a delay-only rule */
    unsigned long nth, delay_us;
    double prob;                       /* < 0: no probability (always, or only the nth) */
    uint64_t seed;
    size_t mlen;
    char match[MATCH_MAX];
    atomic_ulong count;
};

static struct rule rules[MAX_RULES];
static int nrules;
static unsigned char armed[C_COUNT];   /* fast path: does any rule name this call? */
static int is_root = 1;
static char log_path[1024];

/* ------------------------------------------------------------------ small helpers (no malloc) */

static void raw_write(int fd, const char *s, size_t n) {
    while (n > 0) {
        long w = syscall(SYS_write, fd, s, n);
        if (w <= 0) return;
        s += w; n -= (size_t)w;
    }
}

static char *put_str(char *p, char *end, const char *s) {
    while (*s && p < end) *p++ = *s++;
    return p;
}

static char *put_num(char *p, char *end, unsigned long v) {
    char tmp[24]; int n = 0;
    do { tmp[n++] = (char)('0' + v % 10); v /= 10; } while (v);
    while (n && p < end) *p++ = tmp[--n];
    return p;
}

static void die(const char *what, const char *rule) {
    char buf[600]; char *p = buf, *end = buf + sizeof buf - 2;
    p = put_str(p, end, "faultshim: "); p = put_str(p, end, what);
    p = put_str(p, end, " in PCOPY_FAULTS rule: "); p = put_str(p, end, rule);
    *p++ = '\n';
    raw_write(2, buf, (size_t)(p - buf));
    _exit(97);
}

static uint64_t mix64(uint64_t x) {   /* splitmix64 finaliser */
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

/* "/proc/self/fd/N" -> out; returns out or "" */
static const char *fd_path(int fd, char *out, size_t size) {
    char link[40] = "/proc/self/fd/"; char *p = link + 14;
    p = put_num(p, link + sizeof link - 1, (unsigned long)(fd < 0 ? 0 : fd)); *p = 0;
    ssize_t n = fd < 0 ? -1 : readlink(link, out, size - 1);
    out[n > 0 ? n : 0] = 0;
    return out;
}

static int path_matches(const struct rule *r, int dirfd, const char *path) {
    if (!path) return 0;
    if (memmem(path, strlen(path), r->match, r->mlen)) return 1;
    if (path[0] == '/') return 0;
    char buf[BUF];
    if (dirfd == AT_FDCWD) {
        if (!getcwd(buf, BUF - 1)) return 0;
    } else {
        fd_path(dirfd, buf, BUF);
    }
    size_t n = strlen(buf);
    if (n + 1 + strlen(path) >= BUF) return 0;
    buf[n] = '/';
    strcpy(buf + n + 1, path);
    return memmem(buf, strlen(buf), r->match, r->mlen) != NULL;
}

static void log_fault(int call, int err, int dirfd, const char *path, int fd) {
    if (!log_path[0]) return;
    char line[BUF + 64], tmp[BUF]; char *p = line, *end = line + sizeof line - 2;
    const char *name = "?";
    for (size_t i = 0; i < NNAMES; i++) if (NAMES[i].id == call) { name = NAMES[i].name; break; }
    p = put_num(p, end, (unsigned long)getpid()); *p++ = ' ';
    p = put_str(p, end, name); *p++ = ' ';
    p = put_num(p, end, (unsigned long)err); *p++ = ' ';
    if (path) {
        if (path[0] != '/') {
            if (dirfd != AT_FDCWD) fd_path(dirfd, tmp, BUF);
            else if (!getcwd(tmp, BUF)) tmp[0] = 0;
            p = put_str(p, end, tmp); *p++ = '/';
        }
        p = put_str(p, end, path);
    } else {
        p = put_str(p, end, fd_path(fd, tmp, BUF));
    }
    *p++ = '\n';
    int lfd = (int)syscall(SYS_openat, AT_FDCWD, log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (lfd >= 0) { raw_write(lfd, line, (size_t)(p - line)); syscall(SYS_close, lfd); }
}

/* The decision: the errno to inject, or 0. path2: rename/link's second path. fd: fd calls. */
static int decide(int call, int dirfd, const char *path, int dirfd2, const char *path2, int fd) {
    for (int i = 0; i < nrules; i++) {
        struct rule *r = &rules[i];
        if (r->call != call) continue;
        if ((r->pid_mode == 1 && !is_root) || (r->pid_mode == 2 && is_root)) continue;
        if (r->mlen) {
            int hit = path_matches(r, dirfd, path) || path_matches(r, dirfd2, path2);
            if (!hit && !path && !path2) {
                char buf[BUF];
                fd_path(fd, buf, BUF);
                hit = memmem(buf, strlen(buf), r->match, r->mlen) != NULL;
            }
            if (!hit) continue;
        }
        unsigned long k = atomic_fetch_add(&r->count, 1) + 1;
        if (r->nth && k != r->nth) continue;
        if (r->prob >= 0) {
            uint64_t h = mix64(r->seed ^ mix64(k ^ ((uint64_t)i << 56))
                               ^ (r->perpid ? mix64((uint64_t)getpid() << 20) : 0));
            if ((double)(h >> 11) * 0x1.0p-53 >= r->prob) continue;
        }
        if (r->delay_us) {
            struct timespec ts = {(time_t)(r->delay_us / 1000000), (long)(r->delay_us % 1000000) * 1000};
            int saved = errno;
            while (syscall(SYS_nanosleep, &ts, &ts) == -1 && errno == EINTR) {}
            errno = saved;
        }
        if (!r->fail) continue;
        log_fault(call, r->err, path ? dirfd : fd, path ? path : NULL, fd);
        return r->err;
    }
    return 0;
}

#define CHECK(call, dirfd, path, dirfd2, path2, fd, failret)                                  \
    do {                                                                                       \
        if (armed[call]) {                                                                     \
            int e_ = decide(call, dirfd, path, dirfd2, path2, fd);                             \
            if (e_) { errno = e_; return failret; }                                            \
        }                                                                                      \
    } while (0)

#define REAL(sym) static __typeof__(sym) *real_##sym
#define RESOLVE(sym) (real_##sym ? real_##sym : (real_##sym = (__typeof__(sym) *)dlsym(RTLD_NEXT, #sym)))
#define CALL_REAL(sym, ...) (RESOLVE(sym) ? real_##sym(__VA_ARGS__) : (errno = ENOSYS, -1))

/* ------------------------------------------------------------------ configuration */

static void parse_rule(char *text, const char *orig) {
    if (nrules == MAX_RULES) die("more than 32 rules", orig);
    struct rule *r = &rules[nrules];
    memset(r, 0, sizeof *r);
    r->call = -1; r->err = EIO; r->prob = -1;
    int have_errno = 0;
    char *save = NULL;
    char *tok = strtok_r(text, ":", &save);
    for (size_t i = 0; tok && i < NNAMES; i++) if (!strcmp(NAMES[i].name, tok)) r->call = NAMES[i].id;
    if (r->call < 0) die("unknown call", orig);
    while ((tok = strtok_r(NULL, ":", &save))) {
        char *eq = strchr(tok, '=');
        if (!eq) die("expected key=value", orig);
        *eq = 0; const char *v = eq + 1; char *endp = NULL;
        if (!strcmp(tok, "match")) {
            r->mlen = strlen(v);
            if (!r->mlen || r->mlen >= MATCH_MAX) die("bad match", orig);
            memcpy(r->match, v, r->mlen + 1);
        } else if (!strcmp(tok, "nth")) {
            r->nth = strtoul(v, &endp, 10);
            if (!r->nth || *endp) die("bad nth", orig);
        } else if (!strcmp(tok, "prob")) {
            r->prob = strtod(v, &endp);
            if (*endp || r->prob < 0 || r->prob > 1) die("bad prob", orig);
        } else if (!strcmp(tok, "seed")) {
            r->seed = strtoull(v, &endp, 0);
            if (*endp) die("bad seed", orig);
        } else if (!strcmp(tok, "perpid")) {
            r->perpid = atoi(v) != 0;
        } else if (!strcmp(tok, "pid")) {
            if (!strcmp(v, "parent")) r->pid_mode = 1;
            else if (!strcmp(v, "child")) r->pid_mode = 2;
            else die("pid must be parent or child", orig);
        } else if (!strcmp(tok, "delay")) {
            r->delay_us = strtoul(v, &endp, 10);
            if (!r->delay_us || *endp) die("bad delay", orig);
        } else if (!strcmp(tok, "errno")) {
            have_errno = 1;
            r->err = 0;
            for (size_t i = 0; i < sizeof ERRNOS / sizeof ERRNOS[0]; i++)
                if (!strcmp(ERRNOS[i].name, v)) r->err = ERRNOS[i].code;
            if (!r->err) r->err = (int)strtol(v, &endp, 10);
            if (r->err <= 0 || (endp && *endp)) die("unknown errno", orig);
        } else {
            die("unknown key", orig);
        }
    }
    r->fail = have_errno || !r->delay_us;
    armed[r->call] = 1;
    nrules++;
}

static void after_fork_child(void) {
    is_root = 0;
    for (int i = 0; i < nrules; i++) atomic_store(&rules[i].count, 0);
}

__attribute__((constructor)) static void faultshim_init(void) {
    const char *spec = getenv("PCOPY_FAULTS");
    const char *lp = getenv("PCOPY_FAULTS_LOG");
    if (lp && strlen(lp) < sizeof log_path) strcpy(log_path, lp);
    const char *root = getenv("PCOPY_FAULTS_ROOT_PID");
    if (root && *root) {
        is_root = strtol(root, NULL, 10) == (long)getpid();
    } else {
        char num[24]; char *p = put_num(num, num + 22, (unsigned long)getpid()); *p = 0;
        setenv("PCOPY_FAULTS_ROOT_PID", num, 1);   /* descendants inherit it */
        is_root = 1;
    }
    pthread_atfork(NULL, NULL, after_fork_child);
    if (!spec || !*spec) return;
    static char copy[8192], one[1024];
    if (strlen(spec) >= sizeof copy) die("too long", "(all)");
    strcpy(copy, spec);
    char *save = NULL;
    for (char *tok = strtok_r(copy, ";", &save); tok; tok = strtok_r(NULL, ";", &save)) {
        while (*tok == ' ') tok++;
        if (!*tok) continue;
        if (strlen(tok) >= sizeof one) die("rule too long", "(long)");
        strcpy(one, tok);
        parse_rule(tok, one);
    }
}

#include "wrappers.h"

/* fileerr.c - messages about files, and opening a file to read, for the
 * runtime's readers and writers (see fileerr.h). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <unistd.h>

#include "fileerr.h"

void lt_errf(char *err, size_t errlen, const char *fmt, ...) {
    if (!err || !errlen) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

void lt_format_shape(char *buf, size_t len, int rank, const int64_t *shape) {
    size_t at = (size_t)snprintf(buf, len, "[");
    for (int i = 0; i < rank && at < len; i++)
        at += (size_t)snprintf(buf + at, len - at, "%s%" PRId64, i ? ", " : "", shape[i]);
    if (at < len) snprintf(buf + at, len - at, "]");
}

void lt_file_verrf(char *err, size_t errlen, const char *path, const char *fmt, va_list ap) {
    if (!err || !errlen) return;
    int k = snprintf(err, errlen, "%s: ", path);
    if (k < 0 || (size_t)k >= errlen) return;
    vsnprintf(err + k, errlen - (size_t)k, fmt, ap);
}

static void file_errf(char *err, size_t errlen, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void file_errf(char *err, size_t errlen, const char *path, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    lt_file_verrf(err, errlen, path, fmt, ap);
    va_end(ap);
}

int lt_open_file(const char *path, struct stat *st, char *err, size_t errlen) {
    if (!path) {
        file_errf(err, errlen, "(null)", "no path");
        return -1;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK); /* a FIFO must not block */
    if (fd < 0) {
        file_errf(err, errlen, path, "cannot open: %s", strerror(errno));
        return -1;
    }
    if (fstat(fd, st) != 0) {
        file_errf(err, errlen, path, "cannot stat: %s", strerror(errno));
        close(fd);
        return -1;
    }
    if (!S_ISREG(st->st_mode)) {
        file_errf(err, errlen, path, "not a regular file");
        close(fd);
        return -1;
    }
    return fd;
}

/* fileerr.h - the messages of the runtime's file readers and writers
 * (safetensors.c, dataset.c), internal to the runtime.
 *
 * A message goes into the caller's buffer err of errlen bytes, cut to fit;
 * err may be NULL or errlen 0, and then nothing is written.  A message about
 * a file starts with its path: "PATH: cannot open: No such file or
 * directory".  The messages are part of the behaviour (tests check them to
 * the byte), so both files format them here, one way. */
#ifndef LATHE_FILEERR_H
#define LATHE_FILEERR_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>

#define NAME_SHOWN 120     /* longest part of a name quoted in a message */
/* For "%.*s": at most NAME_SHOWN bytes of a name. */
#define SHOW(s) (int)(strlen(s) < NAME_SHOWN ? strlen(s) : NAME_SHOWN), (s)

/* printf into err. */
void lt_errf(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* "PATH: " and then the vprintf of fmt into err. */
void lt_file_verrf(char *err, size_t errlen, const char *path, const char *fmt, va_list ap)
    __attribute__((format(printf, 4, 0)));

/* A shape as messages show it, "[2, 3]" ("[]" for rank 0), into buf (len
 * bytes, cut to fit). */
void lt_format_shape(char *buf, size_t len, int rank, const int64_t *shape);

/* Open path for reading, without blocking on a FIFO, and fstat it into *st:
 * the descriptor of a regular file, or -1 with a message naming the path
 * ("(null): no path", "cannot open", "cannot stat" with errno's text, "not a
 * regular file"). */
int lt_open_file(const char *path, struct stat *st, char *err, size_t errlen);

#endif

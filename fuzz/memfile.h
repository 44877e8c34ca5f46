/* memfile.h - a fuzz input as a file the loaders can open by path: an
 * anonymous memory file, named /proc/self/fd/N. */
#ifndef LATHE_FUZZ_MEMFILE_H
#define LATHE_FUZZ_MEMFILE_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

/* A memory file holding len bytes at data, its path in path; the
 * descriptor, or -1. */
static int memfile(const void *data, size_t len, char *path, size_t pathlen) {
    int fd = memfd_create("fuzz", MFD_CLOEXEC);
    if (fd < 0) return -1;
    const char *p = data;
    for (size_t done = 0; done < len;) {
        ssize_t k = write(fd, p + done, len - done);
        if (k <= 0) {
            close(fd);
            return -1;
        }
        done += (size_t)k;
    }
    snprintf(path, pathlen, "/proc/self/fd/%d", fd);
    return fd;
}

#endif

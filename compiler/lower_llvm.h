/* lower_llvm.h - fused kernels to an LLVM module (lower_llvm.c). */
#ifndef LATHE_LOWER_LLVM_H
#define LATHE_LOWER_LLVM_H

#include <llvm-c/Core.h>

#include "kernel.h"

/* share.c: which kernels share a body of code.  Kernel i's body is kernel
 * rep[i]'s (rep[i] == i: its own, one of nreps); the body takes kernel i's
 * buffers slots[slot_start[i] .. slot_start[i + 1]) as pointer parameters,
 * in that order.  lt_bodies_free frees it. */
typedef struct {
    int *rep;
    int *slot_start;
    int *slots;
    int nreps;
} lt_bodies;
lathe_status lt_find_bodies(const lt_fused *f, lt_bodies *b);
void lt_bodies_free(lt_bodies *b);

/* Add to mod, for kernels[0 .. n): the body "lathe_bR" of each one that is
 * its own representative (internal, never inlined) and the function
 * "lathe_kI" of each, which calls its body with its buffers' places in the
 * arena; every kernel's representative must be among kernels[].  Verify the
 * module.  On failure returns a status and writes a message to err. */
lathe_status lt_lower(const lt_fused *f, const lt_bodies *bodies, const int *kernels, int n, LLVMContextRef ctx,
                      LLVMModuleRef mod, char *err, size_t errlen);

#endif

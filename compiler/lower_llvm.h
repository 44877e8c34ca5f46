/* lower_llvm.h - fused kernels to an LLVM module (lower_llvm.c). */
#ifndef LATHE_LOWER_LLVM_H
#define LATHE_LOWER_LLVM_H

#include <llvm-c/Core.h>

#include "kernel.h"

/* Add one function "lathe_kN" per kernel N of f in [first, last) to mod and
 * verify the module.  On failure returns a status and writes a message to
 * err. */
lathe_status lt_lower(const lt_fused *f, int first, int last, LLVMContextRef ctx, LLVMModuleRef mod, char *err,
                      size_t errlen);

#endif

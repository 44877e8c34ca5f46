/* lower_llvm.h - fused kernels to an LLVM module (lower_llvm.c). */
#ifndef LATHE_LOWER_LLVM_H
#define LATHE_LOWER_LLVM_H

#include <llvm-c/Core.h>

#include "kernel.h"

/* Add one function "lathe_kN" per kernel of f to mod and verify the module.
 * On failure returns a status and writes a message to err. */
lathe_status lt_lower(const lt_fused *f, LLVMContextRef ctx, LLVMModuleRef mod, char *err, size_t errlen);

#endif

/* mathlib.h - exp, log, tanh, sigmoid and erf emitted as LLVM IR, without libm.
 *
 * Each function emits (once per module) an internal, always-inline function
 * of straight-line arithmetic on f32 or f64 (range reduction, polynomials,
 * exponent bit manipulation), so loops that call it vectorize.  Accuracy is a
 * few ulp against libm; NaN in gives NaN out; +-0, +-inf and overflow or
 * underflow behave as libm's. */
#ifndef LATHE_MATHLIB_H
#define LATHE_MATHLIB_H

#include <llvm-c/Core.h>

/* Emit a call computing f(x) at the builder's position.  x is a scalar float
 * or double; the result has its type. */
LLVMValueRef lt_emit_exp(LLVMModuleRef m, LLVMBuilderRef b, LLVMValueRef x);
LLVMValueRef lt_emit_log(LLVMModuleRef m, LLVMBuilderRef b, LLVMValueRef x);
LLVMValueRef lt_emit_tanh(LLVMModuleRef m, LLVMBuilderRef b, LLVMValueRef x);
LLVMValueRef lt_emit_sigmoid(LLVMModuleRef m, LLVMBuilderRef b, LLVMValueRef x);
LLVMValueRef lt_emit_erf(LLVMModuleRef m, LLVMBuilderRef b, LLVMValueRef x);
/* 1 / sqrt(x) through llvm.sqrt (a hardware instruction, not a libm call). */
LLVMValueRef lt_emit_rsqrt(LLVMModuleRef m, LLVMBuilderRef b, LLVMValueRef x);

#endif

/* fpenv.h - denormals in the runtime's threads (executor.c, optim.c).
 *
 * Kernels and optimizer steps run with flush-to-zero and denormals-are-zero
 * by default: an operation whose result (or operand) is below the smallest
 * normal number (about 1.2e-38 in f32) gives (or reads) zero, as GPU
 * training effectively does.  Without them, a step whose values underflow
 * (a memorized batch, late training, decaying momentum buffers) takes
 * microcode assists on every denormal and runs ten or more times slower.
 * The difference from IEEE arithmetic is below 1.2e-38 (f32) or 2.3e-308
 * (f64) per operation.  Asking for IEEE denormals (lathe_rt_program's and
 * lathe_optim_config's ieee_denormals, a trainer's --ieee-denormals) keeps
 * them.  Every thread that runs work sets the mode on entry and restores its
 * own on exit, so the caller's floating-point environment never changes.
 * On targets other than x86 the mode is left as it is. */
#ifndef LATHE_FPENV_H
#define LATHE_FPENV_H

#include <stdbool.h>

#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
enum { LT_MXCSR_FTZ = 0x8000, LT_MXCSR_DAZ = 0x0040 };
typedef unsigned lt_fpenv;
static inline lt_fpenv lt_fp_enter(bool ieee_denormals) {
    lt_fpenv old = _mm_getcsr();
    if (!ieee_denormals) _mm_setcsr(old | LT_MXCSR_FTZ | LT_MXCSR_DAZ);
    else _mm_setcsr(old & ~(unsigned)(LT_MXCSR_FTZ | LT_MXCSR_DAZ));
    return old;
}
static inline void lt_fp_leave(lt_fpenv old) { _mm_setcsr(old); }
#else
typedef int lt_fpenv;
static inline lt_fpenv lt_fp_enter(bool ieee_denormals) {
    (void)ieee_denormals;
    return 0;
}
static inline void lt_fp_leave(lt_fpenv old) { (void)old; }
#endif

#endif

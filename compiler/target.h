/* target.h - the description of the CPU that code is made for.
 *
 * Built once per compilation from a CPU name and a feature string (this
 * host's by default, `--target-cpu` and `--target-features` otherwise) and
 * handed down the pipeline: fusion sizes register tiles from it, lowering
 * reads the tiles, and code generation makes its LLVM target machines from
 * it.  Nothing below the pipeline asks LLVM about the host.
 *
 * The capabilities are not looked up in a table of CPU names, which would
 * drift from LLVM's: lt_target_init compiles a few probe functions for the
 * CPU and reads what LLVM's code generator made of them (512-bit registers,
 * FMA instructions, masked loads through mask registers or vmaskmov, bf16
 * conversion).  AMX has no generic IR to probe with, so it is read from the
 * feature string alone (the host's, or --target-features). */
#ifndef LATHE_TARGET_H
#define LATHE_TARGET_H

#include <stdbool.h>
#include <stddef.h>

#include <llvm-c/TargetMachine.h>

#include "lathe_program.h"

enum { LT_TARGET_NAME = 64, LT_TARGET_FEATURES = 4096 };
/* The L2 assumed for a CPU other than the host: the smallest of the x86
 * cores tiles are sized for. */
#define LT_TARGET_L2_DEFAULT ((int64_t)512 << 10)

typedef struct {
    char triple[LT_TARGET_NAME];
    char cpu[LT_TARGET_NAME];           /* LLVM's CPU name ("znver4", "x86-64-v3") */
    char features[LT_TARGET_FEATURES];  /* LLVM's feature string ("+avx2,-avx512f"); "" for the CPU's own */
    bool host;                          /* the CPU this process runs on, with its own features */
    /* what the probes found */
    int vector_bytes;                   /* widest vector register: 16, 32 or 64 */
    int vector_regs;                    /* vector registers: 32 with AVX-512, else 16 */
    bool fma;                           /* fused multiply-add instructions */
    bool masked_loads;                  /* masked vector loads and stores in hardware */
    bool mask_regs;                     /* masks in mask registers (AVX-512's k0-k7), not vector registers */
    bool bf16;                          /* bf16 conversion and dot products (AVX512-BF16) */
    bool amx;                           /* AMX tiles (from the feature string only) */
    int64_t l2_bytes;                   /* one core's L2 cache: lathe_target.l2_bytes, else this
                                         * host's (from sysfs), else LT_TARGET_L2_DEFAULT; cache
                                         * blocks are sized from it */
    /* what tiles are sized for: the vector unit above, unless the options
     * forced a width (lathe_target.vector_bytes) */
    int tile_bytes;                     /* 32 or 64 */
    int tile_regs;
    bool tile_mask_regs;
} lt_target;

/* Describe the target that opt asks for (NULL: this host).  An unknown CPU
 * name or feature is refused with LATHE_ERR_ARG and a message listing what
 * LLVM knows (LLVM itself aborts on some unknown names). */
lathe_status lt_target_init(lt_target *t, const lathe_target *opt, char *err, size_t errlen);

/* An LLVM target machine for t: PIC code for objects linked into
 * executables, else the JIT's code model.  NULL with a message on failure.
 * The caller disposes it. */
LLVMTargetMachineRef lt_target_machine(const lt_target *t, bool pic, char *err, size_t errlen);

/* One line for dumps: "x86-64-v3: 32-byte vectors, 16 registers, FMA, ...". */
void lt_target_describe(const lt_target *t, char *buf, size_t len);

#endif

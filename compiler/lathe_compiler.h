/* lathe_compiler.h - all of Lathe's compiler in one include: the IR and
 * tracing API (lathe.h), autodiff and simplification (lathe_autodiff.h),
 * compiled programs, targets and dumps (lathe_program.h), and trainers
 * (lathe_build.h). */
#ifndef LATHE_COMPILER_H
#define LATHE_COMPILER_H

#include "lathe.h"
#include "lathe_autodiff.h"
#include "lathe_build.h"
#include "lathe_program.h"

#endif

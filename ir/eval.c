/* eval.c - the reference evaluator (to be written). */
#include "ir.h"

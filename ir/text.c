/* text.c - printer and parser of the text IR (to be written). */
#include "ir.h"

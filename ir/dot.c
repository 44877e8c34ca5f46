/* dot.c - Graphviz DOT printer (to be written). */
#include "ir.h"

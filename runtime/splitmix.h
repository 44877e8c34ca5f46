/* splitmix.h - SplitMix64, the one pseudo-random generator of the runtime
 * (internal to it): parameter initialization (tensors.c), the shuffle
 * (dataset.c, whose header gives the algorithm to the bit), augmentation
 * draws (dataset.c) and text sampling (trainer.c).
 *
 * SplitMix64 (Steele, Lea and Flood, "Fast splittable pseudorandom number
 * generators", 2014): a 64-bit state advanced by the golden-ratio constant,
 * each output that state through a finalizer (lt_mix64, also a good 64-bit
 * hash).  It is counter-based: the n-th output of a stream is
 * lt_mix64(state0 + n * LT_GOLDEN64), so a draw keyed by (seed, epoch,
 * sample) is computed directly, without running a generator to that point,
 * and does not depend on the order or the thread that asks. */
#ifndef LATHE_SPLITMIX_H
#define LATHE_SPLITMIX_H

#include <stdint.h>

#define LT_GOLDEN64 0x9E3779B97F4A7C15ull   /* 2^64 / the golden ratio, odd */

/* The finalizer: a bijection of 64-bit values that mixes every input bit
 * into every output bit. */
static inline uint64_t lt_mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* The next output of the stream whose state is *state. */
static inline uint64_t lt_splitmix64(uint64_t *state) { return lt_mix64(*state += LT_GOLDEN64); }

#endif

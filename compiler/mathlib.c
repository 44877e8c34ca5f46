/* mathlib.c - exp, log, tanh, sigmoid, erf and rsqrt emitted as LLVM IR.
 *
 * llvm.exp and llvm.log lower to calls into libm, which stop the loop
 * vectorizer.  Instead each function here is written once per module and
 * dtype as an internal, always-inline function ("lathe.exp.f32") of
 * straight-line code: no branches, no tables, no libm.  Special inputs (NaN,
 * +-inf, 0, negatives, overflow and underflow) are handled by selects, so
 * after inlining a caller's loop body is one basic block the vectorizer can
 * widen.  Only intrinsics that are single instructions on x86-64 with FMA are
 * used: llvm.fmuladd (contraction is allowed, so it becomes an FMA where the
 * target has one), llvm.fabs, llvm.copysign, llvm.sqrt; exponents are built
 * and taken apart with bitcasts and integer adds and shifts.  Integer <->
 * float conversions use the "add 1.5*2^p" trick rather than fptosi/sitofp,
 * which have no AVX2 instruction for 64-bit lanes.  No fast-math flags are
 * set anywhere: NaN and infinity are ordinary values here.
 *
 *   exp      Cody-Waite reduction x = n ln2 + r, |r| <= ln2/2; Cephes'
 *            minimax polynomial (f32) or degree-13 Taylor (f64) in Horner
 *            form; scaled by 2^n as two exact powers of two, so results in
 *            the subnormal range are rounded once.
 *   log      fdlibm: x = 2^k m with m in [sqrt(1/2), sqrt(2)), subnormals
 *            scaled up first; f = m-1, s = f/(2+f), log(1+f) = f - f^2/2 +
 *            s (f^2/2 + R(s^2)); k ln2 added as hi + lo.
 *   tanh     Cephes: for |x| < 0.625 an odd polynomial (f32) or rational
 *            function (f64); above, 1 - 2/(exp(2|x|)+1) with |x| capped where
 *            tanh rounds to 1; the sign restored with copysign (tanh(-0) = -0).
 *   sigmoid  e = exp(-|x|), then 1/(1+e) for x >= 0 and e/(1+e) for x < 0:
 *            never exp of a large positive number, so tiny results keep their
 *            precision down to the subnormals; 1+e is carried as a sum of
 *            two floats and the quotient corrected by its residual.
 *   erf      for |x| < 1, x + x Q(x^2); above, 1 - erfc(|x|) with erfc a
 *            polynomial in |x| - c on one interval (f32) or two (f64, one
 *            Horner chain whose coefficients are selected per lane), |x|
 *            capped where erf rounds to 1; the sign by copysign.
 *   rsqrt    1 / llvm.sqrt(x).
 *
 * Accuracy against libm in higher precision, max ulp, with FMA (f32 over all
 * 2^32 inputs; f64 over tests/test_mathlib.c's sweep): exp 1.01 / 0.86,
 * log 0.83 / 0.78, tanh 1.33 / 1.29, sigmoid 1.48 / 1.38, erf 1.18 / 1.17
 * (1.29 over 10^8 random f64 in [-7, 7]), rsqrt 1.49 / 1.48.  Without FMA
 * (fmuladd unfused) sigmoid reaches about 2.2 and erf about 1.5; the rest
 * hardly change. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "ir.h"
#include "mathlib.h"

/* The state while one body is written: the types of one dtype and a builder
 * positioned in the body. */
typedef struct {
    LLVMContextRef ctx;
    LLVMModuleRef m;
    LLVMBuilderRef b;
    LLVMTypeRef ft, it; /* float or double, and the integer of its width */
    int dbl;            /* 1 for f64 */
} em;

static LLVMValueRef cf(em *e, double v) { return LLVMConstReal(e->ft, v); }
static LLVMValueRef ci(em *e, unsigned long long v) { return LLVMConstInt(e->it, v, 0); }
/* f32 and f64 constants by dtype. */
static LLVMValueRef cfd(em *e, float f32, double f64) { return cf(e, e->dbl ? f64 : (double)f32); }

static LLVMValueRef add(em *e, LLVMValueRef a, LLVMValueRef c) { return LLVMBuildFAdd(e->b, a, c, ""); }
static LLVMValueRef sub(em *e, LLVMValueRef a, LLVMValueRef c) { return LLVMBuildFSub(e->b, a, c, ""); }
static LLVMValueRef mul(em *e, LLVMValueRef a, LLVMValueRef c) { return LLVMBuildFMul(e->b, a, c, ""); }
static LLVMValueRef fdiv(em *e, LLVMValueRef a, LLVMValueRef c) { return LLVMBuildFDiv(e->b, a, c, ""); }
static LLVMValueRef sel(em *e, LLVMValueRef c, LLVMValueRef a, LLVMValueRef d) { return LLVMBuildSelect(e->b, c, a, d, ""); }
static LLVMValueRef fcmp(em *e, LLVMRealPredicate p, LLVMValueRef a, LLVMValueRef c) {
    return LLVMBuildFCmp(e->b, p, a, c, "");
}
static LLVMValueRef to_int(em *e, LLVMValueRef v) { return LLVMBuildBitCast(e->b, v, e->it, ""); }
static LLVMValueRef to_float(em *e, LLVMValueRef v) { return LLVMBuildBitCast(e->b, v, e->ft, ""); }

/* A call to an intrinsic overloaded on the float type. */
static LLVMValueRef intrinsic(em *e, const char *name, LLVMValueRef *args, unsigned nargs) {
    unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
    LT_ASSERT(id != 0);
    LLVMTypeRef ty = e->ft;
    LLVMValueRef fn = LLVMGetIntrinsicDeclaration(e->m, id, &ty, 1);
    LLVMTypeRef fnty = LLVMIntrinsicGetType(e->ctx, id, &ty, 1);
    return LLVMBuildCall2(e->b, fnty, fn, args, nargs, "");
}
/* a*b + c, fused where the target has FMA. */
static LLVMValueRef fma3(em *e, LLVMValueRef a, LLVMValueRef b, LLVMValueRef c) {
    return intrinsic(e, "llvm.fmuladd", (LLVMValueRef[]){a, b, c}, 3);
}
static LLVMValueRef fabs1(em *e, LLVMValueRef a) { return intrinsic(e, "llvm.fabs", &a, 1); }

/* Horner: c[0] + x (c[1] + x (c[2] + ...)), c has n > 0 coefficients. */
static LLVMValueRef horner(em *e, LLVMValueRef x, const double *c, int n) {
    LLVMValueRef p = cf(e, c[n - 1]);
    for (int i = n - 2; i >= 0; i--) p = fma3(e, p, x, cf(e, c[i]));
    return p;
}

/* Rounds v (|v| < 2^(p-2), p the significand width) to the nearest integer
 * k the float way: returns kd = v + 1.5*2^(p-1), whose low significand bits
 * hold k in two's complement, and sets *k to k as a float when k is not
 * NULL. */
static LLVMValueRef round_shift(em *e, LLVMValueRef v, LLVMValueRef *k) {
    LLVMValueRef shifter = cfd(e, 0x1.8p23f, 0x1.8p52);
    LLVMValueRef kd = add(e, v, shifter);
    if (k) *k = sub(e, kd, shifter);
    return kd;
}

/* 2^k as a float from kd = k + 1.5*2^(p-1) (round_shift), k a normal
 * exponent: shifting kd's bits left by the significand width leaves k there,
 * since the shifter's own bits all shift out. */
static LLVMValueRef pow2_from_shifted(em *e, LLVMValueRef kd) {
    int mant = e->dbl ? 52 : 23;
    LLVMValueRef bits = LLVMBuildShl(e->b, to_int(e, kd), ci(e, (unsigned)mant), "");
    bits = LLVMBuildAdd(e->b, bits, ci(e, (unsigned long long)(e->dbl ? 1023 : 127) << mant), "");
    return to_float(e, bits);
}

/* ---- exp ---------------------------------------------------------------- */

static LLVMValueRef body_exp(em *e, LLVMValueRef x) {
    /* Beyond hi the result is +inf, below lo it is +0 (exp(lo) is below half
     * the smallest subnormal); in between 2^n has n in [-1076, 1024] (f64)
     * or [-150, 128] (f32). */
    LLVMValueRef hi = cfd(e, 89.0f, 710.0), lo = cfd(e, -104.0f, -746.0);
    LLVMValueRef xc = sel(e, fcmp(e, LLVMRealOGT, x, hi), hi, x);
    xc = sel(e, fcmp(e, LLVMRealOLT, xc, lo), lo, xc);

    /* n = round(x / ln2); r = x - n ln2 with ln2 = ln2_hi + ln2_lo, where
     * n*ln2_hi is exact (ln2_hi has few significant bits) and so is
     * x - n*ln2_hi (Sterbenz). */
    LLVMValueRef nf;
    round_shift(e, mul(e, xc, cfd(e, 0x1.715476p+0f, 0x1.71547652b82fep+0)), &nf);
    LLVMValueRef nneg = LLVMBuildFNeg(e->b, nf, "");
    LLVMValueRef r = fma3(e, nneg, cfd(e, 0.693359375f, 6.93147180369123816490e-01), xc);
    r = fma3(e, nneg, cfd(e, -2.12194440e-4f, 1.90821492927058770002e-10), r);

    LLVMValueRef p;
    if (!e->dbl) {
        /* Cephes expf: 1 + r + r^2 P(r), |r| <= ln2/2, about 1 ulp. */
        static const double c[] = {5.0000001201E-1, 1.6666665459E-1, 4.1665795894E-2,
                                   8.3334519073E-3, 1.3981999507E-3, 1.9875691500E-4};
        LLVMValueRef q = horner(e, r, c, 6);
        p = add(e, fma3(e, q, mul(e, r, r), r), cf(e, 1.0));
    } else {
        /* Taylor to degree 13: the remainder r^14/14! < 2^-60 on |r| <= ln2/2. */
        double c[14];
        c[0] = 1.0;
        for (int i = 1; i < 14; i++) c[i] = c[i - 1] / i;
        p = horner(e, r, c, 14);
    }

    /* p * 2^n as p * 2^n1 * 2^n2 with n1 = round(n/2), n2 = n - n1: both
     * factors are normal, the first product is exact, and the second rounds
     * once, also when the result is subnormal. */
    LLVMValueRef n1f, kd1 = round_shift(e, mul(e, nf, cf(e, 0.5)), &n1f);
    LLVMValueRef kd2 = round_shift(e, sub(e, nf, n1f), NULL);
    LLVMValueRef y = mul(e, mul(e, p, pow2_from_shifted(e, kd1)), pow2_from_shifted(e, kd2));

    y = sel(e, fcmp(e, LLVMRealOGT, x, hi), cf(e, INFINITY), y);
    y = sel(e, fcmp(e, LLVMRealOLT, x, lo), cf(e, 0.0), y);
    return sel(e, fcmp(e, LLVMRealUNO, x, x), x, y);
}

/* ---- log ---------------------------------------------------------------- */

static LLVMValueRef body_log(em *e, LLVMValueRef x) {
    int d = e->dbl, mant = d ? 52 : 23;
    /* Subnormals: scale into the normal range and remember the exponent. */
    LLVMValueRef tiny = fcmp(e, LLVMRealOLT, x, cfd(e, 0x1p-126f, 0x1p-1022));
    LLVMValueRef xs = sel(e, tiny, mul(e, x, cfd(e, 0x1p25f, 0x1p54)), x);
    LLVMValueRef kadj = sel(e, tiny, cfd(e, 25.0f, 54.0), cf(e, 0.0));

    /* Move the significand into [sqrt(1/2), sqrt(2)): adding 1 - sqrt(1/2)'s
     * bits carries into the exponent exactly when m >= sqrt(2)/2 * 2. */
    unsigned long long one = d ? 0x3ff0000000000000ull : 0x3f800000u;
    unsigned long long rt = d ? 0x3fe6a09e00000000ull : 0x3f3504f3u;
    LLVMValueRef ix = LLVMBuildAdd(e->b, to_int(e, xs), ci(e, one - rt), "");
    /* k = exponent field - bias, converted as (2^p + field) - (2^p + bias). */
    LLVMValueRef field = LLVMBuildLShr(e->b, ix, ci(e, (unsigned)mant), "");
    LLVMValueRef kbig = to_float(e, LLVMBuildOr(e->b, field, ci(e, d ? 0x4330000000000000ull : 0x4b000000u), ""));
    LLVMValueRef dk = sub(e, sub(e, kbig, cfd(e, 0x1p23f + 127.0f, 0x1p52 + 1023.0)), kadj);
    LLVMValueRef im = LLVMBuildAnd(e->b, ix, ci(e, (1ull << mant) - 1), "");
    LLVMValueRef m = to_float(e, LLVMBuildAdd(e->b, im, ci(e, rt), ""));

    LLVMValueRef f = sub(e, m, cf(e, 1.0));
    LLVMValueRef s = fdiv(e, f, add(e, f, cf(e, 2.0)));
    LLVMValueRef z = mul(e, s, s), w = mul(e, z, z);
    LLVMValueRef t1, t2;
    if (!d) {
        static const double odd[] = {0xaaaaaa.0p-24 /* Lg1 */, 0x91e9ee.0p-25 /* Lg3 */};
        static const double even[] = {0xccce13.0p-25 /* Lg2 */, 0xf89e26.0p-26 /* Lg4 */};
        t1 = mul(e, w, horner(e, w, even, 2));
        t2 = mul(e, z, horner(e, w, odd, 2));
    } else {
        static const double odd[] = {6.666666666666735130e-01, 2.857142874366239149e-01,
                                     1.818357216161805012e-01, 1.479819860511658591e-01};
        static const double even[] = {3.999999999940941908e-01, 2.222219843214978396e-01,
                                      1.531383769920937332e-01};
        t1 = mul(e, w, horner(e, w, even, 3));
        t2 = mul(e, z, horner(e, w, odd, 4));
    }
    LLVMValueRef R = add(e, t2, t1);
    LLVMValueRef hfsq = mul(e, mul(e, cf(e, 0.5), f), f);
    LLVMValueRef ln2_hi = cfd(e, 6.9313812256e-01f, 6.93147180369123816490e-01);
    LLVMValueRef ln2_lo = cfd(e, 9.0580006145e-06f, 1.90821492927058770002e-10);
    /* s*(hfsq+R) + dk*ln2_lo - hfsq + f + dk*ln2_hi, summed smallest first. */
    LLVMValueRef y = fma3(e, s, add(e, hfsq, R), mul(e, dk, ln2_lo));
    y = add(e, sub(e, y, hfsq), f);
    y = fma3(e, dk, ln2_hi, y);

    y = sel(e, fcmp(e, LLVMRealOEQ, x, cf(e, INFINITY)), cf(e, INFINITY), y);
    y = sel(e, fcmp(e, LLVMRealOEQ, x, cf(e, 0.0)), cf(e, -INFINITY), y);
    y = sel(e, fcmp(e, LLVMRealOLT, x, cf(e, 0.0)), cf(e, NAN), y);
    return sel(e, fcmp(e, LLVMRealUNO, x, x), x, y);
}

/* ---- tanh --------------------------------------------------------------- */

static LLVMValueRef body_tanh(em *e, LLVMValueRef x) {
    LLVMValueRef a = fabs1(e, x);
    LLVMValueRef z = mul(e, a, a);

    /* |x| < 0.625: a + a z P(z) (f32) or a + a z P(z)/Q(z) (f64), Cephes. */
    LLVMValueRef q;
    if (!e->dbl) {
        static const double c[] = {-3.33332819422E-1, 1.33314422036E-1, -5.37397155531E-2,
                                   2.06390887954E-2, -5.70498872745E-3};
        q = horner(e, z, c, 5);
    } else {
        static const double pc[] = {-1.61468768441708447952E3, -9.92877231001918586564E1,
                                    -9.64399179425052238628E-1};
        static const double qc[] = {4.84406305325125486048E3, 2.23548839060100448583E3,
                                    1.12811678491632931402E2, 1.0};
        q = fdiv(e, horner(e, z, pc, 3), horner(e, z, qc, 4));
    }
    LLVMValueRef small = fma3(e, mul(e, a, z), q, a);

    /* Otherwise 1 - 2/(exp(2a)+1); a capped where tanh(a) rounds to 1
     * (tanh(10) = 1 - 4e-9 in f32, tanh(20) = 1 - 8e-18 in f64). */
    LLVMValueRef cap = cfd(e, 10.0f, 20.0);
    LLVMValueRef ac = sel(e, fcmp(e, LLVMRealOGT, a, cap), cap, a);
    LLVMValueRef ex = lt_emit_exp(e->m, e->b, add(e, ac, ac));
    LLVMValueRef large = sub(e, cf(e, 1.0), fdiv(e, cf(e, 2.0), add(e, ex, cf(e, 1.0))));

    LLVMValueRef y = sel(e, fcmp(e, LLVMRealOLT, a, cf(e, 0.625)), small, large);
    y = intrinsic(e, "llvm.copysign", (LLVMValueRef[]){y, x}, 2);
    return sel(e, fcmp(e, LLVMRealUNO, x, x), x, y);
}

/* ---- sigmoid ------------------------------------------------------------ */

static LLVMValueRef body_sigmoid(em *e, LLVMValueRef x) {
    /* e = exp(-|x|) in (0, 1]: 1/(1+e) for x >= 0, e/(1+e) for x < 0.  The
     * sum 1+e is kept as dh + dl (exact, since 1 >= e) and the quotient
     * q = num/dh corrected by the residual num - q (dh + dl), which the FMAs
     * compute exactly: without that the rounding of 1+e alone costs up to an
     * ulp (2.4 ulp in all, against 1.5).  NaN flows through exp. */
    LLVMValueRef ex = lt_emit_exp(e->m, e->b, LLVMBuildFNeg(e->b, fabs1(e, x), ""));
    LLVMValueRef one = cf(e, 1.0);
    LLVMValueRef dh = add(e, one, ex);
    LLVMValueRef dl = sub(e, ex, sub(e, dh, one));
    LLVMValueRef num = sel(e, fcmp(e, LLVMRealOLT, x, cf(e, 0.0)), ex, one);
    LLVMValueRef rcp = fdiv(e, one, dh);
    LLVMValueRef q = mul(e, num, rcp);
    LLVMValueRef nq = LLVMBuildFNeg(e->b, q, "");
    LLVMValueRef r = fma3(e, nq, dh, num);
    r = fma3(e, nq, dl, r);
    return fma3(e, r, rcp, q);
}

/* ---- erf ---------------------------------------------------------------- */

/* Horner over two coefficient lists at once, with no branch: coefficient k
 * is a[k] where pick is true and b[k] where not (the shorter list padded with
 * zeros), so one chain of FMAs serves two intervals. */
static LLVMValueRef horner2(em *e, LLVMValueRef x, LLVMValueRef pick, const double *a, int na, const double *b,
                            int nb) {
    int n = na > nb ? na : nb;
    LLVMValueRef p = NULL;
    for (int i = n - 1; i >= 0; i--) {
        LLVMValueRef c = sel(e, pick, cf(e, i < na ? a[i] : 0), cf(e, i < nb ? b[i] : 0));
        p = p ? fma3(e, p, x, c) : c;
    }
    return p;
}

static LLVMValueRef body_erf(em *e, LLVMValueRef x) {
    /* Coefficients fitted for this file (Chebyshev interpolants, mpmath at
     * 60 digits, rounded to the dtype): Q(u) = erf(sqrt u)/sqrt u - 1 on
     * [0, 1], and erfc(c + s) around centers c on the tail's intervals. */
    static const double q32[] = {
        0.12837916584835093, -0.37612626666720334, 0.11283594715160218, -0.026854212010626412,
        0.0051890874234339739, -0.00080168642871658699, 7.8758750626854883e-05};
    static const double t32[] = {
        2.2090994689882134e-05, -0.00013924640950128226, 0.00041773161405111287,
        -0.00078926321317609614, 0.0010446065664478242, -0.0010153636510544769, 0.00073775728346212076,
        -0.00039428133186851071, 0.00013360061067992256, -8.4722940356567655e-06,
        -1.1723986194507355e-05, 7.5577145514657059e-06, -7.0696979726212776e-06,
        -1.6022371332159735e-07, 1.8823379831654857e-06, 3.7010294586574444e-07};
    static const double q64[] = {
        0.12837916709551256, -0.37612638903183543, 0.11283791670945006, -0.02686617064323777,
        0.0052239776071164225, -0.00085483259753896918, 0.00012055294904839707,
        -1.4924736907419661e-05, 1.6447424703317362e-06, -1.6208483801871705e-07,
        1.3720064546777686e-08, -7.7958988270021425e-10};
    static const double a64[] = {
        0.013328328780817557, -0.052774995930150385, 0.092356242877763201, -0.090157284714005706,
        0.048102209832162048, -0.006624361468360436, -0.0089630450984865429, 0.0060587514711596046,
        -0.00073005125138851526, -0.0008941817525192152, 0.00044275054048696297,
        5.4455297068215379e-06, -6.867191788187731e-05, 1.7720444325002104e-05, 4.6263458394422266e-06,
        -3.2729983961840932e-06, 1.743320110771559e-07, 3.2446970639285545e-07,
        -7.8635633901977786e-08, -1.7268460492997634e-08, 8.3431135809265308e-09};
    static const double b64[] = {
        1.8505741360115268e-09, -1.6143993720598705e-08, 6.8611973484347257e-08,
        -1.8901925965959995e-07, 3.7879526551507926e-07, -5.8724618283514112e-07,
        7.309200486992338e-07, -7.4772519047575824e-07, 6.3783217764896795e-07,
        -4.5700628702854318e-07, 2.7506323706676617e-07, -1.3776545177410025e-07,
        5.5907160081691097e-08, -1.712710909864154e-08, 3.026728777481261e-09, 4.0631515618263168e-10,
        -5.6935766248203122e-10, 2.3913022870586019e-10, -5.3173172056097242e-11,
        4.1297381332190545e-13, 4.7822322499913368e-12, -2.1254328928690963e-12,
        4.2808162454300953e-13, 5.846752544903134e-14, -5.8431968666575609e-14, 8.4057935201264392e-15,
        1.9324197946092224e-15, -4.9246013683323967e-16};
    enum { NQ32 = sizeof q32 / sizeof *q32, NT32 = sizeof t32 / sizeof *t32, NQ64 = sizeof q64 / sizeof *q64,
           NA64 = sizeof a64 / sizeof *a64, NB64 = sizeof b64 / sizeof *b64 };
    LLVMValueRef a = fabs1(e, x);

    /* |x| < 1: a + a Q(a^2), the leading term exact, so tiny and subnormal
     * x keep their precision. */
    LLVMValueRef u = mul(e, a, a);
    LLVMValueRef small = fma3(e, a, e->dbl ? horner(e, u, q64, NQ64) : horner(e, u, q32, NQ32), a);

    /* Otherwise 1 - erfc(a), erfc as a polynomial in s = a - c: f32 one
     * interval [1, 4] around 3, f64 [1, 2.5] around 1.75 and [2.5, 6]
     * around 4.25.  s is exact: c is a multiple of a's ulp, and |s| <= 2^(k+1)
     * for a in [2^k, 2^(k+1)).  a is capped where erf rounds to 1 (erfc(4) =
     * 1.5e-8 is below 2^-25, half an f32 ulp under 1, and erfc(6) = 2.2e-17
     * below 2^-54), which also makes +-inf give +-1. */
    LLVMValueRef cap = cfd(e, 4.0f, 6.0);
    LLVMValueRef ac = sel(e, fcmp(e, LLVMRealOGT, a, cap), cap, a);
    LLVMValueRef p;
    if (!e->dbl) p = horner(e, sub(e, ac, cf(e, 3.0)), t32, NT32);
    else {
        LLVMValueRef near = fcmp(e, LLVMRealOLT, ac, cf(e, 2.5));
        LLVMValueRef s = sub(e, ac, sel(e, near, cf(e, 1.75), cf(e, 4.25)));
        p = horner2(e, s, near, a64, NA64, b64, NB64);
    }
    LLVMValueRef large = sub(e, cf(e, 1.0), p);

    LLVMValueRef y = sel(e, fcmp(e, LLVMRealOLT, a, cf(e, 1.0)), small, large);
    y = intrinsic(e, "llvm.copysign", (LLVMValueRef[]){y, x}, 2); /* erf(-0) = -0 */
    return sel(e, fcmp(e, LLVMRealUNO, x, x), x, y);
}

/* ---- rsqrt -------------------------------------------------------------- */

static LLVMValueRef body_rsqrt(em *e, LLVMValueRef x) {
    /* sqrt(-0) = -0 gives -inf, negatives give NaN, +inf gives +0. */
    return fdiv(e, cf(e, 1.0), intrinsic(e, "llvm.sqrt", &x, 1));
}

/* ---- the functions ------------------------------------------------------ */

static void add_attr(LLVMContextRef ctx, LLVMValueRef fn, const char *name, uint64_t val) {
    unsigned kind = LLVMGetEnumAttributeKindForName(name, strlen(name));
    LT_ASSERT(kind != 0);
    LLVMAddAttributeAtIndex(fn, LLVMAttributeFunctionIndex, LLVMCreateEnumAttribute(ctx, kind, val));
}

/* Gets or creates lathe.<fname>.<f32|f64> in m, then calls it on x at b. */
static LLVMValueRef emit(LLVMModuleRef m, LLVMBuilderRef b, LLVMValueRef x, const char *fname,
                         LLVMValueRef (*body)(em *, LLVMValueRef)) {
    LLVMTypeRef ty = LLVMTypeOf(x);
    LLVMTypeKind kind = LLVMGetTypeKind(ty);
    LT_ASSERT(kind == LLVMFloatTypeKind || kind == LLVMDoubleTypeKind);
    int dbl = kind == LLVMDoubleTypeKind;
    LLVMContextRef ctx = LLVMGetModuleContext(m);
    LLVMTypeRef fnty = LLVMFunctionType(ty, &ty, 1, 0);

    char name[64];
    snprintf(name, sizeof name, "lathe.%s.%s", fname, dbl ? "f64" : "f32");
    LLVMValueRef fn = LLVMGetNamedFunction(m, name);
    if (!fn) {
        fn = LLVMAddFunction(m, name, fnty);
        LLVMSetLinkage(fn, LLVMInternalLinkage);
        add_attr(ctx, fn, "alwaysinline", 0);
        add_attr(ctx, fn, "nounwind", 0);
        add_attr(ctx, fn, "willreturn", 0);
        add_attr(ctx, fn, "nosync", 0);
        add_attr(ctx, fn, "nofree", 0);
        add_attr(ctx, fn, "memory", 0); /* memory(none), LLVM 16+'s readnone */
    }
    LT_ASSERT(LLVMGlobalGetValueType(fn) == fnty);
    if (!LLVMGetFirstBasicBlock(fn)) {
        /* The body gets its own builder, so b's position is untouched. */
        em e = {ctx, m, LLVMCreateBuilderInContext(ctx), ty,
                LLVMIntTypeInContext(ctx, dbl ? 64 : 32), dbl};
        LLVMPositionBuilderAtEnd(e.b, LLVMAppendBasicBlockInContext(ctx, fn, "entry"));
        LLVMBuildRet(e.b, body(&e, LLVMGetParam(fn, 0)));
        LLVMDisposeBuilder(e.b);
    }
    return LLVMBuildCall2(b, fnty, fn, &x, 1, "");
}

LLVMValueRef lt_emit_exp(LLVMModuleRef m, LLVMBuilderRef b, LLVMValueRef x) { return emit(m, b, x, "exp", body_exp); }
LLVMValueRef lt_emit_log(LLVMModuleRef m, LLVMBuilderRef b, LLVMValueRef x) { return emit(m, b, x, "log", body_log); }
LLVMValueRef lt_emit_tanh(LLVMModuleRef m, LLVMBuilderRef b, LLVMValueRef x) { return emit(m, b, x, "tanh", body_tanh); }
LLVMValueRef lt_emit_sigmoid(LLVMModuleRef m, LLVMBuilderRef b, LLVMValueRef x) {
    return emit(m, b, x, "sigmoid", body_sigmoid);
}
LLVMValueRef lt_emit_erf(LLVMModuleRef m, LLVMBuilderRef b, LLVMValueRef x) { return emit(m, b, x, "erf", body_erf); }
LLVMValueRef lt_emit_rsqrt(LLVMModuleRef m, LLVMBuilderRef b, LLVMValueRef x) { return emit(m, b, x, "rsqrt", body_rsqrt); }

/**
 * exp() for float32 data, 2-3x faster than `Math.exp` in V8 and within 2e-7 relative error
 * (float32 results; Math.exp is exact to float32 rounding): e^x = 2^n * 2^f with
 * n = round(x log2 e), a degree-6 polynomial for 2^f on [-1/2, 1/2] and a float64 table of
 * powers of two, so underflow to subnormals/zero, overflow to Infinity and NaN come out as with
 * Math.exp. (Math.round is slow in V8: `(t + 1024.5) | 0` rounds the clamped t instead.)
 */

const LOG2E = 1.4426950408889634;
const LN2 = 0.6931471805599453;
/** POW2[k] = 2^(k - 1024) for the k a clamped t can give; POW2[0] = NaN is where NaN lands. */
const POW2 = new Float64Array(2048);
for (let k = 1; k < 2048; k++) POW2[k] = Math.pow(2, k - 1024);
POW2[0] = NaN;

/** e^x for one number (same method as the array functions). */
export function fastExp(x: number): number {
  let t = x * LOG2E;
  t = t < -190 ? -190 : t > 190 ? 190 : t; // NaN passes through and lands on POW2[0]
  const k = (t + 1024.5) | 0;
  const z = (t - (k - 1024)) * LN2;
  const p = 1 + z * (1 + z * (0.5 + z * (0.16666666666666666 + z * (0.041666666666666664 +
                    z * (0.008333333333333333 + z * 0.001388888888888889)))));
  return p * POW2[k];
}

/**
 * dst[do+i] = e^(src[so+i] - shift) for i < n; returns the sum of the results (float64).
 * `src` and `dst` may be the same array.
 */
export function expShiftSum(
  src: Float32Array,
  so: number,
  dst: Float32Array,
  dOff: number,
  n: number,
  shift: number,
): number {
  let s = 0;
  for (let i = 0; i < n; i++) {
    let t = (src[so + i] - shift) * LOG2E;
    t = t < -190 ? -190 : t > 190 ? 190 : t;
    const k = (t + 1024.5) | 0;
    const z = (t - (k - 1024)) * LN2;
    const p = 1 + z * (1 + z * (0.5 + z * (0.16666666666666666 + z * (0.041666666666666664 +
                      z * (0.008333333333333333 + z * 0.001388888888888889)))));
    const e = p * POW2[k];
    dst[dOff + i] = e;
    s += e;
  }
  return s;
}

/** Sum of e^(src[so+i] - shift) for i < n, without storing the terms. */
export function sumExpShift(src: Float32Array, so: number, n: number, shift: number): number {
  let s = 0;
  for (let i = 0; i < n; i++) {
    let t = (src[so + i] - shift) * LOG2E;
    t = t < -190 ? -190 : t > 190 ? 190 : t;
    const k = (t + 1024.5) | 0;
    const z = (t - (k - 1024)) * LN2;
    const p = 1 + z * (1 + z * (0.5 + z * (0.16666666666666666 + z * (0.041666666666666664 +
                      z * (0.008333333333333333 + z * 0.001388888888888889)))));
    s += p * POW2[k];
  }
  return s;
}

/** Largest element of src[so .. so+n) (NaN if any is NaN, like tfjs' Max). */
export function rowMax(src: Float32Array, so: number, n: number): number {
  let m = -Infinity;
  for (let i = 0; i < n; i++) {
    const v = src[so + i];
    if (v > m) m = v;
    else if (v !== v) return NaN;
  }
  return m;
}

/** dst[do+i] = e^(src[so+i] - shift) * scale for i < n. */
export function expShiftScale(
  src: Float32Array,
  so: number,
  dst: Float32Array,
  dOff: number,
  n: number,
  shift: number,
  scale: number,
): void {
  for (let i = 0; i < n; i++) {
    let t = (src[so + i] - shift) * LOG2E;
    t = t < -190 ? -190 : t > 190 ? 190 : t;
    const k = (t + 1024.5) | 0;
    const z = (t - (k - 1024)) * LN2;
    const p = 1 + z * (1 + z * (0.5 + z * (0.16666666666666666 + z * (0.041666666666666664 +
                      z * (0.008333333333333333 + z * 0.001388888888888889)))));
    dst[dOff + i] = p * POW2[k] * scale;
  }
}

const TANH_CLAMP = 7.90531110763549805;

/**
 * tanh as Eigen's (and XLA's, MLAS') odd rational minimax p(x)/q(x) of degrees 13/6, clamped at
 * +-7.9053 where tanh rounds to +-1 in float32: a few ulp of float32, 5x faster than Math.tanh,
 * and odd, so tiny arguments keep their relative accuracy. NaN stays NaN.
 */
export function fastTanh(x: number): number {
  // From 9 on tanh is 1 in float32 (the clamped rational gives 1 - 2.4e-7).
  if (x >= 9) return 1;
  if (x <= -9) return -1;
  const c = x > TANH_CLAMP ? TANH_CLAMP : x < -TANH_CLAMP ? -TANH_CLAMP : x;
  const x2 = c * c;
  let p = x2 * -2.76076847742355e-16 + 2.00018790482477e-13;
  p = x2 * p + -8.60467152213735e-11;
  p = x2 * p + 5.12229709037114e-08;
  p = x2 * p + 1.48572235717979e-05;
  p = x2 * p + 6.37261928875436e-04;
  p = x2 * p + 4.89352455891786e-03;
  let q = x2 * 1.19825839466702e-06 + 1.18534705686654e-04;
  q = x2 * q + 2.26843463243900e-03;
  q = x2 * q + 4.89352518554385e-03;
  return (c * p) / q;
}

/**
 * A tiny WebAssembly assembler for simd.ts: LEB128 numbers, the opcodes the row kernels use,
 * a function builder (`Fn`), Cephes' expf as an f32x4 instruction sequence (`expBody`), a
 * 16-lane loop and the module layout. No toolchain, no binary blob.
 */

export const I32 = 0x7f, F32 = 0x7d, F64 = 0x7c, V128 = 0x7b;

function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n !== 0) b |= 0x80;
    out.push(b);
  } while (n !== 0);
  return out;
}

function sleb(n: number): number[] {
  const out: number[] = [];
  while (true) {
    const b = n & 0x7f;
    n >>= 7;
    if ((n === 0 && (b & 0x40) === 0) || (n === -1 && (b & 0x40) !== 0)) {
      out.push(b);
      return out;
    }
    out.push(b | 0x80);
  }
}

function f32Bytes(x: number): number[] {
  return [...new Uint8Array(new Float32Array([x]).buffer)];
}

/** Instruction helpers (each returns its bytes). */
export const op = {
  get: (i: number) => [0x20, ...uleb(i)],
  set: (i: number) => [0x21, ...uleb(i)],
  tee: (i: number) => [0x22, ...uleb(i)],
  i32: (v: number) => [0x41, ...sleb(v)],
  f32: (v: number) => [0x43, ...f32Bytes(v)],
  i32Add: [0x6a],
  i32Shl: [0x74],
  i32LtU: [0x49],
  i32GeU: [0x4f],
  f32Max: [0x97],
  f64Add: [0xa0],
  block: [0x02, 0x40],
  loop: [0x03, 0x40],
  brIf: (d: number) => [0x0d, ...uleb(d)],
  end: [0x0b],
  simd: (code: number, ...imm: number[]) => [0xfd, ...uleb(code), ...imm],
};
export const v = {
  load: op.simd(0x00, 4, 0), // align 2^4, offset 0
  load16: op.simd(0x00, 4, 16), // the next vector
  store: op.simd(0x0b, 4, 0),
  splatF32: (
    x: number,
  ) => [...op.simd(0x0c), ...f32Bytes(x), ...f32Bytes(x), ...f32Bytes(x), ...f32Bytes(x)],
  f32Splat: op.simd(0x13),
  splatI32: (x: number) => {
    const b = [...new Uint8Array(new Int32Array([x]).buffer)];
    return op.simd(0x0c, ...b, ...b, ...b, ...b);
  },
  i32Sub: op.simd(0xb1, 0x01),
  f32Lane: (i: number) => op.simd(0x1f, i),
  f64Lane: (i: number) => op.simd(0x21, i),
  f32Lt: op.simd(0x43),
  f32Gt: op.simd(0x44),
  andnot: op.simd(0x4f),
  bitselect: op.simd(0x52),
  nearest: op.simd(0x6a),
  i32Shl: op.simd(0xab, 0x01),
  i32Add: op.simd(0xae, 0x01),
  f32Add: op.simd(0xe4, 0x01),
  f32Sub: op.simd(0xe5, 0x01),
  f32Mul: op.simd(0xe6, 0x01),
  f32Div: op.simd(0xe7, 0x01),
  f32Sqrt: op.simd(0xe3, 0x01),
  f32Max: op.simd(0xe9, 0x01),
  f32Pmin: op.simd(0xea, 0x01),
  f32Pmax: op.simd(0xeb, 0x01),
  f64Add: op.simd(0xf0, 0x01),
  truncSat: op.simd(0xf8, 0x01),
  promoteLow: op.simd(0x5f),
  // Bytes 8..15 to 0..7: the high two floats become the low two.
  highToLow: op.simd(0x0d, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7),
};

const LOG2E = 1.44269504088896341;
const C1 = 0.693359375, C2 = -2.12194440e-4;
const P = [
  1.9875691500e-4,
  1.3981999507e-3,
  8.3334519073e-3,
  4.1665795894e-2,
  1.6666665459e-1,
  5.0000001201e-1,
];
const X_LO = -86.5, X_HI = 88.3;
/** 1.5 * 2^23: adding it rounds a float32 in (-2^22, 2^22) to an integer in its low bits. */
const MAGIC = 12582912;
const MAGIC_BITS = 0x4b400000;

/** v128 locals holding the exp constants, set once before a loop (V8 does not hoist them). */
interface ExpConsts {
  lo: number;
  hi: number;
  log2e: number;
  magic: number;
  magicBits: number;
  c1: number;
  c2: number;
  p: number[];
  one: number;
  inf: number;
}

/** A function under construction: numbered params, then locals allocated by name. */
export class Fn {
  readonly locals: number[] = [];
  body: number[] = [];
  constructor(readonly name: string, readonly params: number[], readonly results: number[]) {}
  local(type: number): number {
    this.locals.push(type);
    return this.params.length + this.locals.length - 1;
  }
  /** Allocates and fills the constant locals of expBody. */
  expConsts(): { k: ExpConsts; init: number[] } {
    const k: ExpConsts = {
      lo: this.local(V128),
      hi: this.local(V128),
      log2e: this.local(V128),
      magic: this.local(V128),
      magicBits: this.local(V128),
      c1: this.local(V128),
      c2: this.local(V128),
      p: P.map(() => this.local(V128)),
      one: this.local(V128),
      inf: this.local(V128),
    };
    const c = (x: number, l: number) => [...v.splatF32(x), ...op.set(l)];
    const init = [
      ...c(X_LO, k.lo),
      ...c(X_HI, k.hi),
      ...c(LOG2E, k.log2e),
      ...c(MAGIC, k.magic),
      ...v.splatI32(MAGIC_BITS),
      ...op.set(k.magicBits),
      ...c(C1, k.c1),
      ...c(C2, k.c2),
      ...P.flatMap((x, i) => c(x, k.p[i])),
      ...c(1, k.one),
      ...c(Infinity, k.inf),
    ];
    return { k, init };
  }
}

/**
 * exp of the v128 in local `x` (f32x4, already shifted); leaves the result on the stack. Uses
 * v128 locals t and r. Rounding to the nearest integer by adding 1.5 * 2^23 (whose low mantissa
 * bits then hold it) is cheaper than f32x4.nearest + i32x4.trunc_sat. `edges` adds the
 * Infinity/0 masks for x beyond the clamp range; without them such x give the value at the
 * clamp (e^-86.5 ~ 3e-38 below), which sums over softmax rows can ignore.
 */
export function expBody(k: ExpConsts, x: number, t: number, r: number, edges: boolean): number[] {
  const g = op.get;
  // deno-fmt-ignore
  return [
    // r = clamp(x); t = r * log2e + MAGIC (t's bits - MAGIC's bits = n = round(r log2e))
    ...g(x), ...g(k.lo), ...v.f32Pmax, ...g(k.hi), ...v.f32Pmin, ...op.tee(r),
    ...g(k.log2e), ...v.f32Mul, ...g(k.magic), ...v.f32Add, ...op.tee(t),
    // 2^n as exponent bits, kept on the stack for the end: (bits(t) - bits(MAGIC)) << 23
    ...g(k.magicBits), ...v.i32Sub, ...op.i32(23), ...v.i32Shl,
    // t = n as a float; r = r - n*C1 - n*C2
    ...g(t), ...g(k.magic), ...v.f32Sub, ...op.set(t),
    ...g(r), ...g(t), ...g(k.c1), ...v.f32Mul, ...v.f32Sub,
    ...g(t), ...g(k.c2), ...v.f32Mul, ...v.f32Sub, ...op.set(r),
    // polynomial: ((((P0 r + P1) r + P2) r + P3) r + P4) r + P5) r^2 + r + 1
    ...g(k.p[0]), ...g(r), ...v.f32Mul, ...g(k.p[1]), ...v.f32Add,
    ...g(r), ...v.f32Mul, ...g(k.p[2]), ...v.f32Add,
    ...g(r), ...v.f32Mul, ...g(k.p[3]), ...v.f32Add,
    ...g(r), ...v.f32Mul, ...g(k.p[4]), ...v.f32Add,
    ...g(r), ...v.f32Mul, ...g(k.p[5]), ...v.f32Add,
    ...g(r), ...g(r), ...v.f32Mul, ...v.f32Mul,
    ...g(r), ...v.f32Add, ...g(k.one), ...v.f32Add,
    // bits(p) + (n << 23)
    ...v.i32Add,
    ...(edges
      ? [
        // x > X_HI: Infinity; x < X_LO: 0 (NaN compares false and stays NaN)
        ...op.set(t),
        ...g(k.inf), ...g(t), ...g(x), ...g(k.hi), ...v.f32Gt, ...v.bitselect,
        ...g(x), ...g(k.lo), ...v.f32Lt, ...v.andnot,
      ]
      : []),
  ];
}

/** Loop over [p, p + 4n) by 16 bytes; `body` sees the current address in local p. */
export function loop16(p: number, n: number, end: number, body: number[]): number[] {
  // deno-fmt-ignore
  return [
    ...op.get(p), ...op.get(n), ...op.i32(2), ...op.i32Shl, ...op.i32Add, ...op.set(end),
    ...op.block,
    ...op.get(p), ...op.get(end), ...op.i32GeU, ...op.brIf(0),
    ...op.loop,
    ...body,
    ...op.get(p), ...op.i32(16), ...op.i32Add, ...op.tee(p), ...op.get(end), ...op.i32LtU,
    ...op.brIf(0),
    ...op.end,
    ...op.end,
  ];
}

export function assemble(funcs: Fn[]): Uint8Array<ArrayBuffer> {
  const section = (id: number, payload: number[]) => [id, ...uleb(payload.length), ...payload];
  const vec = (items: number[][]) => [...uleb(items.length), ...items.flat()];
  const name = (s: string) => [...uleb(s.length), ...new TextEncoder().encode(s)];
  const types = vec(
    funcs.map((f) => [0x60, ...vec(f.params.map((t) => [t])), ...vec(f.results.map((t) => [t]))]),
  );
  const fidx = vec(funcs.map((_, i) => uleb(i)));
  const memory = vec([[0x00, ...uleb(16)]]);
  const exports = vec([
    ...funcs.map((f, i) => [...name(f.name), 0x00, ...uleb(i)]),
    [...name("memory"), 0x02, 0x00],
  ]);
  const code = vec(funcs.map((f) => {
    const locals = vec(f.locals.map((t) => [1, t]));
    const b = [...locals, ...f.body, 0x0b];
    return [...uleb(b.length), ...b];
  }));
  // deno-fmt-ignore
  return new Uint8Array([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, types), ...section(3, fidx), ...section(5, memory), ...section(7, exports),
    ...section(10, code),
  ]);
}

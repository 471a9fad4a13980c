import assert from "node:assert/strict";
import { join } from "node:path";
import { UserError } from "../lib/util/errors.ts";
import { checkSafetensorsFile, readSafetensorsHeader } from "../lib/io/safetensors_header.ts";
import {
  parseSafetensors,
  readSafetensors,
  serializeSafetensors,
  type TensorMap,
  writeSafetensors,
} from "../lib/io/safetensors.ts";

/** Builds a safetensors file by hand: header entries + raw data bytes, as another tool would. */
function handMade(header: Record<string, unknown>, data: Uint8Array, pad = true): Uint8Array {
  let json = JSON.stringify(header);
  if (pad) json = json.padEnd(Math.ceil(json.length / 8) * 8, " ");
  const h = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + h.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(h.length), true);
  out.set(h, 8);
  out.set(data, 8 + h.length);
  return out;
}

const u16 = (xs: number[]) => new Uint8Array(new Uint16Array(xs).buffer);

function throwsUserError(fn: () => unknown, pattern: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof UserError, `expected UserError, got ${err}`);
    assert.match(err.message, pattern);
    assert.ok(!err.message.includes("\n"), "message is one line");
    return true;
  });
}

Deno.test("writeSafetensors() then readSafetensors() round-trips F32 tensors and metadata", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const tensors: TensorMap = new Map([
      ["a.weight", { shape: [2, 3], data: new Float32Array([1, -2, 3.5, 0, 1e-8, -0]) }],
      ["b", { shape: [1], data: new Float32Array([42]) }],
      ["scalar", { shape: [], data: new Float32Array([7]) }],
      ["empty", { shape: [0, 4], data: new Float32Array(0) }],
    ]);
    const path = join(dir, "m.safetensors");
    await writeSafetensors(path, tensors, { format: "pt" });
    const back = await readSafetensors(path);
    assert.deepEqual(back.metadata, { format: "pt" });
    assert.deepEqual([...back.tensors.keys()], [...tensors.keys()]);
    for (const [name, t] of tensors) {
      assert.deepEqual(back.tensors.get(name)!.shape, t.shape);
      assert.deepEqual(back.tensors.get(name)!.data, t.data);
      assert.equal(back.dtypes.get(name), "F32");
    }
    // No temp files left behind.
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["m.safetensors"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("serializeSafetensors() pads the header to 8 bytes and F32 reads are views, not copies", () => {
  const bytes = serializeSafetensors(
    new Map([["x", { shape: [3], data: new Float32Array([1, 2, 3]) }]]),
  );
  const headerLen = Number(new DataView(bytes.buffer).getBigUint64(0, true));
  assert.equal(headerLen % 8, 0);
  const { tensors } = parseSafetensors(bytes);
  assert.equal(tensors.get("x")!.data.buffer, bytes.buffer);
  assert.deepEqual(tensors.get("x")!.data, new Float32Array([1, 2, 3]));
});

Deno.test("parseSafetensors() reads F32 data at an unaligned offset (unpadded header)", () => {
  const f = new Float32Array([1.5, -2.25]);
  const bytes = handMade(
    { x: { dtype: "F32", shape: [2], data_offsets: [0, 8] } },
    new Uint8Array(f.buffer),
    false,
  );
  assert.deepEqual(parseSafetensors(bytes).tensors.get("x")!.data, f);
});

Deno.test("parseSafetensors() decodes F16 like torch (1, -2, 65504, 2^-24, 1/3, -0, inf, NaN)", () => {
  // Bit patterns from torch.tensor([...]).to(torch.float16).view(torch.int16).
  const bits = [15360, 49152, 31743, 1, 13653, 32768, 31744, 16968, 5145, 51072, 0x7e00];
  const bytes = handMade({ h: { dtype: "F16", shape: [11], data_offsets: [0, 22] } }, u16(bits));
  const got = parseSafetensors(bytes).tensors.get("h")!.data;
  const want = [1, -2, 65504, 5.960464477539063e-8, 0.333251953125, -0, Infinity, 3.140625];
  want.forEach((w, i) => assert.ok(Object.is(got[i], w), `element ${i}: ${got[i]} vs ${w}`));
  assert.ok(Math.abs(got[8] - 0.0010004043579101562) < 1e-12);
  assert.equal(got[9], -7.5);
  assert.ok(Number.isNaN(got[10]));
});

Deno.test("parseSafetensors() decodes BF16 like torch (1, -2, 65536, 2^-24, 0.334, -0, inf, pi)", () => {
  // Bit patterns from torch.tensor([...]).to(torch.bfloat16).view(torch.int16).
  const bits = [16256, 49152, 18304, 13184, 16043, 32768, 32640, 16457, 14979, 49392];
  const bytes = handMade({ b: { dtype: "BF16", shape: [2, 5], data_offsets: [0, 20] } }, u16(bits));
  const t = parseSafetensors(bytes).tensors.get("b")!;
  assert.deepEqual(t.shape, [2, 5]);
  const want = [
    1,
    -2,
    65536,
    5.960464477539063e-8,
    0.333984375,
    -0,
    Infinity,
    3.140625,
    0.00099945068359375,
    -7.5,
  ];
  want.forEach((w, i) => assert.ok(Object.is(t.data[i], w), `element ${i}: ${t.data[i]} vs ${w}`));
});

Deno.test("parseSafetensors() converts I32, I64 and BOOL tensors to float32", () => {
  const i32 = new Uint8Array(new Int32Array([-3, 7]).buffer);
  const i64 = new Uint8Array(new BigInt64Array([-5n, 1n << 40n]).buffer);
  const data = new Uint8Array(8 + 16 + 2);
  data.set(i32, 0);
  data.set(i64, 8);
  data.set([1, 0], 24);
  const bytes = handMade({
    i: { dtype: "I32", shape: [2], data_offsets: [0, 8] },
    l: { dtype: "I64", shape: [2], data_offsets: [8, 24] },
    m: { dtype: "BOOL", shape: [2], data_offsets: [24, 26] },
  }, data);
  const { tensors, dtypes } = parseSafetensors(bytes);
  assert.deepEqual([...tensors.get("i")!.data], [-3, 7]);
  assert.deepEqual([...tensors.get("l")!.data], [-5, 2 ** 40]);
  assert.deepEqual([...tensors.get("m")!.data], [1, 0]);
  assert.equal(dtypes.get("l"), "I64");
});

Deno.test("parseSafetensors() with include decodes only the chosen tensors", () => {
  const bytes = serializeSafetensors(
    new Map([
      ["keep", { shape: [1], data: new Float32Array([1]) }],
      ["skip", { shape: [1], data: new Float32Array([2]) }],
    ]),
  );
  const { tensors, dtypes } = parseSafetensors(bytes, { include: (n) => n === "keep" });
  assert.deepEqual([...tensors.keys()], ["keep"]);
  assert.deepEqual([...dtypes.keys()], ["keep", "skip"]);
});

Deno.test("parseSafetensors() rejects a file shorter than 8 bytes", () => {
  throwsUserError(
    () => parseSafetensors(new Uint8Array(5), { label: "model.safetensors" }),
    /^model\.safetensors: file has 5 bytes, too short/,
  );
});

Deno.test("parseSafetensors() rejects a header length beyond the file", () => {
  const bytes = new Uint8Array(20);
  new DataView(bytes.buffer).setBigUint64(0, 1000n, true);
  throwsUserError(
    () => parseSafetensors(bytes, { label: "m.st" }),
    /^m\.st: header length 1000 goes beyond the file's 20 bytes/,
  );
});

Deno.test("parseSafetensors() rejects a header that is not JSON", () => {
  const h = new TextEncoder().encode("{not json");
  const bytes = new Uint8Array(8 + h.length);
  new DataView(bytes.buffer).setBigUint64(0, BigInt(h.length), true);
  bytes.set(h, 8);
  throwsUserError(
    () => parseSafetensors(bytes, { label: "m.st" }),
    /^m\.st: header is not valid JSON/,
  );
});

Deno.test("parseSafetensors() names the tensor a truncated file cuts off", () => {
  const full = serializeSafetensors(
    new Map([
      ["h.0.weight", { shape: [4], data: new Float32Array(4) }],
      ["h.3.mlp.c_fc.weight", { shape: [4, 4], data: new Float32Array(16) }],
    ]),
  );
  const cut = full.slice(0, full.length - 10);
  throwsUserError(
    () => parseSafetensors(cut, { label: "model.safetensors" }),
    /^model\.safetensors: tensor "h\.3\.mlp\.c_fc\.weight" needs bytes \d+\.\.\d+ but the file has \d+ \(truncated download\?\)$/,
  );
});

Deno.test("parseSafetensors() names a tensor whose byte size does not match shape and dtype", () => {
  const bytes = handMade(
    { w: { dtype: "F16", shape: [2, 3], data_offsets: [0, 8] } },
    new Uint8Array(8),
  );
  throwsUserError(
    () => parseSafetensors(bytes, { label: "x" }),
    /^x: tensor "w" of shape \[2,3\] F16 needs 12 bytes but its data_offsets 0\.\.8 hold 8$/,
  );
});

Deno.test("parseSafetensors() names a tensor with an unsupported dtype", () => {
  const bytes = handMade(
    { q: { dtype: "F8_E4M3", shape: [2], data_offsets: [0, 2] } },
    new Uint8Array(2),
  );
  throwsUserError(
    () => parseSafetensors(bytes, { label: "x" }),
    /tensor "q" has dtype F8_E4M3, which is not supported/,
  );
});

Deno.test("parseSafetensors() rejects trailing bytes the header does not describe", () => {
  const ok = serializeSafetensors(new Map([["w", { shape: [1], data: new Float32Array(1) }]]));
  const long = new Uint8Array(ok.length + 4);
  long.set(ok);
  throwsUserError(
    () => parseSafetensors(long, { label: "x" }),
    /file has \d+ bytes but its header describes \d+/,
  );
});

Deno.test("readSafetensors() of a missing file is a UserError naming the path", async () => {
  await assert.rejects(readSafetensors("/nonexistent/dir/m.safetensors"), (err: unknown) => {
    assert.ok(err instanceof UserError);
    assert.match(err.message, /\/nonexistent\/dir\/m\.safetensors: file not found/);
    return true;
  });
});

Deno.test("readSafetensorsHeader() and checkSafetensorsFile() judge a file from its header alone", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const bytes = serializeSafetensors(
      new Map([["w", { shape: [100], data: new Float32Array(100) }]]),
    );
    const path = join(dir, "m.safetensors");
    await Deno.writeFile(path, bytes);
    const header = await readSafetensorsHeader(path);
    assert.deepEqual(header.entries.get("w"), { dtype: "F32", shape: [100], begin: 0, end: 400 });
    assert.equal(header.expectedFileSize, bytes.length);
    assert.equal((await checkSafetensorsFile(path)).status, "ok");

    await Deno.writeFile(path, bytes.slice(0, bytes.length - 1));
    const cut = await checkSafetensorsFile(path);
    assert.equal(cut.status, "truncated");
    assert.equal(cut.expectedSize, bytes.length);
    await assert.rejects(readSafetensorsHeader(path), /tensor "w" needs bytes/);

    await Deno.writeFile(path, bytes.slice(0, 12)); // cut inside the header
    assert.equal((await checkSafetensorsFile(path)).status, "truncated");
    await Deno.writeFile(path, bytes.slice(0, 3));
    assert.equal((await checkSafetensorsFile(path)).status, "truncated");
    await Deno.writeFile(path, new TextEncoder().encode("<html>Not found</html>"));
    assert.equal((await checkSafetensorsFile(path)).status, "corrupt");
    assert.equal((await checkSafetensorsFile(join(dir, "none"))).status, "missing");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a header whose tensors overlap is refused naming both tensors", () => {
  const bytes = handMade({
    a: { dtype: "F16", shape: [2], data_offsets: [0, 4] },
    b: { dtype: "F16", shape: [2], data_offsets: [2, 6] },
  }, u16([1, 2, 3]));
  throwsUserError(
    () => parseSafetensors(bytes),
    /tensor "b" \(bytes 2\.\.6\) overlaps tensor "a" \(ends at 4\)/,
  );
});

Deno.test("a header that leaves bytes between tensors (a gap) is refused naming where", () => {
  const bytes = handMade({
    a: { dtype: "F16", shape: [1], data_offsets: [0, 2] },
    b: { dtype: "F16", shape: [1], data_offsets: [4, 6] },
  }, u16([1, 2, 3]));
  throwsUserError(
    () => parseSafetensors(bytes),
    /2 bytes between tensor "a" \(ends at 2\) and tensor "b" \(starts at 4\) belong to no tensor/,
  );
  const late = handMade({ a: { dtype: "F16", shape: [1], data_offsets: [2, 4] } }, u16([1, 2]));
  throwsUserError(() => parseSafetensors(late), /2 bytes between the start of the data/);
});

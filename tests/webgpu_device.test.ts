/**
 * The WebGPU device set-up (lib/webgpu/device.ts): the backend line, rejected kernels that would
 * otherwise return stale data, and a lost device. Runs where the suite runs on WebGPU
 * (LLM_BACKEND=webgpu, as CI does on lavapipe); elsewhere the tests are skipped.
 */
import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import { join } from "node:path";
import { describeBackend, initBackend } from "../lib/backend.ts";
import { readTrainerState } from "../lib/train/checkpoint.ts";
import { webgpuDevice } from "../lib/webgpu/device.ts";

const info = await initBackend({ log: false });
const ignore = info.name !== "webgpu";

Deno.test({
  name: "the backend line names the WebGPU adapter and the limits that decide what fits",
  ignore,
  fn() {
    const line = describeBackend(info);
    assert.match(
      line,
      /^backend: webgpu \(.+; binds \d+ MiB per tensor, buffers up to \d+ MiB, \d+ storage buffers per kernel\)/,
    );
    assert.ok(info.maxTensorBytes! >= 128 * 2 ** 20, `maxTensorBytes ${info.maxTensorBytes}`);
  },
});

Deno.test({
  name:
    "a command WebGPU rejects fails the next read with its message instead of returning stale data",
  ignore,
  async fn() {
    // Large enough to run on the GPU (tfjs computes tiny tensors on the CPU side).
    const x = tf.fill([4096], 41);
    const first = async (t: tf.Tensor) => (await t.data())[0];
    const y = x.add(1);
    assert.equal(await first(y), 42);
    webgpuDevice()!.createBuffer({ size: 4, usage: 0 }); // usage 0 is invalid
    const z = x.add(2);
    await assert.rejects(() => z.data(), /WebGPU rejected a kernel.*usage/i);
    const w = x.add(3);
    assert.equal(await first(w), 44, "later reads work again");
    tf.dispose([x, y, z, w]);
  },
});

Deno.test({
  name:
    "a lost WebGPU device stops a training run with one error line and leaves its last checkpoint whole",
  ignore,
  async fn() {
    const dir = await Deno.makeTempDir();
    try {
      const out = await new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", new URL("./webgpu_lost_run.ts", import.meta.url).pathname, dir],
        env: { LLM_WEBGPU_LOSE_DEVICE_AFTER: "400", NO_COLOR: "1" },
        stdout: "piped",
        stderr: "piped",
      }).output();
      const stderr = new TextDecoder().decode(out.stderr).trim();
      assert.equal(out.code, 1, stderr);
      assert.match(
        stderr,
        /^error: the WebGPU device was lost \(destroyed.*last checkpoint is intact/,
      );
      assert.equal(stderr.split("\n").length, 1, stderr);
      const state = await readTrainerState(dir);
      assert.ok(state.trainer.step >= 1, `checkpoint at step ${state.trainer.step}`);
      for (const f of ["model.safetensors", "optimizer.safetensors", "config.json"]) {
        assert.ok((await Deno.stat(join(dir, f))).size > 0, f);
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
      await Deno.remove(`${dir}.partial`, { recursive: true }).catch(() => {});
    }
  },
});

Deno.test({
  name:
    "pretraining a model too large for the device is one error line naming the tensor, and writes nothing",
  ignore: ignore || info.maxTensorBytes! >= 50257 * 1024 * 4,
  async fn() {
    const out = join(await Deno.makeTempDir(), "run");
    const cli = new URL("../lib/cli.ts", import.meta.url).pathname;
    const data = new URL("../data/the-verdict.txt", import.meta.url).pathname;
    const r = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", cli, "pretrain", "--data", data, "--model", "gpt2-medium"]
        .concat(["--context-length", "128", "--out", out]),
      env: { LLM_BACKEND: "webgpu", NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const lines = new TextDecoder().decode(r.stderr).trim().split("\n");
    assert.equal(r.code, 1);
    assert.match(
      lines.at(-1)!,
      /^error: tok_emb\.weight \[50257,1024\] needs 196 MiB but this webgpu device binds at most \d+ MiB per tensor/,
    );
    assert.ok(
      lines.every((l) => l.startsWith("backend: ") || l.startsWith("error: ")),
      lines.join("\n"),
    );
    await assert.rejects(() => Deno.stat(out), Deno.errors.NotFound);
  },
});

Deno.test("a forced WebGPU without an adapter is one error line and exit 1", async () => {
  const cli = new URL("../lib/cli.ts", import.meta.url).pathname;
  const weights = new URL("./fixtures/gpt-tiny-qkv-hf", import.meta.url).pathname;
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", cli, "generate", "--weights", weights, "--prompt-ids", "1,2", "--json"],
    // Vulkan only, and no Vulkan driver: no adapter at all.
    env: {
      LLM_BACKEND: "webgpu",
      DENO_WEBGPU_BACKEND: "vulkan",
      VK_ICD_FILENAMES: "/nonexistent.json",
      NO_COLOR: "1",
    },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(r.stderr).trim();
  assert.equal(r.code, 1, stderr);
  assert.equal(
    stderr,
    "error: backend webgpu is not available: no WebGPU adapter (is a Vulkan, Metal or D3D12 driver installed?)",
  );
});

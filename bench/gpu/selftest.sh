#!/usr/bin/env bash
# Checks a pack from bench/gpu/pack.sh on this (CPU) machine: the size limit, then run.sh from a
# copy in a temp dir with a clean environment and no network (a new network namespace), our side
# on WebGPU through Mesa's lavapipe and the peer on torch's CPU, with the `micro` config.
#
#   bash bench/gpu/selftest.sh [PACKDIR]      (default build/gpu)
set -euo pipefail
pack="$(cd "${1:-build/gpu}" && pwd)"
size=$(($(stat -c %s "$pack/payload.tar.xz") + $(stat -c %s "$pack/run.sh")))
echo "pack: $((size / 1024 / 1024)) MiB ($size bytes)"
((size <= 64 * 1024 * 1024)) || { echo "error: larger than 64 MiB" >&2; exit 1; }
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
cp "$pack/run.sh" "$pack/payload.tar.xz" "$tmp/"
mkdir -p "$tmp/home"
# No network: a user + network namespace with only a loopback that is down.
isolate=(unshare -rn)
"${isolate[@]}" true 2>/dev/null || { echo "warning: unshare -rn failed; running with network" >&2; isolate=(); }
${isolate[@]+"${isolate[@]}"} env -i PATH=/usr/bin:/bin HOME="$tmp/home" OUT="$tmp/out" \
  GPU_BENCH_DIR="$tmp/unpacked" BENCH_PYTHON=/usr/bin/python3 \
  bash "$tmp/run.sh" --device cpu --configs micro
echo "== results"
cat "$tmp/out/device.txt"
cat "$tmp/out/summary.md"
python3 -c 'import json, sys
j = json.loads(open(sys.argv[1]).read())
assert j["ours"].startswith("tfjs webgpu"), j["ours"]
assert j["oursMsPerStep"] > 0 and j["torchMsPerStep"] > 0, j
print("selftest ok:", j["ours"])' "$tmp/out/micro.json"

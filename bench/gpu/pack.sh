#!/usr/bin/env bash
# Packs what a GPU machine without network (no Deno, no Node) needs to run the bench into at most
# 64 MiB: bench/gpu/run.sh and payload.tar.xz with
#   deno       this machine's Deno binary (xz brings its 96 MB to about 31 MB)
#   project/   lib/, bench/, deno.json, deno.lock, data/instruction-data.json, and the files of
#              node_modules/ that the bench opens (found by tracing runs of it under strace)
#   vulkan/    the Vulkan loader (Debian's libvulkan1, unpacked); NVIDIA's driver brings the ICD
#
#   bash bench/gpu/pack.sh [OUTDIR]      (default build/gpu; needs strace, xz, apt-get download)
#
# Then copy OUTDIR to the GPU machine and run `bash OUTDIR/run.sh` (see README, "GPU").
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
outdir="${1:-build/gpu}"
limit=$((64 * 1024 * 1024))
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/project" "$outdir"
rm -f "$outdir/payload.tar.xz"

echo "== deno"
deno_bin="$(deno eval 'console.log(Deno.execPath())')"
cp "$deno_bin" "$stage/deno"
"$stage/deno" --version | head -n 1

echo "== project files"
deno install >/dev/null
# The working tree's files (committed or not, minus ignored ones): what gets measured.
git ls-files --cached --others --exclude-standard lib bench deno.json deno.lock \
  data/instruction-data.json | tar -cf - -T - | tar -xf - -C "$stage/project"

echo "== node_modules: tracing the bench (micro configs, WebGPU and cpu, generate, sft lengths)"
trace="$stage/trace"
mkdir -p "$trace"
traced() { strace -f -qq -e trace=%file -o "$trace/$1.txt" "${@:2}" >/dev/null 2>&1 || true; }
traced micro-webgpu deno run -A bench/bench.ts --config micro --backend webgpu --steps 1 --warmup 0
traced micro-cpu deno run -A bench/bench.ts --config micro --backend cpu --steps 1 --warmup 0
traced gen deno run -A bench/bench.ts --mode generate --new-tokens 2 --backend webgpu --steps 1 \
  --warmup 0
traced sft deno eval 'const { sftLengths } = await import("./bench/sft.ts"); await sftLengths();'
traced probe deno run -A bench/gpu/probe.ts
# Every node_modules file that was opened or stat'ed, by its real path; all package.json files
# and symlinks (how Node resolution finds packages) and Deno's own bookkeeping files.
grep -ho "\"$root/node_modules/[^\"]*\"" "$trace"/*.txt | tr -d '"' | sort -u |
  while read -r p; do
    real="$(readlink -f "$p" 2>/dev/null || true)"
    if [[ -f "$real" ]]; then echo "${real#"$root"/}"; fi
  done >"$stage/files.txt"
find node_modules -name package.json -type f >>"$stage/files.txt"
# (not the lock files of Deno runs going on meanwhile)
find node_modules -maxdepth 2 -path 'node_modules/.deno/.*' -type f ! -name '.deno.lock*' \
  >>"$stage/files.txt"
sort -u "$stage/files.txt" | tar --ignore-failed-read -cf - -T - | tar -xf - -C "$stage/project"
find node_modules -type l | tar -cf - -T - | tar -xf - -C "$stage/project"
echo "$(sort -u "$stage/files.txt" | wc -l) files, $(du -sh "$stage/project/node_modules" | cut -f1)"

echo "== Vulkan loader (libvulkan1)"
(cd "$stage" && apt-get download libvulkan1 >/dev/null)
dpkg-deb -x "$stage"/libvulkan1_*.deb "$stage/vulkan"
rm -f "$stage"/libvulkan1_*.deb
ls "$stage/vulkan/usr/lib/x86_64-linux-gnu/"

echo "== payload.tar.xz"
rm -rf "$trace" "$stage/files.txt"
tar -C "$stage" -cf - deno project vulkan | xz -6 -T0 >"$outdir/payload.tar.xz"
cp bench/gpu/run.sh "$outdir/run.sh"
size=$(($(stat -c %s "$outdir/payload.tar.xz") + $(stat -c %s "$outdir/run.sh")))
echo "$outdir: $((size / 1024 / 1024)) MiB ($size bytes; limit $limit)"
if ((size > limit)); then
  echo "error: the pack is larger than 64 MiB" >&2
  exit 1
fi

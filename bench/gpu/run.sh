#!/usr/bin/env bash
# Runs the whole bench on a GPU machine without network, from what bench/gpu/pack.sh packed:
# our GPT on WebGPU (Vulkan) side by side with PyTorch on CUDA, one JSON line per config.
#
#   bash run.sh [--device cuda|cpu] [--configs "tiny gpt-124m-book gpt2-medium-sft generate"]
#
# Needs: this script next to payload.tar.xz, an NVIDIA driver with its Vulkan ICD, python3 with
# torch (CUDA). Writes $OUT (default ./out next to this script): bench.jsonl (one JSON object per
# config, as `deno task bench --json` prints), <config>.log, device.txt and summary.md.
# Env: OUT, GPU_BENCH_DIR (where to unpack; default a temp dir), BENCH_PYTHON (default python3),
# VK_ICD_FILENAMES (a Vulkan ICD json to use instead of the one found).
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
device=cuda
configs="tiny gpt-124m-book gpt2-medium-sft generate"
while (($# > 0)); do
  case "$1" in
    --device) device="$2"; shift 2 ;;
    --configs) configs="$2"; shift 2 ;;
    -h | --help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "error: unknown argument $1 (see --help)" >&2; exit 1 ;;
  esac
done
OUT="${OUT:-$here/out}"
mkdir -p "$OUT"
work="${GPU_BENCH_DIR:-$(mktemp -d)}"
mkdir -p "$work"

say() { printf '== %s\n' "$*" | tee -a "$OUT/device.txt" >&2; }

# --- unpack (xz through tar, or Python's lzma where xz is missing) --------------------------
if [[ ! -x "$work/deno" ]]; then
  say "unpacking into $work"
  if command -v xz >/dev/null 2>&1; then
    tar -xJf "$here/payload.tar.xz" -C "$work" || exit 1
  else
    python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' \
      "$here/payload.tar.xz" "$work" || exit 1
  fi
  chmod +x "$work/deno"
fi
cd "$work/project" || exit 1

# --- Vulkan: our loader, the driver's ICD -----------------------------------------------------
export LD_LIBRARY_PATH="$work/vulkan/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
if [[ -z "${VK_ICD_FILENAMES:-}" ]]; then
  icd="$(ls /usr/share/vulkan/icd.d/nvidia*.json /etc/vulkan/icd.d/nvidia*.json 2>/dev/null | head -n 1)"
  if [[ -z "$icd" ]]; then
    # Containers often have the driver's libraries but not its ICD json: write one.
    lib="$(ldconfig -p 2>/dev/null | awk '/libGLX_nvidia\.so\.0 /{print $NF; exit}')"
    if [[ -n "$lib" ]]; then
      icd="$work/nvidia_icd.json"
      printf '{"file_format_version":"1.0.0","ICD":{"library_path":"%s","api_version":"1.3.0"}}\n' \
        "$lib" >"$icd"
    fi
  fi
  if [[ -n "$icd" ]]; then export VK_ICD_FILENAMES="$icd"; fi
fi
say "Vulkan ICD: ${VK_ICD_FILENAMES:-none found, so the default search}"

export DENO_DIR="$work/deno_dir" DENO_NO_UPDATE_CHECK=1 NO_COLOR=1
export BENCH_PYTHON="${BENCH_PYTHON:-python3}"
deno=("$work/deno" run -A --cached-only)

# --- the device -------------------------------------------------------------------------------
"${deno[@]}" bench/gpu/probe.ts 2>&1 | tee -a "$OUT/device.txt" >&2
"$BENCH_PYTHON" -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")' 2>&1 |
  tee -a "$OUT/device.txt" >&2

# --- the bench ----------------------------------------------------------------------------------
: >"$OUT/bench.jsonl"
: >"$OUT/summary.md"
failed=0
for c in $configs; do
  if [[ "$c" == generate ]]; then args=(--mode generate); else args=(--config "$c"); fi
  say "bench $c (ours: webgpu, peer: torch $device)"
  if timeout 3600 "${deno[@]}" bench/bench.ts "${args[@]}" --backend webgpu --device "$device" \
    --json >"$OUT/$c.json" 2>"$OUT/$c.log"; then
    cat "$OUT/$c.json" >>"$OUT/bench.jsonl"
    "${deno[@]}" bench/gpu/summary.ts "$OUT/$c.json" >>"$OUT/summary.md" 2>>"$OUT/$c.log"
  else
    failed=$((failed + 1))
    echo "bench $c failed; the end of $OUT/$c.log:" >&2
    tail -n 5 "$OUT/$c.log" >&2
  fi
done
say "done: $OUT/bench.jsonl, $OUT/summary.md ($failed failed)"
((failed == 0))

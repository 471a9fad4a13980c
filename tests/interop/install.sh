#!/usr/bin/env bash
# Installs the test-only llama.cpp engine (node-llama-cpp 3.21.1 with its prebuilt Linux x64 CPU
# binaries, ~85 MB) into tests/interop/node_modules for tests/gguf_llama_cpp.test.ts. Optional
# packages (CUDA/Vulkan builds for other machines) and install scripts (which would try to
# download or build llama.cpp) are skipped. The library itself never imports it.
set -euo pipefail
cd "$(dirname "$0")"
if [[ -f node_modules/node-llama-cpp/package.json ]]; then exit 0; fi
npm ci --omit=optional --ignore-scripts --no-audit --no-fund

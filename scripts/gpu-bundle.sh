#!/usr/bin/env bash
# Packs what scripts/bench-gpu.sh needs on a GPU machine that has no network and no Node:
# this machine's Node binary, a pruned production install of the built taskforge packages plus
# Dawn (npm `webgpu`, Linux x64 binary only) and @tensorflow/tfjs-backend-webgpu, the Vulkan
# loader (libvulkan.so.1), the bench scripts and the root conf/. Output: <out>.tar.gz (and <out>/).
#
#   bash scripts/gpu-bundle.sh [out]          # default out: tmp/gpu-bundle (git-ignored)
#   # on the GPU machine: tar -xzf gpu-bundle.tar.gz && bash gpu-bundle/repo/scripts/bench-gpu.sh
#
# Needs: built packages (npx nx run-many -t build), npm registry access here, libvulkan1 installed.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=$(realpath -m "${1:-$ROOT/tmp/gpu-bundle}")
PACKAGES=(core data-cifar backbone-gpt2 task-igpt)

for p in "${PACKAGES[@]}"; do
  [[ -f "$ROOT/packages/$p/dist/index.js" ]] || { echo "packages/$p is not built: run 'npx nx run-many -t build' first" >&2; exit 2; }
done
LIBVULKAN=$(ldconfig -p | awk '/libvulkan\.so\.1 .*x86-64/ {print $NF; exit}')
[[ -n "$LIBVULKAN" ]] || { echo "libvulkan.so.1 not found: apt-get install libvulkan1" >&2; exit 2; }

rm -rf "$OUT" "$OUT.tmp"
mkdir -p "$OUT.tmp/repo" "$OUT.tmp/bin" "$OUT.tmp/lib" "$OUT.tmp/packs"
cp "$(readlink -f "$(command -v node)")" "$OUT.tmp/bin/node"
cp -L "$LIBVULKAN" "$OUT.tmp/lib/libvulkan.so.1"
for p in "${PACKAGES[@]}"; do
  (cd "$ROOT/packages/$p" && npm pack --silent --pack-destination "$OUT.tmp/packs" >/dev/null)
done
cp -r "$ROOT/conf" "$ROOT/scripts" "$OUT.tmp/repo/"
WEBGPU_VERSION=$(node -p "require('$ROOT/node_modules/webgpu/package.json').version")
TFJS_VERSION=$(node -p "require('$ROOT/node_modules/@tensorflow/tfjs-core/package.json').version")
cat >"$OUT.tmp/repo/package.json" <<JSON
{ "name": "taskforge-gpu-bench", "private": true, "type": "module" }
JSON
(cd "$OUT.tmp/repo" && npm install --omit=dev --no-audit --no-fund --no-package-lock --silent \
  "$OUT.tmp"/packs/*.tgz "webgpu@$WEBGPU_VERSION" "@tensorflow/tfjs-backend-webgpu@$TFJS_VERSION")
rm -rf "$OUT.tmp/packs"

# Prune what Node never loads here: other platforms' Dawn builds, browser bundles, source maps.
NM="$OUT.tmp/repo/node_modules"
find "$NM/webgpu/dist" -mindepth 1 -maxdepth 1 -type d ! -name linux-x64 -exec rm -rf {} +
find "$NM" -name '*.map' -delete
# Node loads each TF.js package's dist/*.node.js (package.json "main"); the other bundles are for browsers.
find "$NM"/@tensorflow/*/dist -maxdepth 1 \( -name '*.min.js' -o -name '*.es2017.js' -o -name '*.fesm.js' \) -delete
rm -rf "$NM"/@tensorflow/*/src "$NM"/@tensorflow/*/dist/miniprogram

mv "$OUT.tmp" "$OUT"
tar -C "$(dirname "$OUT")" -czf "$OUT.tar.gz.tmp" "$(basename "$OUT")"
mv "$OUT.tar.gz.tmp" "$OUT.tar.gz"
echo "bundle: $OUT ($(du -sh "$OUT" | cut -f1)), archive: $OUT.tar.gz ($(du -sh "$OUT.tar.gz" | cut -f1))"

#!/usr/bin/env bash
# The real-GPU benchmark (issue 14): matMul GFLOP/s on webgpu; the iGPT training step of the
# default, large and GPU-sized configs on webgpu (and the GPU-sized one on wasm, for the speed-up);
# the same models in PyTorch on CUDA (fp32). Results: one JSON line per measurement in
# $OUT/bench-gpu.jsonl (OUT defaults to ./bench-results), a log in $OUT/bench-gpu.log.
#
# Runs from a repo checkout (built) or from the bundle of scripts/gpu-bundle.sh on a machine
# without network or Node:  tar -xzf gpu-bundle.tar.gz && bash gpu-bundle/repo/scripts/bench-gpu.sh
#
# Environment: STEPS (timed steps, default 5), WARMUP (default 2), SKIP_WASM=1, SKIP_TORCH=1,
# PYTHON (default python3, with torch + CUDA).
set -uo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
BUNDLE=$(dirname "$REPO")
OUT=${OUT:-$REPO/bench-results}
STEPS=${STEPS:-5}
WARMUP=${WARMUP:-2}
PYTHON=${PYTHON:-python3}
mkdir -p "$OUT"
LOG="$OUT/bench-gpu.log"
JSONL="$OUT/bench-gpu.jsonl"
: >"$JSONL"
log() { echo "$*" | tee -a "$LOG" >&2; }

# The bundle brings its own Node and Vulkan loader.
[[ -x "$BUNDLE/bin/node" ]] && export PATH="$BUNDLE/bin:$PATH"
[[ -f "$BUNDLE/lib/libvulkan.so.1" ]] && export LD_LIBRARY_PATH="$BUNDLE/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-$(mktemp -d)}

# NVIDIA's Vulkan driver lives in libGLX_nvidia.so.0; containers that mount only the compute
# libraries lack its ICD manifest, so write one if the library is there but no manifest is.
if ! ls /usr/share/vulkan/icd.d/nvidia_icd*.json /etc/vulkan/icd.d/nvidia_icd*.json >/dev/null 2>&1; then
  GLX=$(ldconfig -p 2>/dev/null | awk '/libGLX_nvidia\.so\.0/ {print $NF; exit}')
  if [[ -n "$GLX" ]]; then
    ICD="$OUT/nvidia_icd.json"
    printf '{"file_format_version":"1.0.0","ICD":{"library_path":"%s","api_version":"1.3"}}\n' "$GLX" >"$ICD"
    export VK_ICD_FILENAMES="$ICD"
    log "no NVIDIA Vulkan ICD manifest found; wrote $ICD for $GLX"
  else
    log "warning: no NVIDIA Vulkan ICD (nvidia_icd.json) and no libGLX_nvidia.so.0: Dawn may find no GPU adapter (the container needs the 'graphics' driver capability)"
  fi
fi

log "== $(date -u +%FT%TZ) on $(hostname); node $(node --version 2>&1)"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | tee -a "$LOG" >&2

run_json() { # label, command...: keeps the command's last stdout line (its JSON) tagged with the label
  local label=$1; shift
  log "-- $label: $*"
  local line
  line=$("$@" 2>>"$LOG" | tail -n 1)
  [[ $line == \{* ]] || line="{\"ok\":false,\"error\":\"no JSON output (exit $?); see bench-gpu.log\"}"
  echo "{\"label\":\"$label\",\"result\":$line}" >>"$JSONL"
  log "   ${line:0:300}"
}

cd "$REPO"
run_json matmul-webgpu node scripts/bench-matmul.mjs --backend=webgpu --sizes=1024,2048,4096,8192 --reps=20

# name embed layers heads batch
CONFIGS=("default 16 8 2 16" "large 128 4 4 8" "gpu 256 8 8 32")
for c in "${CONFIGS[@]}"; do
  read -r name D L H B <<<"$c"
  run_json "$name-webgpu" node scripts/bench-step.mjs --backend=webgpu --synthetic --embed="$D" --layers="$L" --heads="$H" --batch="$B" --steps="$STEPS" --warmup="$WARMUP" --spawned-at="$(date +%s%3N)"
done
if [[ -z "${SKIP_WASM:-}" ]]; then
  # The aim is webgpu ≥ 20× wasm on the GPU-sized config; wasm steps there take long: time 2.
  run_json gpu-wasm node scripts/bench-step.mjs --backend=wasm --synthetic --embed=256 --layers=8 --heads=8 --batch=32 --steps=2 --warmup=1 --spawned-at="$(date +%s%3N)"
fi
if [[ -z "${SKIP_TORCH:-}" ]]; then
  for c in "${CONFIGS[@]}"; do
    read -r name D L H B <<<"$c"
    run_json "$name-torch-cuda" "$PYTHON" scripts/bench_torch.py --device=cuda --json --embed="$D" --layers="$L" --heads="$H" --batch="$B" --steps="$STEPS" --warmup="$WARMUP" --spawned-at="$(date +%s%3N)"
  done
fi

# Summary table (median ms/step and tokens/s).
node - "$JSONL" <<'JS' | tee -a "$LOG"
const lines = require('node:fs').readFileSync(process.argv[2], 'utf8').trim().split('\n').map((l) => JSON.parse(l));
const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s.length ? s[Math.floor((s.length - 1) / 2)] : NaN; };
for (const { label, result: r } of lines) {
  if (!r.ok) { console.log(`${label}: FAILED ${r.error}`); continue; }
  if (r.results) { console.log(`${label}: ${r.description}; ` + r.results.map((x) => `${x.n}: ${x.gflops.toFixed(0)} GFLOP/s`).join(', ')); continue; }
  const ms = median(r.steps.map((s) => s.totalMs));
  console.log(`${label}: ${ms.toFixed(1)} ms/step, ${(r.shape.batch * r.shape.seqLen / ms * 1e3).toFixed(0)} tokens/s (${r.backendDescription ?? r.device ?? ''})`);
}
JS
log "results: $JSONL"

// Medians, ratios and the printed tables of `npm run bench` (scripts/bench.mjs).

export function median(values) {
  if (!values.length) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/**
 * The runs of one measurement (same config, implementation, backend, threads, devices and
 * attention) over `--rounds`, as one run: its steps are every successful round's steps in order,
 * its peak memory the highest of them, its profile and first-step time the first round's.
 */
export function mergeRounds(runs) {
  const groups = new Map();
  for (const r of runs.filter((x) => x.result?.ok && x.result.steps.length)) {
    const key = [r.config, r.impl, r.backend, r.threads, r.devices, r.attention ?? r.result.attentionKind].join('|');
    const seen = groups.get(key);
    if (!seen) {
      groups.set(key, { ...r, rounds: 1, result: { ...r.result, steps: [...r.result.steps] } });
      continue;
    }
    const a = seen.result;
    const b = r.result;
    const max = (k) => (a[k] == null && b[k] == null ? (a[k] ?? null) : Math.max(a[k] ?? 0, b[k] ?? 0));
    seen.rounds += 1;
    seen.result = {
      ...a,
      steps: [...a.steps, ...b.steps],
      peakRssBytes: max('peakRssBytes'),
      wasmHeapBytes: max('wasmHeapBytes'),
      liveTensorBytesAfterStep: max('liveTensorBytesAfterStep'),
      peakTensorBytes: a.peakTensorBytes ?? b.peakTensorBytes ?? null,
      profile: a.profile ?? b.profile ?? null,
    };
  }
  return [...groups.values()];
}

/**
 * One row per measurement (its `--rounds` merged by `mergeRounds`): median step phases, tokens/s, and taskforge's speed as a ratio to
 * PyTorch on the same config (> 1: taskforge is faster). `cpuRatio` compares CPU time per step
 * instead of wall time: on a machine shared with other jobs it moves much less than wall time,
 * and at one thread an idle machine gives the same number for both.
 */
export function summarize(runs, seqLen) {
  const rows = mergeRounds(runs).map((r) => {
    const s = r.result.steps;
    const med = (key) => median(s.map((x) => x[key]).filter((v) => typeof v === 'number'));
    const batch = r.result.shape.batch;
    const stepMs = med('totalMs');
    return {
      config: r.config,
      impl: r.impl,
      backend: r.backend,
      threads: r.threads,
      devices: r.devices ?? (r.impl === 'taskforge' ? 1 : null),
      // PyTorch's attention formulation (bench_torch.py --attention); null for taskforge.
      attention: r.result.attentionKind ?? null,
      batch,
      steps: s.length,
      rounds: r.rounds,
      stepMs,
      dataMs: med('dataMs'),
      forwardBackwardMs: med('forwardBackwardMs'),
      optimizerMs: med('optimizerMs'),
      cpuMs: med('cpuMs'),
      tokensPerSec: (batch * seqLen * 1000) / stepMs,
      peakRssBytes: r.result.peakRssBytes,
      peakTensorBytes: r.result.peakTensorBytes ?? null,
      wasmHeapBytes: r.result.wasmHeapBytes ?? null,
      firstStepMs: r.result.firstStepMs ?? null,
      synthetic: r.result.synthetic ?? false,
      ddp: ddpMedians(s),
    };
  });
  for (const row of rows.filter((r) => r.impl === 'taskforge')) {
    // Throughput against devices=1 of the same config and backend (2.0 = perfect scaling to 2).
    const one = rows.find(
      (r) => r.impl === 'taskforge' && r.config === row.config && r.backend === row.backend && r.devices === 1,
    );
    row.vsOneDevice = one ? one.stepMs / row.stepMs : null;
    row.vsPytorch = {};
    // Against the fastest PyTorch formulation at each thread count.
    const fastest = new Map();
    for (const ref of rows.filter((r) => r.impl === 'pytorch' && r.config === row.config)) {
      const best = fastest.get(ref.threads);
      if (!best || ref.stepMs < best.stepMs) fastest.set(ref.threads, ref);
    }
    for (const ref of fastest.values()) {
      row.vsPytorch[`${ref.threads}t`] = {
        wall: ref.stepMs / row.stepMs,
        attention: ref.attention,
        // Only meaningful where both use one thread: at two, torch's CPU time counts both cores.
        cpu: ref.threads === row.threads && row.cpuMs && ref.cpuMs ? ref.cpuMs / row.cpuMs : null,
      };
    }
  }
  return rows;
}

/**
 * Medians of a ddp run's per-step timeline (bench-step's `ddp` field): rank 0's shard, its wait
 * for the workers, the gradient average, the slowest worker's busy time, and what rank 0 does
 * alone (the step minus its shard and its wait); null for other runs.
 */
function ddpMedians(steps) {
  const timed = steps.filter((x) => x.ddp);
  if (!timed.length) return null;
  const med = (f) => median(timed.map(f));
  return {
    localMs: med((x) => x.ddp.localMs),
    waitMs: med((x) => x.ddp.waitMs),
    reduceMs: med((x) => x.ddp.reduceMs),
    workerBusyMs: med((x) => Math.max(...x.ddp.workerBusyMs)),
    // Per step, then the median: rank 0's shard and wait swing with whichever core is slow at the
    // moment, so a difference of their medians mixes different steps (and can be far off).
    rank0OnlyMs: med((x) => x.totalMs - x.ddp.localMs - x.ddp.waitMs),
    // The slowest worker's trainingStep alone; busy minus this is receiving, loading the weights and reading out gradients.
    workerStepMs: median(
      timed
        .filter((x) => x.ddp.workerPhasesMs?.every((p) => typeof p.step === 'number'))
        .map((x) => Math.max(...x.ddp.workerPhasesMs.map((p) => p.step))),
    ),
  };
}

const mib = (bytes) => (bytes == null ? '-' : (bytes / 2 ** 20).toFixed(0));
const ms = (v) => (v == null ? '-' : v >= 100 ? v.toFixed(0) : v.toFixed(1));
const ratio = (v) => (v == null ? '-' : `${v.toFixed(2)}x`);

export function table(header, rows) {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i]).length)));
  const line = (cells) => cells.map((c, i) => String(c).padStart(widths[i])).join('  ');
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}

export function formatReport(results) {
  const { machine, summary, runs } = results;
  // The 1-minute averages: the 5- and 15-minute ones still count jobs that ended before the run.
  const busy = Math.max(machine.loadAverageAtStart[0], machine.loadAverageAtEnd[0]) > machine.cores;
  const refThreads = [...new Set(summary.filter((r) => r.impl === 'pytorch').map((r) => r.threads))].sort();
  const header = [
    'config',
    'impl',
    'attention',
    'backend',
    'thr',
    'dev',
    'ms/step',
    'data',
    'fwd+bwd',
    'optim',
    'tokens/s',
    'cpu ms',
    'RSS MiB',
    'tensors MiB',
    'wasm MiB',
    '1st step s',
    'vs 1 dev',
    ...refThreads.flatMap((t) => [`vs pt@${t}t`, ...(t === 1 ? ['cpu vs pt@1t'] : [])]),
  ];
  const rows = summary.map((r) => [
    r.config,
    r.impl,
    r.attention ?? '-',
    r.backend,
    r.threads,
    r.devices ?? '-',
    ms(r.stepMs),
    ms(r.dataMs),
    ms(r.forwardBackwardMs),
    ms(r.optimizerMs),
    r.tokensPerSec.toFixed(0),
    ms(r.cpuMs),
    mib(r.peakRssBytes),
    mib(r.peakTensorBytes),
    mib(r.wasmHeapBytes),
    r.firstStepMs == null ? '-' : (r.firstStepMs / 1000).toFixed(1),
    ratio(r.vsOneDevice),
    ...refThreads.flatMap((t) => [
      ratio(r.vsPytorch?.[`${t}t`]?.wall),
      ...(t === 1 ? [ratio(r.vsPytorch?.[`${t}t`]?.cpu)] : []),
    ]),
  ]);
  const out = [
    `Machine: ${machine.cpuModel}, ${machine.cores} cores, ${machine.memoryGiB} GiB; node ${machine.node}, tfjs ${machine.tfjs}; code ${machine.code}`,
    `Load average: ${machine.loadAverageAtStart.join(' ')} at start, ${machine.loadAverageAtEnd.join(' ')} at end${busy ? ` (1-minute average above ${machine.cores} cores: other jobs shared the CPUs, so wall times are inflated; compare CPU time)` : ''}`,
    `Data: ${results.data.source === 'synthetic' ? `SYNTHETIC token batches (${results.data.why})` : `Cifar10DataModule (${results.data.overrides.join(' ') || 'configured dataset.url'})`}`,
    `PyTorch: ${results.torch.version ? `torch ${results.torch.version} (${results.torch.python})` : `SKIPPED (${results.torch.skipped})`}`,
    ...blasLines(results.torch.blasLibraries),
    ...mallocLines(results.torch),
    ...(results.staleBuild?.length
      ? [
          `Build: STALE for ${results.staleBuild.join(', ')} (their src changed after the last build; these numbers measure the old build)`,
        ]
      : []),
    `BLAS/OpenMP env: ${
      Object.entries(machine.blasEnv)
        .map(([k, v]) => `${k}=${v}`)
        .join(' ') || 'none set'
    }`,
    ...coreCheckLines(results.coreChecks),
    '',
    'Medians over the timed steps of every round; ms per optimizer step. dev = taskforge devices (ddp worker threads incl. the main one; thr = cores used). vs 1 dev = throughput / devices=1. vs pt@Nt = taskforge tokens/s / PyTorch tokens/s at N threads, against the fastest PyTorch attention formulation timed (>1: taskforge faster).',
    table(header, rows),
  ];
  const ddpRows = summary.filter((r) => r.ddp);
  if (ddpRows.length) {
    out.push(
      '',
      'Data-parallel timeline (medians, ms per step): rank 0 runs its own shard, then waits for the workers; outside both it loads the batch, averages the gradients and updates the weights while the workers idle.',
      table(
        [
          'config',
          'dev',
          'ms/step',
          'rank 0 shard',
          'rank 0 waits',
          'slowest worker busy',
          'its step',
          'grad average',
          'rank 0 only',
        ],
        ddpRows.map((r) => [
          r.config,
          r.devices,
          ms(r.stepMs),
          ms(r.ddp.localMs),
          ms(r.ddp.waitMs),
          ms(r.ddp.workerBusyMs),
          ms(r.ddp.workerStepMs),
          ms(r.ddp.reduceMs),
          ms(r.ddp.rank0OnlyMs),
        ]),
      ),
    );
  }
  for (const r of runs.filter((x) => !x.result?.ok))
    out.push(`FAILED ${r.config}/${r.impl}/${r.backend}@${r.threads}t: ${r.result?.error}`);
  const profiledRuns = runs.filter((r) => r.result?.ok && r.result.profile);
  const profiled = profiledRuns.find((r) => r.config === 'default' && r.backend === 'wasm') ?? profiledRuns[0];
  if (profiled) out.push('', formatProfile(profiled));
  if (results.maxBatch) {
    out.push('', 'Largest batch that trains on wasm (doubling from the config batch):');
    for (const [name, m] of Object.entries(results.maxBatch)) {
      out.push(
        `  ${name}: ${m.largest ? `${m.largest.batch} (wasm heap ${mib(m.largest.wasmHeapBytes)} MiB)` : 'none'}${m.failure ? `; ${m.failure.batch} failed: ${m.failure.error}` : ''}`,
      );
    }
  }
  return out.join('\n');
}

export function formatProfile(run, top = 10) {
  const { profile } = run.result;
  const rows = profile.kernels
    .slice(0, top)
    .map((k) => [k.name, ms(k.ms), `${((100 * k.ms) / profile.kernelMs).toFixed(1)}%`, k.calls]);
  return [
    `Where the time goes: tf.profile of one ${run.config}/${run.backend} step (${ms(profile.step.totalMs)} ms wall, ${ms(profile.kernelMs)} ms in kernels, peak tensors ${mib(profile.peakBytes)} MiB)`,
    table(['kernel', 'ms', 'share', 'calls'], rows),
  ].join('\n');
}

/** Below this share of the fastest core's speed, a per-core check calls the cores uneven. */
export const UNEVEN_CORES = 0.85;

/**
 * The per-core speed checks (bench.mjs coreSpeedCheck): per round, each core's GFLOP/s and the
 * slowest against the fastest, and a warning when a round's cores were uneven.
 */
function coreCheckLines(checks) {
  if (!checks?.length) return [];
  const skipped = checks.find((c) => c.skipped);
  if (skipped) return [`Per-core speed check: skipped (${skipped.skipped})`];
  const parts = checks.map((c) => {
    const speeds = c.cpus.map((cpu, i) => `cpu${cpu} ${c.gflops[i] == null ? 'failed' : c.gflops[i].toFixed(1)}`);
    const ok = c.gflops.filter((g) => g != null);
    const share = ok.length === c.gflops.length ? Math.min(...ok) / Math.max(...ok) : null;
    const flag = share != null && share < UNEVEN_CORES ? ' UNEVEN' : '';
    return `round ${c.round}: ${speeds.join(', ')} (slowest ${share == null ? '-' : `${share.toFixed(2)}x`} of fastest)${flag}`;
  });
  return [
    `Per-core speed check (single-thread wasm matMul 512^3, pinned to each core in turn before each round, GFLOP/s): ${parts.join('; ')}`,
    ...(parts.some((p) => p.endsWith('UNEVEN'))
      ? [
          `WARNING: in an UNEVEN round one core ran below ${UNEVEN_CORES}x of the fastest: rows of that round that use every core (ddp, PyTorch threads) wait for the slow one, and a 1-core row is fast or slow depending on where it ran; compare rounds, or rerun when the cores are even.`,
        ]
      : []),
  ];
}

/** Which malloc torch ran on, and a warning for glibc's (see JEMALLOC_CONF in bench.mjs). */
function mallocLines(torch) {
  if (!torch?.allocator) return [];
  return [
    `PyTorch malloc: ${torch.allocator}${torch.mallocConf ? ` (MALLOC_CONF=${torch.mallocConf})` : ''}`,
    ...(torch.allocator === 'glibc malloc'
      ? [
          'WARNING: PyTorch ran on glibc malloc, which returns large tensors to the kernel and page-faults them in again every step: ' +
            'on VMs that is several times slower than its fastest; install libjemalloc2 and rerun before comparing with PyTorch.',
        ]
      : []),
  ];
}

/**
 * Which BLAS torch ran on, and a warning when it is the unoptimised reference BLAS (Debian's
 * /usr/lib/x86_64-linux-gnu/blas/libblas.so.3): then PyTorch's matrix products are several times
 * slower than its fastest, and the "vs pt" columns flatter taskforge.
 */
function blasLines(libraries) {
  if (!libraries?.length) return [];
  const reference =
    libraries.some((p) => /\/blas\/libblas\.so/.test(p)) && !libraries.some((p) => /openblas|mkl/i.test(p));
  return [
    `PyTorch BLAS: ${libraries.join(', ')}`,
    ...(reference
      ? [
          'WARNING: PyTorch ran on the reference BLAS (netlib, unoptimised), not its fastest: install an optimised one ' +
            '(apt-get install libopenblas0-pthread) and rerun before comparing with PyTorch.',
        ]
      : []),
  ];
}

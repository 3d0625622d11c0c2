// The arithmetic behind `npm run bench`'s table (scripts/bench-report.mjs).
import { describe, expect, it } from 'vitest';
import { formatReport, median, mergeRounds, summarize, table } from '../scripts/bench-report.mjs';

const step = (totalMs, cpuMs = totalMs) => ({
  dataMs: 1,
  forwardBackwardMs: totalMs - 2,
  optimizerMs: 1,
  totalMs,
  cpuMs,
  loss: 2.7,
});
const run = (impl, threads, totals, extra = {}) => ({
  config: 'default',
  impl,
  backend: impl === 'pytorch' ? 'cpu' : 'wasm',
  threads,
  result: {
    ok: true,
    shape: { batch: 16 },
    steps: totals.map((t) => step(t, t * (impl === 'pytorch' ? threads : 1))),
    peakRssBytes: 2 ** 30,
    firstStepMs: 5000,
    ...extra,
  },
});

const MACHINE = {
  cpuModel: 'Test CPU',
  cores: 2,
  memoryGiB: 8,
  node: 'v20',
  tfjs: '4.22.0',
  code: 'abc123',
  blasEnv: {},
  loadAverageAtStart: [1, 1, 1],
  loadAverageAtEnd: [1, 1, 1],
};

describe('median', () => {
  it('takes the middle value, or the mean of the two middle values', () => {
    expect(median([5, 1, 3])).toBe(3);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(median([])).toBeNull();
  });
});

describe('summarize', () => {
  const runs = [
    run('taskforge', 1, [2000, 9000, 2200]), // one slow outlier step: the median ignores it
    run('pytorch', 1, [4000, 4400, 4200]),
    run('pytorch', 2, [2000, 2100, 2200]),
    { config: 'large', impl: 'taskforge', backend: 'wasm', threads: 1, result: { ok: false, error: 'Aborted(OOM)' } },
  ];
  const rows = summarize(runs, 1024);

  it('skips failed runs and reports medians and tokens per second', () => {
    expect(rows.map((r) => `${r.impl}@${r.threads}`)).toEqual(['taskforge@1', 'pytorch@1', 'pytorch@2']);
    expect(rows[0].stepMs).toBe(2200);
    expect(rows[0].tokensPerSec).toBeCloseTo((16 * 1024) / 2.2, 6);
  });

  it('gives taskforge speed relative to PyTorch at each thread count, CPU time only at equal threads', () => {
    const { vsPytorch } = rows[0];
    expect(vsPytorch['1t'].wall).toBeCloseTo(4200 / 2200, 9);
    expect(vsPytorch['1t'].cpu).toBeCloseTo(4200 / 2200, 9);
    expect(vsPytorch['2t'].wall).toBeCloseTo(2100 / 2200, 9);
    expect(vsPytorch['2t'].cpu).toBeNull();
    expect(rows[1].vsPytorch).toBeUndefined();
  });

  it('prints the table, the failures and the data source', () => {
    const text = formatReport({
      machine: { ...MACHINE, code: 'abc123 (dirty)', loadAverageAtEnd: [2, 2, 2] },
      data: { source: 'synthetic', why: 'no archive' },
      torch: { version: '1.13', python: 'python3' },
      summary: rows,
      runs,
    });
    expect(text).toContain('SYNTHETIC token batches (no archive)');
    expect(text).toContain('FAILED large/taskforge/wasm@1t: Aborted(OOM)');
    expect(text).toMatch(/default\s+taskforge\s+-\s+wasm\s+1\s+1\s+2200\b.*\b1\.00x\s+1\.91x\s+1\.91x\s+0\.95x/);
    expect(text).not.toContain('PyTorch BLAS');
  });

  it('names the BLAS torch ran on, and warns when it is the unoptimised reference BLAS', () => {
    const report = (blasLibraries: string[]) =>
      formatReport({
        machine: MACHINE,
        data: { source: 'synthetic', why: 'chosen' },
        torch: { version: '1.13', python: 'python3', blasLibraries },
        summary: rows,
        runs,
      });
    const reference = report(['/usr/lib/x86_64-linux-gnu/blas/libblas.so.3.11.0']);
    expect(reference).toContain('PyTorch BLAS: /usr/lib/x86_64-linux-gnu/blas/libblas.so.3.11.0');
    expect(reference).toContain('WARNING: PyTorch ran on the reference BLAS (netlib, unoptimised)');
    const openblas = report(['/usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3']);
    expect(openblas).toContain('PyTorch BLAS: /usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3');
    expect(openblas).not.toContain('WARNING');
  });
});

describe('PyTorch formulations and malloc', () => {
  it('compares against the fastest PyTorch attention formulation at each thread count', () => {
    const rows = summarize(
      [
        run('taskforge', 2, [1000, 1000, 1000]),
        run('pytorch', 2, [3000, 3000, 3000], { attentionKind: 'matmul' }),
        run('pytorch', 2, [1600, 1600, 1600], { attentionKind: 'mha' }),
      ],
      1024,
    );
    expect(rows[0].vsPytorch['2t']).toMatchObject({ wall: 1.6, attention: 'mha' });
    expect(rows.filter((r) => r.impl === 'pytorch').map((r) => r.attention)).toEqual(['matmul', 'mha']);
  });

  it('names the malloc torch ran on, and warns on glibc malloc', () => {
    const report = (allocator: string, mallocConf: string | null) =>
      formatReport({
        machine: { ...MACHINE, loadAverageAtStart: [0, 0, 0], loadAverageAtEnd: [0, 0, 0] },
        data: { source: 'synthetic', why: 'chosen' },
        torch: { version: '1.13', python: 'python3', allocator, mallocConf },
        summary: [],
        runs: [],
      });
    const jemalloc = report('/usr/lib/x86_64-linux-gnu/libjemalloc.so.2', 'dirty_decay_ms:-1,muzzy_decay_ms:-1');
    expect(jemalloc).toContain(
      'PyTorch malloc: /usr/lib/x86_64-linux-gnu/libjemalloc.so.2 (MALLOC_CONF=dirty_decay_ms:-1',
    );
    expect(jemalloc).not.toContain('WARNING');
    expect(report('glibc malloc', null)).toContain('WARNING: PyTorch ran on glibc malloc');
  });
});

describe('devices rows', () => {
  it('gives each ddp row its throughput against devices=1 and compares it with PyTorch at equal cores', () => {
    const rows = summarize(
      [
        run('taskforge', 1, [2000, 2000, 2000]),
        { ...run('taskforge', 2, [1100, 1100, 1100]), devices: 2 },
        run('pytorch', 2, [2200, 2200, 2200]),
      ],
      1024,
    );
    const two = rows.find((r) => r.devices === 2);
    expect(rows[0].devices).toBe(1);
    expect(rows[0].vsOneDevice).toBe(1);
    expect(two.vsOneDevice).toBeCloseTo(2000 / 1100, 9);
    expect(two.vsPytorch['2t'].wall).toBeCloseTo(2200 / 1100, 9);
    expect(rows.find((r) => r.impl === 'pytorch').devices).toBeNull();
  });
});

describe('table', () => {
  it('right-aligns every column to its widest cell', () => {
    expect(table(['a', 'bb'], [['xyz', 1]]).split('\n')).toEqual(['  a  bb', '---  --', 'xyz   1']);
  });
});

describe('data-parallel timeline', () => {
  it('prints medians of rank 0 shard, wait, gradient average and the slowest worker, and what only rank 0 does', () => {
    const ddpStep = (totalMs: number, localMs: number, waitMs: number, workers: number[]) => ({
      ...step(totalMs),
      ddp: {
        localMs,
        waitMs,
        reduceMs: 5,
        workerBusyMs: workers,
        workerPhasesMs: workers.map((busy) => ({ receive: 1, loadWeights: 1, step: busy - 4, readGrads: 2 })),
      },
    });
    const ddpRun = {
      config: 'default',
      impl: 'taskforge',
      backend: 'wasm',
      threads: 2,
      devices: 2,
      result: {
        ok: true,
        shape: { batch: 16 },
        steps: [
          ddpStep(1000, 800, 100, [850, 10]),
          ddpStep(1100, 820, 140, [900, 10]),
          ddpStep(1050, 810, 120, [880, 10]),
          // The slow core moved to rank 0 in this step: its shard is long, its wait short.
          ddpStep(1200, 1150, 0, [820, 10]),
          ddpStep(1300, 1240, 10, [810, 10]),
        ],
      },
    };
    const rows = summarize([ddpRun], 1024);
    expect(rows[0].ddp).toEqual({
      localMs: 820,
      waitMs: 100,
      reduceMs: 5,
      workerBusyMs: 850,
      workerStepMs: 846,
      rank0OnlyMs: 100,
    });
    const text = formatReport({
      machine: { ...MACHINE, loadAverageAtStart: [0, 0, 0], loadAverageAtEnd: [0, 0, 0] },
      data: { source: 'synthetic', why: 'chosen' },
      torch: { skipped: 'disabled' },
      summary: rows,
      runs: [ddpRun],
    });
    // Per step 100, 140, 120, 50, 50 ms on rank 0 alone: median 100. The difference of the medians
    // (1100 − 820 − 100 = 180) would mix steps.
    expect(text).toMatch(/default\s+2\s+1100\s+820\s+100\s+850\s+846\s+5\.0\s+100/);
  });
});

describe('rounds', () => {
  const run = (round: number, totals: number[], extra: Record<string, unknown> = {}) => ({
    config: 'default',
    impl: 'taskforge',
    backend: 'wasm',
    threads: 1,
    devices: 1,
    round,
    result: { ok: true, shape: { batch: 16 }, steps: totals.map(step), peakRssBytes: 100 * round, ...extra },
  });

  it('merges the rounds of one measurement: the median is over every round, peak memory the highest', () => {
    const runs = [run(1, [1000, 1010, 1020], { profile: { kernels: [] } }), run(2, [1200, 1210, 1220])];
    const merged = mergeRounds(runs);
    expect(merged).toHaveLength(1);
    expect(merged[0].rounds).toBe(2);
    expect(merged[0].result.steps.map((x: { totalMs: number }) => x.totalMs)).toEqual([
      1000, 1010, 1020, 1200, 1210, 1220,
    ]);
    expect(merged[0].result.peakRssBytes).toBe(200);
    expect(merged[0].result.profile).toEqual({ kernels: [] });
    const [row] = summarize(runs, 1024);
    expect(row.stepMs).toBe(1110);
    expect(row.steps).toBe(6);
  });

  it('keeps different measurements apart and drops failed rounds', () => {
    const two = { ...run(1, [600]), devices: 2, threads: 2 };
    const failed = { ...run(2, []), result: { ok: false, error: 'boom' } };
    const merged = mergeRounds([run(1, [1000]), two, failed]);
    expect(merged.map((r: { devices: number; rounds: number }) => [r.devices, r.rounds])).toEqual([
      [1, 1],
      [2, 1],
    ]);
  });
});

describe('load warning', () => {
  const report = (start: number[], end: number[]) =>
    formatReport({
      machine: { ...MACHINE, loadAverageAtStart: start, loadAverageAtEnd: end },
      data: { source: 'synthetic', why: 'chosen' },
      torch: { skipped: 'disabled' },
      summary: [],
      runs: [],
    });

  it('warns when the 1-minute load average passed the cores, not for load that ended before the run', () => {
    expect(report([1.4, 3.2, 4.1], [1.9, 2.5, 3.6])).not.toContain('other jobs shared the CPUs');
    expect(report([1.4, 3.2, 4.1], [2.6, 2.5, 3.6])).toContain(
      '(1-minute average above 2 cores: other jobs shared the CPUs',
    );
  });
});

describe('per-core speed check', () => {
  const base = {
    machine: MACHINE,
    data: { source: 'archive', overrides: [] },
    torch: { skipped: 'disabled' },
    summary: summarize([run('taskforge', 1, [2000])], 1024),
    runs: [run('taskforge', 1, [2000])],
  };

  it('gives each round every core speed and the slowest against the fastest, and warns on uneven cores', () => {
    const report = formatReport({
      ...base,
      coreChecks: [
        { round: 1, cpus: [0, 1], gflops: [33, 32.5] },
        { round: 2, cpus: [0, 1], gflops: [33.1, 24.3] },
      ],
    });
    expect(report).toContain('round 1: cpu0 33.0, cpu1 32.5 (slowest 0.98x of fastest);');
    expect(report).toContain('round 2: cpu0 33.1, cpu1 24.3 (slowest 0.73x of fastest) UNEVEN');
    expect(report).toMatch(/WARNING: in an UNEVEN round one core ran below 0.85x of the fastest/);
  });

  it('prints no warning when the cores are even, says why a check was skipped, and nothing without checks', () => {
    const even = formatReport({ ...base, coreChecks: [{ round: 1, cpus: [0, 1], gflops: [33, 31] }] });
    expect(even).toContain('Per-core speed check');
    expect(even).not.toContain('UNEVEN');
    const skipped = formatReport({ ...base, coreChecks: [{ round: 1, skipped: 'taskset (util-linux) not found' }] });
    expect(skipped).toContain('Per-core speed check: skipped (taskset (util-linux) not found)');
    expect(formatReport(base)).not.toContain('Per-core speed check');
  });

  it('names a core whose check failed instead of a ratio', () => {
    const report = formatReport({ ...base, coreChecks: [{ round: 1, cpus: [0, 1], gflops: [null, 27] }] });
    expect(report).toContain('round 1: cpu0 failed, cpu1 27.0 (slowest - of fastest)');
  });
});

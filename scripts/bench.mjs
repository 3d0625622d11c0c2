// `npm run bench`: taskforge's iGPT training step vs the same step in PyTorch, on this machine.
// Each measurement runs in its own process (scripts/bench-step.mjs, scripts/bench_torch.py);
// see docs/benchmarks.md for what is measured and the latest numbers. `--help` lists options.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, rename, writeFile } from 'node:fs/promises';
import { cpus, freemem, loadavg, totalmem } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { formatReport, summarize } from './bench-report.mjs';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const PACKAGES = ['core', 'data-cifar', 'backbone-gpt2', 'task-igpt'];
const CONFIGS = {
  default: { embed: 16, layers: 8, heads: 2, batch: 16 },
  large: { embed: 128, layers: 4, heads: 4, batch: 8 },
};
const SEQ_LEN = 1024;
const PALETTE = 16;
// The offline archive built by ../shared/datasets/build-cifar10.sh (see the README).
const OFFLINE_ARCHIVE = '.data/cifar10/cifar-10-binary.tar.gz';
const OFFLINE_MD5 = '767e5566dd24ed2636f7f84a767e4098';
const APT_COMMAND = 'apt-get update && apt-get install -y python3-torch libopenblas0-pthread libjemalloc2';
// PyTorch's fastest CPU set-up also swaps glibc's malloc for jemalloc (PyTorch's CPU performance
// tuning guide). glibc hands every large tensor's pages back to the kernel on free, so each step
// page-faults its activations in again: on this VM a fresh 128 MiB tensor costs ~270 ms of faults,
// and the default-config step took 12.8 s instead of 1.6 s. jemalloc keeps freed pages with
// purging off (dirty/muzzy decay -1, jemalloc's TUNING.md); its own default purges big ones at once.
const JEMALLOC_CONF = 'dirty_decay_ms:-1,muzzy_decay_ms:-1';
const CHILD_TIMEOUT_MS = 20 * 60_000;

const HELP = `Usage: npm run bench -- [options]

Times taskforge's Image GPT training step (real Cifar10DataModule, Gpt2, ImageGptTask, Adam,
built through the config system like \`taskforge train\`) and the same model in PyTorch on the CPU.

  --steps=N            timed steps per measurement process (default 5)
  --rounds=N           measure everything N times over, in turn (default 2): each row's median is over
                       all its rounds' steps, so a slow spell on the machine hits every row alike
  --configs=LIST       default,large (default both): default = embed 16, 8 layers, 2 heads, batch 16;
                       large = embed 128, 4 layers, 4 heads, batch 8; both 1024 tokens, palette 16
  --backends=LIST      TF.js backends: wasm (default), cpu (one step, which takes minutes)
  --devices=LIST       taskforge devices (trainer.strategy=ddp, one worker thread per device beyond the
                       first; default 1,2); wasm only, the cpu backend always runs on 1
  --torch-threads=LIST PyTorch thread counts (default 1,2); --no-torch skips the reference
  --python=PATH        the Python with torch (default: the first of python3, /usr/bin/python3 that has it)
  --torch-attention=LIST  PyTorch attention formulations, each timed, the fastest compared (default auto,matmul):
                       auto = F.scaled_dot_product_attention on torch 2.x, nn.MultiheadAttention on 1.x;
                       mha; matmul = minGPT's masked matmul + softmax
  --torch-malloc=WHICH jemalloc (default: libjemalloc.so.2 preloaded with purging off, when installed) or glibc
  --install-torch      if torch is missing, run: ${APT_COMMAND} (needs root)
  --data=SOURCE        auto (default): ${OFFLINE_ARCHIVE} if present, else the configured dataset.url;
                       synthetic: random tokens; or a path/URL of cifar-10-binary.tar.gz
  --data-md5=MD5       md5 for --data=<path/URL> (default: null, unchecked)
  --max-batch          also find the largest batch that trains on wasm (doubling, one process each)
  --no-profile         do not run the last warm-up step under tf.profile (per-kernel times, in-step peak memory)
  --no-core-check      skip the per-core speed check before each round (a single-thread wasm matMul pinned
                       to each core in turn with taskset: on a VM one vCPU can run a third slower for minutes)
  --out=FILE           also write the JSON results here (always: bench-results/<timestamp>.json)
`;

let opts;
try {
  ({ values: opts } = parseArgs({
    options: {
      steps: { type: 'string', default: '5' },
      rounds: { type: 'string', default: '2' },
      configs: { type: 'string', default: 'default,large' },
      backends: { type: 'string', default: 'wasm' },
      devices: { type: 'string', default: '1,2' },
      'torch-threads': { type: 'string', default: '1,2' },
      'no-torch': { type: 'boolean', default: false },
      python: { type: 'string' },
      'torch-attention': { type: 'string', default: 'auto,matmul' },
      'torch-malloc': { type: 'string', default: 'jemalloc' },
      'install-torch': { type: 'boolean', default: false },
      data: { type: 'string', default: 'auto' },
      'data-md5': { type: 'string' },
      'max-batch': { type: 'boolean', default: false },
      'no-profile': { type: 'boolean', default: false },
      'no-core-check': { type: 'boolean', default: false },
      out: { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  }));
} catch (error) {
  process.stderr.write(`bench: ${error.message}. See \`npm run bench -- --help\`.\n`);
  process.exit(2);
}

if (opts.help) {
  process.stdout.write(HELP);
  process.exit(0);
}

const fail = (message) => {
  process.stderr.write(`bench: ${message}\n`);
  process.exit(2);
};
const positiveInt = (name) => {
  const n = Number(opts[name]);
  if (!Number.isInteger(n) || n < 1) fail(`--${name}=${opts[name]} must be a positive integer, e.g. --${name}=5.`);
  return n;
};
const list = (name, allowed) => {
  const items = opts[name]
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  const bad = items.filter((i) => !allowed.includes(i));
  if (bad.length || !items.length)
    fail(`--${name}=${opts[name]}: expected a comma-separated list of ${allowed.join(', ')}.`);
  return items;
};

const steps = positiveInt('steps');
const rounds = positiveInt('rounds');
const configs = list('configs', Object.keys(CONFIGS));
const backends = list('backends', ['wasm', 'cpu']);
const torchThreads = opts['no-torch']
  ? []
  : opts['torch-threads'].split(',').map((t) => {
      const n = Number(t);
      if (!Number.isInteger(n) || n < 1)
        fail(`--torch-threads=${opts['torch-threads']}: expected positive integers, e.g. 1,2.`);
      return n;
    });
const deviceCounts = opts.devices.split(',').map((t) => {
  const n = Number(t);
  if (!Number.isInteger(n) || n < 1) fail(`--devices=${opts.devices}: expected positive integers, e.g. 1,2.`);
  return n;
});
const torchAttentions = list('torch-attention', ['auto', 'mha', 'matmul']);
const torchMalloc = list('torch-malloc', ['jemalloc', 'glibc'])[0];
const log = (line) => process.stderr.write(`${line}\n`);

const staleBuild = await ensureBuilt();
const started = new Date();
const machine = describeMachine();
log(
  `bench: ${machine.cpuModel} (${machine.cores} cores), load average ${machine.loadAverageAtStart.join(' ')}; code ${machine.code}`,
);
const data = await prepareData();
const python = torchThreads.length ? await findTorch() : { skipped: 'disabled with --no-torch' };
const mallocEnv = python.path ? torchMallocEnv() : {};

const runs = [];
const coreChecks = [];
for (let round = 1; round <= rounds; round++) {
  if (!opts['no-core-check']) coreChecks.push({ round, ...(await coreSpeedCheck()) });
  for (const name of configs) {
    const shape = CONFIGS[name];
    // TF.js and PyTorch alternate config by config, so machine load (shared with other jobs) hits both alike.
    for (const backend of backends) {
      const cpu = backend === 'cpu';
      // The last warm-up step is profiled (true in-step peak memory, per-kernel times); on wasm the
      // first step also initialises kernels, so it gets a plain warm-up step before that.
      // The cpu backend has nothing to warm up and takes minutes per step (its Softmax kernel alone
      // is slower than a whole wasm step), so it gets one plain timed step.
      const warmup = cpu ? 0 : 2;
      const n = cpu ? 1 : steps;
      // Data-parallel rows (devices > 1: one core each) only on wasm; only one device is profiled.
      for (const devices of cpu ? [1] : deviceCounts) {
        const profile = round === 1 && !cpu && !opts['no-profile'] && devices === Math.min(...deviceCounts);
        // The cpu backend's one step takes minutes: it is measured in the first round only.
        if (cpu && round > 1) continue;
        runs.push(
          await measure({ config: name, impl: 'taskforge', backend, threads: devices, devices, round }, 'node', [
            join(ROOT, 'scripts/bench-step.mjs'),
            `--backend=${backend}`,
            ...shapeArgs(shape),
            `--steps=${n}`,
            `--warmup=${warmup}`,
            `--devices=${devices}`,
            ...data.childArgs,
            ...(profile ? ['--profile'] : []),
          ]),
        );
      }
    }
    for (const threads of python.path ? torchThreads : []) {
      for (const attention of torchAttentions) {
        runs.push(
          await measure(
            { config: name, impl: 'pytorch', backend: 'cpu', threads, attention, round },
            python.path,
            [
              join(ROOT, 'scripts/bench_torch.py'),
              '--json',
              `--threads=${threads}`,
              `--steps=${steps}`,
              '--warmup=1',
              `--attention=${attention}`,
              `--embed=${shape.embed}`,
              `--layers=${shape.layers}`,
              `--heads=${shape.heads}`,
              `--batch=${shape.batch}`,
              `--seq-len=${SEQ_LEN}`,
              `--vocab=${PALETTE}`,
            ],
            { ...threadEnv(threads), ...mallocEnv },
          ),
        );
      }
    }
  }
}
const maxBatch = opts['max-batch'] ? await findMaxBatches() : undefined;

machine.loadAverageAtEnd = loadavg().map((l) => Number(l.toFixed(2)));
const summary = summarize(runs, SEQ_LEN);
const results = {
  startedAt: started.toISOString(),
  command: `npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`,
  machine,
  staleBuild,
  data: data.description,
  torch: python.path
    ? {
        python: python.path,
        version: runs.find((r) => r.result?.torch)?.result.torch ?? null,
        blasLibraries: runs.find((r) => r.result?.blasLibraries)?.result.blasLibraries ?? [],
        allocator: runs.find((r) => r.result?.allocator)?.result.allocator ?? null,
        mallocConf: runs.find((r) => r.result?.allocator)?.result.mallocConf ?? null,
      }
    : { skipped: python.skipped },
  summary,
  coreChecks,
  maxBatch,
  runs,
};
process.stdout.write(`${formatReport(results)}\n`);
const stamp = started.toISOString().replace(/[:.]/g, '-');
for (const file of [join(ROOT, 'bench-results', `${stamp}.json`), ...(opts.out ? [resolve(opts.out)] : [])]) {
  await writeJsonAtomic(file, results);
  log(`bench: wrote ${file}`);
}

// ----------------------------------------------------------------------------------------------

function shapeArgs(shape) {
  return [
    `--embed=${shape.embed}`,
    `--layers=${shape.layers}`,
    `--heads=${shape.heads}`,
    `--batch=${shape.batch}`,
    `--palette=${PALETTE}`,
  ];
}

/** BLAS and OpenMP pools follow torch's thread count, so "N threads" means N everywhere. */
function threadEnv(threads) {
  return { OMP_NUM_THREADS: String(threads), OPENBLAS_NUM_THREADS: String(threads), MKL_NUM_THREADS: String(threads) };
}

/**
 * How fast each core is right now: a single-thread wasm matMul process (512³, 150 products, about
 * 1.5 s) pinned to each allowed core in turn (taskset). On a VM a vCPU can run a third slower than
 * its sibling for minutes (a neighbour on the same physical core, or a lower clock): then every row
 * that uses both cores (ddp devices=2, PyTorch at 2 threads) waits for the slow one, while rows on
 * one core may or may not land on it. GFLOP/s per core; null for a core whose process failed.
 */
async function coreSpeedCheck() {
  const cpus = allowedCpus().slice(0, 16);
  if (cpus.length < 2) return { skipped: 'fewer than 2 cores' };
  if (spawnSync('taskset', ['-c', String(cpus[0]), 'true']).status !== 0)
    return { skipped: 'taskset (util-linux) not found' };
  log(`bench: per-core speed check (cores ${cpus.join(', ')}) ...`);
  const gflops = [];
  for (const cpu of cpus) {
    const { stdout } = await run('taskset', [
      '-c',
      String(cpu),
      'node',
      join(ROOT, 'scripts/bench-matmul.mjs'),
      '--backend=wasm',
      '--sizes=512',
      '--reps=150',
    ]);
    try {
      gflops.push(JSON.parse(stdout.trim().split('\n').pop()).results[0].gflops);
    } catch {
      gflops.push(null);
    }
  }
  return { cpus, gflops };
}

/** The CPUs this process may run on (Cpus_allowed_list of /proc/self/status), else 0..cores-1. */
function allowedCpus() {
  try {
    const line = readFileSync('/proc/self/status', 'utf8').match(/^Cpus_allowed_list:\s*(\S+)/m)?.[1];
    if (line) {
      return line.split(',').flatMap((part) => {
        const [from, to = from] = part.split('-').map(Number);
        return Array.from({ length: to - from + 1 }, (_, i) => from + i);
      });
    }
  } catch {
    // Not Linux: fall through.
  }
  return Array.from({ length: cpus().length }, (_, i) => i);
}

/** Runs one measurement process; its last stdout line is its JSON result. */
async function measure(label, command, args, env = {}) {
  const name = `${label.config}/${label.impl}/${label.backend}${label.impl === 'pytorch' ? `@${label.threads}t/${label.attention}` : label.devices ? `@${label.devices}dev` : ''}${rounds > 1 ? ` (round ${label.round}/${rounds})` : ''}`;
  log(`bench: ${name} ...`);
  const t0 = Date.now();
  const { code, stdout, stderr } = await run(command, [...args, `--spawned-at=${Date.now()}`], env);
  const last = stdout.trim().split('\n').pop() ?? '';
  let result;
  try {
    result = JSON.parse(last);
  } catch {
    result = {
      ok: false,
      error: `exit code ${code}; no result. Last output:\n${(stderr || stdout).trim().split('\n').slice(-8).join('\n')}`,
    };
  }
  if (!result.ok) log(`bench: ${name} failed: ${result.error}`);
  else log(`bench: ${name} done in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
  return { ...label, result };
}

function run(command, args, env = {}) {
  return new Promise((resolvePromise) => {
    const child = spawn(command, args, {
      cwd: ROOT,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => {
      stdout += d;
    });
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), CHILD_TIMEOUT_MS);
    child.on('error', (error) => {
      stderr += String(error);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolvePromise({ code: code ?? signal, stdout, stderr });
    });
  });
}

/**
 * The benchmark imports the built packages: build them when a dist is missing, warn when a
 * package's source changed after its build (core's check: newer and not the text the build
 * compiled, so a checkout that only touched a file is no change).
 */
async function ensureBuilt() {
  const missing = PACKAGES.filter((p) => !existsSync(join(ROOT, 'packages', p, 'dist', 'index.js')));
  if (missing.length) {
    log(`bench: ${missing.join(', ')} not built; running \`npx nx run-many -t build\` first`);
    const built = spawnSync('npx', ['nx', 'run-many', '-t', 'build'], { cwd: ROOT, stdio: 'inherit' });
    if (built.status !== 0)
      fail(
        'the build failed (see above); fix it, or build with `npx nx run-many -t build`, then rerun `npm run bench`.',
      );
  }
  const { sourceChangedSinceBuild } = await import('@taskforge/core');
  const stale = PACKAGES.filter((p) =>
    sourceChangedSinceBuild(join(ROOT, 'packages', p, 'src'), join(ROOT, 'packages', p, 'dist')),
  );
  if (stale.length)
    log(
      `bench: warning: ${stale.join(', ')} changed since the last build; these numbers measure the old build (run \`npx nx run-many -t build\`).`,
    );
  return stale;
}

function describeMachine() {
  const cpuModel = cpus()[0]?.model ?? 'unknown CPU';
  const git = (args) => spawnSync('git', args, { cwd: ROOT, encoding: 'utf8' }).stdout?.trim() ?? '';
  const rev = git(['rev-parse', '--short', 'HEAD']) || 'unknown';
  // Untracked sources count: a new file under packages/ changes what is measured as much as an edit.
  const dirty = git(['status', '--porcelain', '--', 'packages']) !== '';
  const envVars = Object.fromEntries(Object.entries(process.env).filter(([k]) => /BLAS|^OMP_|^MKL_/.test(k)));
  return {
    cpuModel,
    cores: cpus().length,
    memoryGiB: Number((totalmem() / 2 ** 30).toFixed(1)),
    freeMemoryGiB: Number((freemem() / 2 ** 30).toFixed(1)),
    node: process.version,
    tfjs: readVersion('@tensorflow/tfjs'),
    tfjsBackendWasm: readVersion('@tensorflow/tfjs-backend-wasm'),
    code: `${rev}${dirty ? ' (dirty)' : ''}`,
    blasEnv: envVars,
    loadAverageAtStart: loadavg().map((l) => Number(l.toFixed(2))),
  };
}

function readVersion(pkg) {
  const file = join(ROOT, 'node_modules', pkg, 'package.json');
  return existsSync(file) ? JSON.parse(readFileSync(file, 'utf8')).version : null;
}

/** Picks the data source once, and prepares (downloads/tokenises) it outside the timed runs. */
async function prepareData() {
  if (opts.data === 'synthetic') return synthetic('chosen with --data=synthetic');
  let overrides;
  if (opts.data !== 'auto') {
    // Checked here: the data module drops its cache marker before it looks at a new source.
    const local = opts.data.startsWith('file://')
      ? fileURLToPath(opts.data)
      : /^[a-z]+:\/\//i.test(opts.data)
        ? undefined
        : resolve(opts.data);
    if (local && !existsSync(local))
      fail(
        `--data=${opts.data}: ${local} does not exist; pass the path of cifar-10-binary.tar.gz, an http(s):// URL, auto or synthetic.`,
      );
    overrides = [`dataset.url=${local ?? opts.data}`, `dataset.md5=${opts['data-md5'] ?? 'null'}`];
  } else if (existsSync(join(ROOT, OFFLINE_ARCHIVE)))
    overrides = [`dataset.url=${OFFLINE_ARCHIVE}`, `dataset.md5=${OFFLINE_MD5}`];
  else overrides = [];
  const childArgs = overrides.length ? [`--data-overrides=${overrides.join(',')}`] : [];
  log(
    `bench: preparing CIFAR-10 (${overrides.length ? overrides.join(' ') : 'the configured dataset.url; downloads 163 MB the first time'})`,
  );
  const { stdout, stderr } = await run('node', [join(ROOT, 'scripts/bench-step.mjs'), '--prepare-only', ...childArgs]);
  let result;
  try {
    result = JSON.parse(stdout.trim().split('\n').pop());
  } catch {
    result = { ok: false, error: stderr.trim().split('\n').slice(-3).join(' ') };
  }
  if (!result.ok) {
    if (opts.data !== 'auto') fail(`--data=${opts.data}: the dataset could not be prepared: ${result.error}`);
    return synthetic(
      `the CIFAR-10 archive is not available (${result.error}); build it offline with \`bash ../shared/datasets/build-cifar10.sh .data/cifar10\``,
    );
  }
  return { childArgs, description: { source: 'cifar10', overrides, dataDir: result.dataDir } };
}

function synthetic(why) {
  log(`bench: using SYNTHETIC token batches: ${why}`);
  return { childArgs: ['--synthetic'], description: { source: 'synthetic', why } };
}

async function findTorch() {
  const candidates = opts.python ? [opts.python] : ['python3', '/usr/bin/python3'];
  const has = (py) => spawnSync(py, ['-c', 'import torch'], { stdio: 'ignore' }).status === 0;
  const found = candidates.find(has);
  if (found) return { path: found };
  if (opts['install-torch']) {
    if (process.getuid?.() !== 0)
      fail(`--install-torch needs root; run \`sudo sh -c '${APT_COMMAND}'\` yourself, then rerun.`);
    log(`bench: installing PyTorch: ${APT_COMMAND}`);
    const installed = spawnSync('sh', ['-c', APT_COMMAND], {
      stdio: 'inherit',
      env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
    });
    if (installed.status === 0 && has('/usr/bin/python3')) return { path: '/usr/bin/python3' };
    fail('installing python3-torch failed (see above); rerun with --no-torch to benchmark taskforge alone.');
  }
  const why = `torch is not importable from ${candidates.join(' or ')}`;
  log(
    `bench: PyTorch reference SKIPPED: ${why}. Install it with \`${APT_COMMAND}\` (Debian, as root), or pass --install-torch or --python=PATH.`,
  );
  return { skipped: why };
}

/** LD_PRELOAD and MALLOC_CONF for torch's processes (see JEMALLOC_CONF); {} for glibc or when jemalloc is missing. */
function torchMallocEnv() {
  if (torchMalloc === 'glibc') return {};
  const found = spawnSync('ldconfig', ['-p'], { encoding: 'utf8' })
    .stdout?.split('\n')
    .map((line) => /libjemalloc\.so\.2 .*=> (\S+)/.exec(line)?.[1])
    .find(Boolean);
  if (!found) {
    log(
      `bench: warning: libjemalloc.so.2 not found, so PyTorch runs on glibc malloc, which can make it several times slower (page faults); install it with \`apt-get install -y libjemalloc2\`.`,
    );
    return {};
  }
  return { LD_PRELOAD: found, MALLOC_CONF: JEMALLOC_CONF };
}

/** Doubles the batch until a step fails (a wasm out-of-memory aborts its process, hence one each). */
async function findMaxBatches() {
  const out = {};
  for (const name of configs) {
    let largest = null;
    let failure = null;
    for (let batch = CONFIGS[name].batch; batch <= 1024; batch *= 2) {
      const r = await measure({ config: name, impl: 'taskforge', backend: 'wasm', threads: 1, batch }, 'node', [
        join(ROOT, 'scripts/bench-step.mjs'),
        '--backend=wasm',
        ...shapeArgs({ ...CONFIGS[name], batch }),
        '--steps=1',
        '--warmup=0',
        ...data.childArgs,
      ]);
      if (!r.result.ok) {
        const error = r.result.error.split('\n')[0];
        // A release Emscripten build says only "Aborted()"; at these sizes that is the 4 GiB wasm32 heap.
        failure = {
          batch,
          error: /^Aborted\(/.test(error)
            ? `${error} (most likely out of wasm memory: the heap is capped at 4 GiB)`
            : error,
        };
        break;
      }
      largest = {
        batch,
        wasmHeapBytes: r.result.wasmHeapBytes,
        peakRssBytes: r.result.peakRssBytes,
        stepMs: r.result.steps[0].totalMs,
      };
    }
    out[name] = { largest, failure };
  }
  return out;
}

async function writeJsonAtomic(file, value) {
  await mkdir(dirname(file), { recursive: true });
  const tmp = `${file}.tmp-${process.pid}`;
  await writeFile(tmp, `${JSON.stringify(value, null, 2)}\n`);
  await rename(tmp, file);
}

import * as tf from '@tensorflow/tfjs';
import { execFile } from 'node:child_process';
import { tmpdir } from 'node:os';
import { TaskforgeError } from '../errors.js';
import type { Output } from '../services/tokens.js';
import { registerWasmPolyfills } from './wasm-kernels.js';

export type AcceleratorRequest = 'auto' | 'gpu' | 'node' | 'webgpu' | 'wasm' | 'cpu';
export type AcceleratorKind = Exclude<AcceleratorRequest, 'auto'>;
export type BackendName = 'tensorflow' | 'webgpu' | 'wasm' | 'cpu';

/** What Dawn reports about a WebGPU adapter (`GPUAdapter.info`). */
export interface GpuAdapterInfo {
  vendor: string;
  /** e.g. `ampere`, `rdna-3`, or `software` for a CPU rasteriser such as llvmpipe. */
  architecture: string;
  device: string;
  description: string;
  /** True for llvmpipe / lavapipe, SwiftShader, WARP and other adapters that run on the CPU. */
  software: boolean;
}

export interface BackendSelection {
  /** The TF.js backend now active (`tf.getBackend()`). */
  backend: BackendName;
  accelerator: AcceleratorKind;
  /** One line for logs, e.g. `wasm (SIMD, 1 thread)`. */
  description: string;
  /** Accelerators tried before this one (auto only), with why each was passed over. */
  skipped: { accelerator: AcceleratorKind; reason: string }[];
  /** The WebGPU adapter in use (webgpu only). */
  adapter?: GpuAdapterInfo;
}

export interface SelectBackendOptions {
  /** Threads for the wasm backend (null/undefined: the backend's default). */
  threads?: number | null;
  output?: Output;
  /** Loads an optional backend package; injectable so tests can simulate missing or broken installs. */
  loader?: (moduleName: string) => Promise<unknown>;
}

const PACKAGES = {
  gpu: '@tensorflow/tfjs-node-gpu',
  node: '@tensorflow/tfjs-node',
  webgpu: '@tensorflow/tfjs-backend-webgpu',
  wasm: '@tensorflow/tfjs-backend-wasm',
} as const;
/** Dawn's Node bindings (npm `webgpu`), which provide `navigator.gpu` to the TF.js webgpu backend. */
const DAWN = 'webgpu';
const DAWN_VERSION = '0.6';
const AUTO_ORDER: readonly AcceleratorKind[] = ['gpu', 'node', 'webgpu', 'wasm', 'cpu'];

/** Thrown inside a candidate's setup to pass it over with a reason. */
class Unavailable extends Error {
  constructor(
    readonly reason: string,
    readonly notInstalled = false,
  ) {
    super(reason);
  }
}

function installCommand(kind: keyof typeof PACKAGES): string {
  if (kind === 'webgpu') return `npm install ${DAWN}@${DAWN_VERSION} ${PACKAGES.webgpu}@${tf.version_core}`;
  return `npm install ${PACKAGES[kind]}@${tf.version_core}`;
}

const INSTALL_NOTES: Partial<Record<AcceleratorKind, string>> = {
  gpu: ' (Linux x86-64 with CUDA and cuDNN; its install script downloads libtensorflow)',
  node: ' (its install script downloads libtensorflow)',
  webgpu: ' (Dawn ships prebuilt for Linux, macOS and Windows; it needs a Vulkan, Metal or D3D12 driver)',
};

/** The likely fix when Dawn finds no adapter; shared by the error and the auto skip reason. */
export const NO_ADAPTER_HINT =
  'install the GPU driver and the Vulkan loader (Debian/Ubuntu: ' +
  "`apt-get install libvulkan1` plus the vendor driver, e.g. NVIDIA's " +
  'with its Vulkan ICD, or mesa-vulkan-drivers; check with `vulkaninfo ' +
  "--summary`). Without a GPU, Mesa's software driver lavapipe " +
  '(mesa-vulkan-drivers 25.x, from bookworm-backports on Debian 12) provides a slow adapter for tests';

function firstLine(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  return (
    text
      .split('\n')
      .find((l) => l.trim() !== '')
      ?.trim() ?? 'unknown error'
  );
}

/** Not installed at all, as opposed to installed with a broken native binding (whose path is what is missing then). */
function isNotInstalled(error: unknown, moduleName: string): boolean {
  const code = (error as { code?: unknown } | undefined)?.code;
  return (
    (code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND') && firstLine(error).includes(`'${moduleName}'`)
  );
}

async function load(
  kind: keyof typeof PACKAGES,
  loader: (m: string) => Promise<unknown>,
  moduleName: string = PACKAGES[kind],
): Promise<unknown> {
  try {
    return await loader(moduleName);
  } catch (error) {
    if (isNotInstalled(error, moduleName)) {
      throw new Unavailable(
        `${moduleName === PACKAGES[kind] ? '' : `${moduleName} is `}not installed (${installCommand(kind)} to use it)`,
        true,
      );
    }
    throw new Unavailable(
      `${moduleName === PACKAGES[kind] ? '' : `${moduleName} is `}installed but failed to load: ${firstLine(error)}`,
    );
  }
}

async function activate(name: BackendName, kind: AcceleratorKind): Promise<void> {
  if (tf.findBackendFactory(name) === null && tf.findBackend(name) === null) {
    throw new Unavailable(
      `loaded but registered no '${name}' backend with this copy of TensorFlow.js ${tf.version_core}; ` +
        `install ${kind === 'cpu' ? '@tensorflow/tfjs' : PACKAGES[kind]}@${tf.version_core} ` +
        `to match (check \`npm ls @tensorflow/tfjs-core\`)`,
    );
  }
  let ok: boolean;
  try {
    ok = await tf.setBackend(name);
  } catch (error) {
    throw new Unavailable(`installed but failed to initialise: ${firstLine(error)}`);
  }
  if (!ok)
    throw new Unavailable(
      `installed but the '${name}' backend failed to initialise (see the TensorFlow.js error above)`,
    );
  await tf.ready();
}

interface WasmModule {
  setThreadsCount?: (n: number) => void;
  getThreadsCount?: () => number;
}

type Chosen = Omit<BackendSelection, 'skipped'> & {
  note?: { accelerator: AcceleratorKind; reason: string };
  warning?: string;
};

interface DawnModule {
  create: (flags: string[]) => { requestAdapter: (options?: object) => Promise<unknown> };
  globals: Record<string, unknown>;
}

const SOFTWARE_ADAPTER = /llvmpipe|lavapipe|swiftshader|microsoft basic render|\bwarp\b/i;

/** Reads `GPUAdapter.info` (its fields are getters, so they are copied one by one). */
export function adapterInfo(adapter: unknown): GpuAdapterInfo {
  const raw = ((adapter as { info?: Record<string, unknown> }).info ?? {}) as Record<string, unknown>;
  const field = (name: string) => (typeof raw[name] === 'string' ? (raw[name] as string) : '');
  const info = {
    vendor: field('vendor'),
    architecture: field('architecture'),
    device: field('device'),
    description: field('description'),
  };
  const software =
    info.architecture === 'software' ||
    raw['isFallbackAdapter'] === true ||
    (adapter as { isFallbackAdapter?: unknown }).isFallbackAdapter === true ||
    SOFTWARE_ADAPTER.test(`${info.device} ${info.description}`);
  return { ...info, software };
}

/** `vendor architecture, device` without empty parts, e.g. `nvidia ampere, NVIDIA H200`. */
function adapterName(info: GpuAdapterInfo): string {
  const head = [info.vendor, info.architecture].filter(Boolean).join(' ') || 'unknown vendor';
  const device = info.description || info.device;
  return device ? `${head}, ${device}` : head;
}

/**
 * Starts Dawn and asks for its preferred (high-performance) adapter. Returns the adapter's info
 * and `install()`, which makes this Dawn instance the process's `navigator.gpu` (Node has no
 * WebGPU of its own); install must run before `@tensorflow/tfjs-backend-webgpu` is imported, as
 * the backend registers itself only if `navigator.gpu` exists at import time.
 */
async function startDawn(dawn: DawnModule): Promise<{ info: GpuAdapterInfo; install: () => void }> {
  // Dawn's Vulkan backend wants a runtime dir; a headless CI shell often has none.
  process.env['XDG_RUNTIME_DIR'] ??= tmpdir();
  let gpu: ReturnType<DawnModule['create']>;
  let adapter: unknown;
  try {
    gpu = dawn.create([]);
    adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
  } catch (error) {
    throw new Unavailable(`Dawn failed to start: ${firstLine(error)}; ${NO_ADAPTER_HINT}`);
  }
  if (adapter == null)
    throw new Unavailable(`no WebGPU adapter: Dawn found no Vulkan, Metal or D3D12 device; ${NO_ADAPTER_HINT}`);
  const install = () => {
    for (const [name, value] of Object.entries(dawn.globals)) {
      if (!(name in globalThis)) Object.defineProperty(globalThis, name, { value, configurable: true, writable: true });
    }
    const g = globalThis as { navigator?: object };
    if (g.navigator === undefined)
      Object.defineProperty(globalThis, 'navigator', { value: {}, configurable: true, writable: true });
    Object.defineProperty(g.navigator!, 'gpu', { value: gpu, configurable: true, writable: true });
  };
  return { info: adapterInfo(adapter), install };
}

/**
 * Dawn lines that are noise when the adapter is only probed: on Mesa's lavapipe (limits of
 * 1,000,000) Dawn clamps two pipeline-layout limits and says so on stderr, from native code, each
 * time an adapter is requested. Nothing in the `webgpu` package turns them off: `create()` takes
 * Dawn toggles, backend and adapter choices, none of which touch logging, and the adapter's
 * limits are read before any device (with its required limits) exists.
 */
const HARMLESS_DAWN_LINES = new RegExp(
  '^Warning: maxDynamic(Uniform|Storage)BuffersPerPipelineLayout artificially reduced from \\d+ to \\d+ ' +
    'to fit dynamic offset allocation limit\\.$',
);

/** Runs in a child process: starts Dawn, requests the adapter and prints its info as JSON. */
const CHILD_PROBE = `
process.env.XDG_RUNTIME_DIR ??= ${JSON.stringify(tmpdir())};
const { create } = await import(process.argv[1]);
const adapter = await create([]).requestAdapter({ powerPreference: 'high-performance' });
const raw = adapter?.info ?? {};
const info = {};
for (const k of ['vendor', 'architecture', 'device', 'description', 'isFallbackAdapter']) info[k] = raw[k];
process.stdout.write(JSON.stringify(adapter ? { info } : { none: true }));
process.exit(0);
`;

/**
 * For `auto`: asks Dawn for its adapter in a child process, so that a software adapter, which
 * `auto` passes over anyway, is never started in this process and its harmless limit warnings
 * (see HARMLESS_DAWN_LINES) never reach the terminal. Any other line the child writes to stderr
 * is passed on, so real errors still show. Returns undefined when the child cannot tell (the
 * caller then starts Dawn here, which gives the precise reason).
 */
export async function probeAdapterInChild(
  dawnUrl: string,
  stderr: (text: string) => void = (t) => void process.stderr.write(t),
): Promise<GpuAdapterInfo | null | undefined> {
  const result = await new Promise<{ stdout: string; stderr: string; ok: boolean }>((done) => {
    execFile(
      process.execPath,
      ['--input-type=module', '-e', CHILD_PROBE, dawnUrl],
      { timeout: 60_000, encoding: 'utf8' },
      (error, stdout, errText) => done({ stdout, stderr: errText, ok: !error }),
    );
  });
  const rest = result.stderr.split('\n').filter((line) => line.trim() !== '' && !HARMLESS_DAWN_LINES.test(line.trim()));
  if (rest.length > 0) stderr(`${rest.join('\n')}\n`);
  if (!result.ok) return undefined;
  try {
    const parsed = JSON.parse(result.stdout) as { info?: Record<string, unknown>; none?: boolean };
    if (parsed.none) return null;
    return parsed.info
      ? adapterInfo({ info: parsed.info, isFallbackAdapter: parsed.info['isFallbackAdapter'] })
      : undefined;
  } catch {
    return undefined;
  }
}

function asDawn(loaded: unknown): DawnModule {
  const module = loaded as Partial<DawnModule> & { default?: Partial<DawnModule> };
  const dawn = (module.create ? module : (module.default ?? {})) as Partial<DawnModule>;
  if (typeof dawn.create !== 'function' || typeof dawn.globals !== 'object') {
    throw new Unavailable(`${DAWN} is installed but exports no create()/globals; install ${DAWN}@${DAWN_VERSION}`);
  }
  return dawn as DawnModule;
}

/**
 * Reports the WebGPU adapter Dawn would give this process, without selecting a backend:
 * `{ adapter }` (check `adapter.software`), or `{ reason }` saying why there is none (packages
 * not installed, no driver) and how to fix it. Used by tests to skip where no adapter exists.
 */
export async function probeWebgpu(
  loader: (m: string) => Promise<unknown> = (m) => import(m),
): Promise<{ adapter: GpuAdapterInfo } | { reason: string }> {
  try {
    const { info } = await startDawn(asDawn(await load('webgpu', loader, DAWN)));
    return { adapter: info };
  } catch (error) {
    if (error instanceof Unavailable) return { reason: error.reason };
    throw error;
  }
}

async function setUp(
  kind: AcceleratorKind,
  request: AcceleratorRequest,
  options: SelectBackendOptions,
  loader: (m: string) => Promise<unknown>,
): Promise<Chosen> {
  switch (kind) {
    case 'gpu':
    case 'node': {
      await load(kind, loader);
      await activate('tensorflow', kind);
      const usingGpu = (tf.backend() as { isUsingGpuDevice?: boolean }).isUsingGpuDevice === true;
      const via = `tensorflow (libtensorflow via ${PACKAGES[kind]}`;
      if (kind === 'gpu' && !usingGpu) {
        const reason =
          'installed but TensorFlow found no usable GPU (check the CUDA and cuDNN versions it needs, and `nvidia-smi`)';
        if (request !== 'auto') throw new Unavailable(reason);
        // libtensorflow is loaded now and still beats wasm on CPU; a second native binding would clash.
        return {
          backend: 'tensorflow',
          accelerator: 'node',
          description: `${via}, CPU)`,
          note: { accelerator: 'gpu', reason },
        };
      }
      return { backend: 'tensorflow', accelerator: kind, description: `${via}, ${usingGpu ? 'GPU' : 'CPU'})` };
    }
    case 'webgpu': {
      const existing = tf.findBackend('webgpu') as { adapterInfo?: Record<string, unknown> } | null;
      if (existing !== null) {
        // Initialised earlier in this process (a second run in the same process, e.g. a test worker).
        const info = adapterInfo({ info: existing.adapterInfo ?? {} });
        if (info.software && request === 'auto') throw new Unavailable(softwareReason(info));
        await activate('webgpu', kind);
        return describeWebgpu(info, request);
      }
      if (request === 'auto' && options.loader === undefined) {
        // Probe first in a child: a software adapter is passed over without Dawn ever starting here.
        let dawnUrl: string | undefined;
        try {
          dawnUrl = import.meta.resolve(DAWN);
        } catch {
          dawnUrl = undefined; // not installed: load() below says so
        }
        const probed = dawnUrl === undefined ? undefined : await probeAdapterInChild(dawnUrl);
        if (probed?.software) throw new Unavailable(softwareReason(probed));
      }
      const { info, install } = await startDawn(asDawn(await load(kind, loader, DAWN)));
      if (info.software && request === 'auto') throw new Unavailable(softwareReason(info));
      install();
      await load(kind, loader);
      await activate('webgpu', kind);
      return describeWebgpu(info, request);
    }
    case 'wasm': {
      const loaded = (await load('wasm', loader)) as WasmModule & { default?: WasmModule };
      // A CommonJS build seen through import() may keep its functions on `default` only.
      const wasm: WasmModule = loaded.setThreadsCount ? loaded : (loaded.default ?? {});
      if (options.threads != null) wasm.setThreadsCount?.(options.threads);
      await activate('wasm', kind);
      registerWasmPolyfills();
      const simd = await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT');
      const threads = wasm.getThreadsCount?.() ?? 1;
      let description = `wasm (${simd ? 'SIMD' : 'no SIMD'}, ${threads} thread${threads === 1 ? '' : 's'})`;
      if (options.threads != null && options.threads > threads) {
        // TF.js disables its threaded wasm build under Node (tensorflow/tfjs#3830).
        description +=
          `; ${options.threads} threads requested but this ` + `runtime only runs the single-threaded wasm build`;
      }
      return { backend: 'wasm', accelerator: 'wasm', description };
    }
    case 'cpu': {
      await activate('cpu', kind);
      return {
        backend: 'cpu',
        accelerator: 'cpu',
        description: 'cpu (plain JavaScript; slow, for tests and tiny models)',
      };
    }
  }
}

/**
 * TF.js's cpu backend prints a "you are running TensorFlow.js in Node.js … install our node
 * backend" banner on its first tensor. taskforge has said which backend it chose and why, and a
 * plugin that calls `tf.setBackend('cpu')` (then moved back, with a warning) would otherwise print
 * it once per ddp worker: mark it shown, whichever backend was chosen.
 */
function silenceCpuBackendBanner(): void {
  const cpu = tf.findBackend('cpu') as { firstUse?: boolean } | null;
  if (cpu && typeof cpu.firstUse === 'boolean') cpu.firstUse = false;
}

function softwareReason(info: GpuAdapterInfo): string {
  return (
    `only a software adapter (${adapterName(info)}), which runs on the CPU ` +
    `far slower than wasm; set trainer.accelerator=webgpu to use it anyway`
  );
}

function describeWebgpu(info: GpuAdapterInfo, request: AcceleratorRequest): Chosen {
  const description = `webgpu (Dawn; ${adapterName(info)}${info.software ? '; software adapter' : ''})`;
  const warning =
    info.software && request !== 'auto'
      ? `The WebGPU adapter is a software one (${adapterName(info)}): it runs on the ` +
        `CPU, far slower than trainer.accelerator=wasm. Use it for tests, not training.`
      : undefined;
  return { backend: 'webgpu', accelerator: 'webgpu', description, adapter: info, ...(warning ? { warning } : {}) };
}

/** The backend this module last selected, to tell its own earlier choice from someone else's. */
let lastSelected: string | undefined;

/** The accelerator that runs each TF.js backend, for the fix in overriddenBackendWarning. */
const ACCELERATOR_OF: Record<string, string> = { cpu: 'cpu', wasm: 'wasm', webgpu: 'webgpu', tensorflow: 'node' };

/**
 * A TF.js backend that other code made active before taskforge chose one (a plugin's
 * `tf.setBackend` at import, or a TF.js op run at import, which initialises the default one):
 * taskforge's choice replaces it, which a TF.js user would not expect silently. Undefined when
 * nothing was active, taskforge set it, or the choice is the same backend.
 */
function overriddenBackendWarning(before: string | undefined, chosen: string): string | undefined {
  if (before === undefined || before === lastSelected || before === chosen) return undefined;
  const accelerator = ACCELERATOR_OF[before];
  return (
    `The TF.js backend was already '${before}' before taskforge chose one (a plugin or other code called ` +
    `tf.setBackend, or ran TF.js ops, when it was imported); taskforge selects the backend from ` +
    `trainer.accelerator and now runs on '${chosen}'. ` +
    (accelerator ? `To run on ${before}, set trainer.accelerator=${accelerator}; ` : '') +
    'plugins should leave tf.setBackend to taskforge.'
  );
}

/**
 * Chooses and initialises the TF.js backend. `auto` tries, in order, tfjs-node-gpu, tfjs-node,
 * webgpu (Dawn, hardware adapters only: a software one such as llvmpipe is passed over), wasm and
 * cpu, and says which it took and why it passed over the others. An explicit `webgpu` accepts a
 * software adapter with a warning. The result names the adapter (`adapter`) on webgpu.
 *
 * @throws TaskforgeError (exit 2) for an unknown accelerator or a bad thread count; (exit 1) when
 *   an explicit request cannot be met, saying what to install (missing package) or fix (no
 *   adapter: GPU driver and Vulkan loader).
 */
export async function selectBackend(
  request: AcceleratorRequest,
  options: SelectBackendOptions = {},
): Promise<BackendSelection> {
  if (!(AUTO_ORDER as readonly string[]).includes(request) && request !== 'auto') {
    throw new TaskforgeError(
      `Unknown accelerator '${String(request)}': expected one of auto, ${AUTO_ORDER.join(', ')}.`,
      { exitCode: 2 },
    );
  }
  if (options.threads != null && (!Number.isInteger(options.threads) || options.threads < 1)) {
    throw new TaskforgeError(`trainer.threads must be a positive integer or null, got ${options.threads}.`, {
      exitCode: 2,
    });
  }
  const loader = options.loader ?? ((m: string) => import(m));
  const candidates = request === 'auto' ? AUTO_ORDER : [request];
  const skipped: BackendSelection['skipped'] = [];
  const activeBefore = (tf.engine() as { backendName?: string | null }).backendName ?? undefined;
  for (const kind of candidates) {
    try {
      const { note, warning, ...chosen } = await setUp(kind, request, options, loader);
      if (note) skipped.push(note);
      if (warning) options.output?.warn(warning);
      const overridden = overriddenBackendWarning(activeBefore, chosen.backend);
      if (overridden) options.output?.warn(overridden);
      lastSelected = chosen.backend;
      if (options.threads != null && chosen.backend !== 'wasm') {
        options.output?.warn(
          `trainer.threads=${options.threads} only applies to the ` +
            `wasm backend; ${chosen.backend} uses its own thread pool.`,
        );
      }
      silenceCpuBackendBanner();
      options.output?.info(`Accelerator: ${chosen.description}${request === 'auto' ? ' (auto)' : ''}`);
      for (const s of skipped) options.output?.info(`  skipped ${s.accelerator}: ${s.reason}`);
      return { ...chosen, skipped };
    } catch (error) {
      if (!(error instanceof Unavailable)) throw error;
      if (request === 'webgpu' && !error.notInstalled) {
        throw new TaskforgeError(
          `trainer.accelerator=webgpu could not start: ${error.reason}. Or set ` +
            `trainer.accelerator=auto to use the best backend that works here.`,
          { settings: { 'trainer.accelerator': request } },
        );
      }
      if (request !== 'auto') {
        const pkg =
          kind === 'cpu'
            ? 'the cpu backend'
            : kind === 'webgpu'
              ? `${DAWN} (Dawn) and ${PACKAGES.webgpu}`
              : PACKAGES[kind];
        const fix =
          kind === 'cpu'
            ? 'Reinstall @tensorflow/tfjs'
            : error.notInstalled
              ? `Install ${kind === 'webgpu' ? 'them' : 'it'} with ` +
                `\`${installCommand(kind)}\`${INSTALL_NOTES[kind] ?? ''}`
              : `Fix or reinstall it (\`${installCommand(kind)}\`)`;
        const problem = error.notInstalled
          ? `${pkg}, which ${kind === 'webgpu' ? 'are' : 'is'} not installed`
          : `${pkg}, which is ${error.reason}`;
        throw new TaskforgeError(
          `trainer.accelerator=${request} needs ${problem}. ${fix}, or set ` +
            `trainer.accelerator=auto to use the best backend that works here.`,
          { settings: { 'trainer.accelerator': request } },
        );
      }
      skipped.push({ accelerator: kind, reason: error.reason });
    }
  }
  // Unreachable in practice: the cpu backend ships with @tensorflow/tfjs.
  throw new TaskforgeError(
    `No TensorFlow.js backend could be initialised: ${skipped.map((s) => `${s.accelerator}: ${s.reason}`).join('; ')}.`,
  );
}

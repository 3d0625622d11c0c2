import * as tf from '@tensorflow/tfjs';
import { TaskforgeError } from '../errors.js';
import type { Output } from '../services/tokens.js';
import { registerWasmPolyfills } from './wasm-kernels.js';

export type AcceleratorRequest = 'auto' | 'gpu' | 'node' | 'wasm' | 'cpu';
export type AcceleratorKind = Exclude<AcceleratorRequest, 'auto'>;
export type BackendName = 'tensorflow' | 'wasm' | 'cpu';

export interface BackendSelection {
  /** The TF.js backend now active (`tf.getBackend()`). */
  backend: BackendName;
  accelerator: AcceleratorKind;
  /** One line for logs, e.g. `wasm (SIMD, 1 thread)`. */
  description: string;
  /** Accelerators tried before this one (auto only), with why each was passed over. */
  skipped: { accelerator: AcceleratorKind; reason: string }[];
}

export interface SelectBackendOptions {
  /** Threads for the wasm backend (null/undefined: the backend's default). */
  threads?: number | null;
  output?: Output;
  /** Loads an optional backend package; injectable so tests can simulate missing or broken installs. */
  loader?: (moduleName: string) => Promise<unknown>;
}

const PACKAGES = { gpu: '@tensorflow/tfjs-node-gpu', node: '@tensorflow/tfjs-node', wasm: '@tensorflow/tfjs-backend-wasm' } as const;
const AUTO_ORDER: readonly AcceleratorKind[] = ['gpu', 'node', 'wasm', 'cpu'];

/** Thrown inside a candidate's setup to pass it over with a reason. */
class Unavailable extends Error {
  constructor(readonly reason: string, readonly notInstalled = false) {
    super(reason);
  }
}

function installCommand(kind: keyof typeof PACKAGES): string {
  return `npm install ${PACKAGES[kind]}@${tf.version_core}`;
}

const INSTALL_NOTES: Partial<Record<AcceleratorKind, string>> = {
  gpu: ' (Linux x86-64 with CUDA and cuDNN; its install script downloads libtensorflow)',
  node: ' (its install script downloads libtensorflow)',
};

function firstLine(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  return text.split('\n').find((l) => l.trim() !== '')?.trim() ?? 'unknown error';
}

/** Not installed at all, as opposed to installed with a broken native binding (whose path is what is missing then). */
function isNotInstalled(error: unknown, moduleName: string): boolean {
  const code = (error as { code?: unknown } | undefined)?.code;
  return (code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND') && firstLine(error).includes(`'${moduleName}'`);
}

async function load(kind: keyof typeof PACKAGES, loader: (m: string) => Promise<unknown>): Promise<unknown> {
  try {
    return await loader(PACKAGES[kind]);
  } catch (error) {
    if (isNotInstalled(error, PACKAGES[kind])) throw new Unavailable(`not installed (${installCommand(kind)} to use it)`, true);
    throw new Unavailable(`installed but failed to load: ${firstLine(error)}`);
  }
}

async function activate(name: BackendName, kind: AcceleratorKind): Promise<void> {
  if (tf.findBackendFactory(name) === null && tf.findBackend(name) === null) {
    throw new Unavailable(
      `loaded but registered no '${name}' backend with this copy of TensorFlow.js ${tf.version_core}; ` +
        `install ${kind === 'cpu' ? '@tensorflow/tfjs' : PACKAGES[kind]}@${tf.version_core} to match (check \`npm ls @tensorflow/tfjs-core\`)`,
    );
  }
  let ok: boolean;
  try {
    ok = await tf.setBackend(name);
  } catch (error) {
    throw new Unavailable(`installed but failed to initialise: ${firstLine(error)}`);
  }
  if (!ok) throw new Unavailable(`installed but the '${name}' backend failed to initialise (see the TensorFlow.js error above)`);
  await tf.ready();
}

interface WasmModule {
  setThreadsCount?: (n: number) => void;
  getThreadsCount?: () => number;
}

type Chosen = Omit<BackendSelection, 'skipped'> & { note?: { accelerator: AcceleratorKind; reason: string } };

async function setUp(kind: AcceleratorKind, request: AcceleratorRequest, options: SelectBackendOptions, loader: (m: string) => Promise<unknown>): Promise<Chosen> {
  switch (kind) {
    case 'gpu':
    case 'node': {
      await load(kind, loader);
      await activate('tensorflow', kind);
      const usingGpu = (tf.backend() as { isUsingGpuDevice?: boolean }).isUsingGpuDevice === true;
      const via = `tensorflow (libtensorflow via ${PACKAGES[kind]}`;
      if (kind === 'gpu' && !usingGpu) {
        const reason = 'installed but TensorFlow found no usable GPU (check the CUDA and cuDNN versions it needs, and `nvidia-smi`)';
        if (request !== 'auto') throw new Unavailable(reason);
        // libtensorflow is loaded now and still beats wasm on CPU; a second native binding would clash.
        return { backend: 'tensorflow', accelerator: 'node', description: `${via}, CPU)`, note: { accelerator: 'gpu', reason } };
      }
      return { backend: 'tensorflow', accelerator: kind, description: `${via}, ${usingGpu ? 'GPU' : 'CPU'})` };
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
        description += `; ${options.threads} threads requested but this runtime only runs the single-threaded wasm build`;
      }
      return { backend: 'wasm', accelerator: 'wasm', description };
    }
    case 'cpu': {
      await activate('cpu', kind);
      // The cpu backend prints a "you are running TensorFlow.js in Node.js" banner on first use;
      // the choice was already explained above, so mark it as shown.
      const backend = tf.backend() as { firstUse?: boolean };
      if (typeof backend.firstUse === 'boolean') backend.firstUse = false;
      return { backend: 'cpu', accelerator: 'cpu', description: 'cpu (plain JavaScript; slow, for tests and tiny models)' };
    }
  }
}

/**
 * Chooses and initialises the TF.js backend. `auto` tries, in order, tfjs-node-gpu, tfjs-node,
 * wasm and cpu, and says which it took and why it passed over the others. An explicit request
 * that cannot be met is a TaskforgeError saying how to install what is missing.
 */
export async function selectBackend(request: AcceleratorRequest, options: SelectBackendOptions = {}): Promise<BackendSelection> {
  if (!(AUTO_ORDER as readonly string[]).includes(request) && request !== 'auto') {
    throw new TaskforgeError(`Unknown accelerator '${String(request)}': expected one of auto, ${AUTO_ORDER.join(', ')}.`, { exitCode: 2 });
  }
  if (options.threads != null && (!Number.isInteger(options.threads) || options.threads < 1)) {
    throw new TaskforgeError(`trainer.threads must be a positive integer or null, got ${options.threads}.`, { exitCode: 2 });
  }
  const loader = options.loader ?? ((m: string) => import(m));
  const candidates = request === 'auto' ? AUTO_ORDER : [request];
  const skipped: BackendSelection['skipped'] = [];
  for (const kind of candidates) {
    try {
      const { note, ...chosen } = await setUp(kind, request, options, loader);
      if (note) skipped.push(note);
      if (options.threads != null && chosen.backend !== 'wasm') {
        options.output?.warn(`trainer.threads=${options.threads} only applies to the wasm backend; ${chosen.backend} uses its own thread pool.`);
      }
      options.output?.info(`Accelerator: ${chosen.description}${request === 'auto' ? ' (auto)' : ''}`);
      for (const s of skipped) options.output?.info(`  skipped ${s.accelerator}: ${s.reason}`);
      return { ...chosen, skipped };
    } catch (error) {
      if (!(error instanceof Unavailable)) throw error;
      if (request !== 'auto') {
        const pkg = kind === 'cpu' ? 'the cpu backend' : PACKAGES[kind];
        const fix = kind === 'cpu' ? 'Reinstall @tensorflow/tfjs' : error.notInstalled
          ? `Install it with \`${installCommand(kind)}\`${INSTALL_NOTES[kind] ?? ''}`
          : `Fix or reinstall it (\`${installCommand(kind)}\`)`;
        const problem = error.notInstalled ? `${pkg}, which is not installed` : `${pkg}, which is ${error.reason}`;
        throw new TaskforgeError(
          `trainer.accelerator=${request} needs ${problem}. ${fix}, or set trainer.accelerator=auto to use the best backend that works here.`,
        );
      }
      skipped.push({ accelerator: kind, reason: error.reason });
    }
  }
  // Unreachable in practice: the cpu backend ships with @tensorflow/tfjs.
  throw new TaskforgeError(`No TensorFlow.js backend could be initialised: ${skipped.map((s) => `${s.accelerator}: ${s.reason}`).join('; ')}.`);
}

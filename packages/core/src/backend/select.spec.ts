import * as tf from '@tensorflow/tfjs';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import * as tsyringe from 'tsyringe';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { TaskforgeError } from '../errors.js';
import { type Output, Tokens } from '../services/tokens.js';
import { Accelerator } from './accelerator.js';
import { adapterInfo, probeAdapterInChild, selectBackend } from './select.js';

function recordingOutput(): Output & { lines: string[] } {
  const lines: string[] = [];
  return {
    lines,
    info: (m) => lines.push(`info: ${m}`),
    warn: (m) => lines.push(`warn: ${m}`),
    progress: () => ({ update() {}, setTotal() {}, stop() {} }),
  };
}

const notInstalled = (name: string) =>
  Object.assign(new Error(`Cannot find package '${name}' imported from /x/select.ts`), {
    code: 'ERR_MODULE_NOT_FOUND',
  });
const brokenBinding = () => {
  throw Object.assign(
    new Error(
      "Cannot find module '/p/node_modules/@tensorflow/tfjs-node/lib/napi-v8/tfjs_binding.node'\nRequire stack:\n- x",
    ),
    {
      code: 'MODULE_NOT_FOUND',
    },
  );
};

/** Simulates the native packages; the wasm package is really loaded. */
function loader(behaviour: Record<string, () => unknown>) {
  return async (name: string) => {
    const fake = behaviour[name];
    if (fake) return fake();
    if (name === '@tensorflow/tfjs-backend-wasm') return import('@tensorflow/tfjs-backend-wasm');
    throw notInstalled(name);
  };
}

// Order matters: the cpu banner and the wasm thread count are per-process, first-use state.
describe('selectBackend', () => {
  it('cpu: initialises the cpu backend without the tfjs-node banner', async () => {
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {});
    const output = recordingOutput();
    const selection = await selectBackend('cpu', { output });
    tf.tensor1d([1, 2]).dispose();
    expect(warn).not.toHaveBeenCalled();
    warn.mockRestore();
    expect(tf.getBackend()).toBe('cpu');
    expect(selection).toMatchObject({ backend: 'cpu', accelerator: 'cpu', skipped: [] });
    expect(output.lines).toEqual([`info: Accelerator: ${selection.description}`]);
  });

  it('auto: skips a missing tfjs-node-gpu and a broken tfjs-node, says why, and lands on wasm with the threads it really uses', async () => {
    const output = recordingOutput();
    const selection = await selectBackend('auto', {
      output,
      threads: 2,
      loader: loader({
        '@tensorflow/tfjs-node': () => {
          throw Object.assign(new Error('libtensorflow.so.2: cannot open shared object file\nmore'), {
            code: 'ERR_DLOPEN_FAILED',
          });
        },
      }),
    });
    expect(tf.getBackend()).toBe('wasm');
    expect(selection.backend).toBe('wasm');
    expect(selection.skipped).toEqual([
      {
        accelerator: 'gpu',
        reason: `not installed (npm install @tensorflow/tfjs-node-gpu@${tf.version_core} to use it)`,
      },
      {
        accelerator: 'node',
        reason: 'installed but failed to load: libtensorflow.so.2: cannot open shared object file',
      },
      {
        accelerator: 'webgpu',
        reason: `webgpu is not installed (npm install webgpu@0.6 @tensorflow/tfjs-backend-webgpu@${tf.version_core} to use it)`,
      },
    ]);
    // Node runs only TF.js's single-threaded wasm build, so the request for 2 is reported as not met.
    expect(selection.description).toMatch(
      /^wasm \((SIMD|no SIMD), 1 thread\); 2 threads requested but this runtime only runs the single-threaded wasm build$/,
    );
    expect(output.lines).toEqual([
      `info: Accelerator: ${selection.description} (auto)`,
      `info:   skipped gpu: ${selection.skipped[0]!.reason}`,
      `info:   skipped node: ${selection.skipped[1]!.reason}`,
      `info:   skipped webgpu: ${selection.skipped[2]!.reason}`,
    ]);
    const y = tf.tensor1d([1, 2, 3]).square();
    expect(Array.from(await y.data())).toEqual([1, 4, 9]);
    y.dispose();
  });

  it('auto: passes over a tfjs-node that loads but registers no backend with this TF.js copy', async () => {
    const selection = await selectBackend('auto', { loader: loader({ '@tensorflow/tfjs-node': () => ({}) }) });
    expect(selection.skipped[1]!.reason).toMatch(
      /loaded but registered no 'tensorflow' backend with this copy of TensorFlow.js/,
    );
    expect(selection.backend).toBe('wasm');
  });

  it('an explicit request that cannot be met is a TaskforgeError saying how to install it', async () => {
    const missing = await selectBackend('node', { loader: loader({}) }).catch((e: unknown) => e);
    expect(missing).toBeInstanceOf(TaskforgeError);
    expect((missing as TaskforgeError).exitCode).toBe(1);
    expect((missing as Error).message).toBe(
      `trainer.accelerator=node needs @tensorflow/tfjs-node, which is not installed. Install it with \`npm install @tensorflow/tfjs-node@${tf.version_core}\` ` +
        '(its install script downloads libtensorflow), or set trainer.accelerator=auto to use the best backend that works here.',
    );
    const broken = await selectBackend('gpu', { loader: loader({ '@tensorflow/tfjs-node-gpu': brokenBinding }) }).catch(
      (e: unknown) => e,
    );
    expect((broken as Error).message).toMatch(
      /^trainer.accelerator=gpu needs @tensorflow\/tfjs-node-gpu, which is installed but failed to load: Cannot find module '.*tfjs_binding.node'\. Fix or reinstall it/,
    );
    expect(tf.getBackend()).toBe('wasm');
  });

  it('webgpu: a missing Dawn or backend package is a clear install message', async () => {
    const noDawn = await selectBackend('webgpu', { loader: loader({}) }).catch((e: unknown) => e);
    expect(noDawn).toBeInstanceOf(TaskforgeError);
    expect((noDawn as Error).message).toBe(
      'trainer.accelerator=webgpu needs webgpu (Dawn) and @tensorflow/tfjs-backend-webgpu, which are not installed. ' +
        `Install them with \`npm install webgpu@0.6 @tensorflow/tfjs-backend-webgpu@${tf.version_core}\` ` +
        '(Dawn ships prebuilt for Linux, macOS and Windows; it needs a Vulkan, Metal or D3D12 driver), or set trainer.accelerator=auto to use the best backend that works here.',
    );
  });

  it('webgpu: no adapter is an error naming the driver and the Vulkan loader; auto passes over it', async () => {
    const noAdapter = { webgpu: () => ({ create: () => ({ requestAdapter: async () => null }), globals: {} }) };
    const error = await selectBackend('webgpu', { loader: loader(noAdapter) }).catch((e: unknown) => e);
    expect(error).toMatchObject({ exitCode: 1 });
    expect((error as Error).message).toMatch(
      /^trainer.accelerator=webgpu could not start: no WebGPU adapter: Dawn found no Vulkan, Metal or D3D12 device; install the GPU driver and the Vulkan loader \(.*libvulkan1/,
    );
    const auto = await selectBackend('auto', { loader: loader(noAdapter) });
    expect(auto.skipped.find((s) => s.accelerator === 'webgpu')?.reason).toMatch(/^no WebGPU adapter/);
    expect(auto.backend).toBe('wasm');
  });

  it('webgpu: auto passes over a software adapter (llvmpipe) with the reason, and installs no navigator.gpu', async () => {
    const info = {
      vendor: 'mesa',
      architecture: 'software',
      device: 'llvmpipe-llvm-15',
      description: 'llvmpipe: Mesa 25.0.7 (LLVM 15.0.6)',
    };
    const backendLoaded = vi.fn();
    const selection = await selectBackend('auto', {
      loader: loader({
        webgpu: () => ({ create: () => ({ requestAdapter: async () => ({ info }) }), globals: { GPUBufferUsage: {} } }),
        '@tensorflow/tfjs-backend-webgpu': backendLoaded,
      }),
    });
    expect(selection.skipped.find((s) => s.accelerator === 'webgpu')?.reason).toBe(
      'only a software adapter (mesa software, llvmpipe: Mesa 25.0.7 (LLVM 15.0.6)), which runs on the CPU far slower than wasm; set trainer.accelerator=webgpu to use it anyway',
    );
    expect(backendLoaded).not.toHaveBeenCalled();
    expect((globalThis as { navigator?: { gpu?: unknown } }).navigator?.gpu).toBeUndefined();
    expect(selection.backend).toBe('wasm');
  });

  it('warns when other code made a backend active before it chose (a plugin calling tf.setBackend at import)', async () => {
    await selectBackend('cpu');
    await tf.setBackend('wasm'); // what a plugin's top-level `await tf.setBackend(...)` does
    const output = recordingOutput();
    await selectBackend('cpu', { output });
    expect(output.lines.filter((l) => l.startsWith('warn:'))).toEqual([
      "warn: The TF.js backend was already 'wasm' before taskforge chose one (a plugin or other code called " +
        'tf.setBackend, or ran TF.js ops, when it was imported); taskforge selects the backend from trainer.accelerator ' +
        "and now runs on 'cpu'. To run on wasm, set trainer.accelerator=wasm; plugins should leave tf.setBackend to taskforge.",
    ]);
    // Its own earlier choice, or the same backend, is no surprise.
    const again = recordingOutput();
    await selectBackend('cpu', { output: again });
    expect(again.lines.filter((l) => l.startsWith('warn:'))).toEqual([]);
  });

  it('adapterInfo tells hardware from software adapters', () => {
    expect(
      adapterInfo({ info: { vendor: 'nvidia', architecture: 'hopper', device: '', description: 'NVIDIA H200' } })
        .software,
    ).toBe(false);
    expect(
      adapterInfo({
        info: { vendor: 'google', architecture: '', device: 'SwiftShader Device (Subzero)', description: '' },
      }).software,
    ).toBe(true);
    expect(adapterInfo({ info: { vendor: 'x', architecture: 'y' }, isFallbackAdapter: true }).software).toBe(true);
    expect(adapterInfo({})).toEqual({ vendor: '', architecture: '', device: '', description: '', software: false });
  });

  it('rejects an unknown accelerator or a bad thread count as usage errors', async () => {
    await expect(selectBackend('tpu' as never)).rejects.toMatchObject({
      exitCode: 2,
      message: expect.stringMatching(/Unknown accelerator 'tpu'/),
    });
    await expect(selectBackend('cpu', { threads: 0 })).rejects.toMatchObject({ exitCode: 2 });
  });

  it('Accelerator resolves from a container, reports through its Output, and warns that threads only apply to wasm', async () => {
    const output = recordingOutput();
    const container = tsyringe.container.createChildContainer();
    container.registerInstance(Tokens.Output, output);
    container.register(Tokens.Accelerator, { useClass: Accelerator });
    const accelerator = container.resolve<Accelerator>(Tokens.Accelerator);
    const selection = await accelerator.select('cpu', { threads: 3 });
    expect(accelerator.selection).toBe(selection);
    expect(tf.getBackend()).toBe('cpu');
    expect(output.lines[0]).toBe(
      'warn: trainer.threads=3 only applies to the wasm backend; cpu uses its own thread pool.',
    );
    expect(output.lines[1]).toMatch(/^info: Accelerator: cpu/);
  });
  it('auto: falls back from a missing wasm package to the cpu backend, listing every accelerator passed over', async () => {
    const output = recordingOutput();
    const selection = await selectBackend('auto', {
      output,
      loader: loader({
        '@tensorflow/tfjs-backend-wasm': () => {
          throw notInstalled('@tensorflow/tfjs-backend-wasm');
        },
      }),
    });
    expect(tf.getBackend()).toBe('cpu');
    expect(selection).toMatchObject({ backend: 'cpu', accelerator: 'cpu' });
    expect(selection.skipped.map((s) => s.accelerator)).toEqual(['gpu', 'node', 'webgpu', 'wasm']);
    expect(selection.skipped.at(-1)).toEqual({
      accelerator: 'wasm',
      reason: `not installed (npm install @tensorflow/tfjs-backend-wasm@${tf.version_core} to use it)`,
    });
    expect(output.lines).toEqual([
      `info: Accelerator: ${selection.description} (auto)`,
      ...selection.skipped.map((s) => `info:   skipped ${s.accelerator}: ${s.reason}`),
    ]);
  });

  describe('a tfjs-node-gpu that loads (simulated: a "tensorflow" backend built on the cpu one)', () => {
    const cpuFactory = tf.findBackendFactory('cpu')!;
    const gpuPackage = (usingGpu: boolean) => () => {
      if (tf.findBackendFactory('tensorflow')) tf.removeBackend('tensorflow');
      tf.registerBackend(
        'tensorflow',
        () => Object.assign(cpuFactory() as object, { isUsingGpuDevice: usingGpu }) as never,
      );
      return {};
    };
    const cleanUp = async () => {
      if (tf.findBackendFactory('tensorflow')) tf.removeBackend('tensorflow');
      await tf.setBackend('cpu');
    };

    it('auto, but TensorFlow finds no GPU: keeps libtensorflow on the CPU (node) and says why the GPU was passed over', async () => {
      const output = recordingOutput();
      try {
        const selection = await selectBackend('auto', {
          output,
          loader: loader({ '@tensorflow/tfjs-node-gpu': gpuPackage(false) }),
        });
        expect(tf.getBackend()).toBe('tensorflow');
        const reason =
          'installed but TensorFlow found no usable GPU (check the CUDA and cuDNN versions it needs, and `nvidia-smi`)';
        expect(selection).toEqual({
          backend: 'tensorflow',
          accelerator: 'node',
          description: 'tensorflow (libtensorflow via @tensorflow/tfjs-node-gpu, CPU)',
          skipped: [{ accelerator: 'gpu', reason }],
        });
        expect(output.lines).toEqual([
          'info: Accelerator: tensorflow (libtensorflow via @tensorflow/tfjs-node-gpu, CPU) (auto)',
          `info:   skipped gpu: ${reason}`,
        ]);
      } finally {
        await cleanUp();
      }
    });

    it('gpu requested explicitly but TensorFlow finds no GPU: a TaskforgeError, not a silent CPU run', async () => {
      try {
        const error = await selectBackend('gpu', {
          loader: loader({ '@tensorflow/tfjs-node-gpu': gpuPackage(false) }),
        }).catch((e: unknown) => e);
        expect(error).toBeInstanceOf(TaskforgeError);
        expect((error as Error).message).toMatch(
          /^trainer\.accelerator=gpu needs @tensorflow\/tfjs-node-gpu, which is installed but TensorFlow found no usable GPU .*set trainer\.accelerator=auto/,
        );
      } finally {
        await cleanUp();
      }
    });

    it('auto with a GPU TensorFlow uses: the gpu accelerator', async () => {
      try {
        const selection = await selectBackend('auto', {
          loader: loader({ '@tensorflow/tfjs-node-gpu': gpuPackage(true) }),
        });
        expect(selection).toEqual({
          backend: 'tensorflow',
          accelerator: 'gpu',
          description: 'tensorflow (libtensorflow via @tensorflow/tfjs-node-gpu, GPU)',
          skipped: [],
        });
      } finally {
        await cleanUp();
      }
    });
  });

  it("wasm chosen, then a plugin's tf.setBackend('cpu') (as in a ddp worker before it moves back): no tfjs-node banner", async () => {
    // A cpu backend not used yet, as in a fresh worker thread.
    const cpuFactory = tf.findBackendFactory('cpu')!;
    tf.removeBackend('cpu');
    tf.registerBackend('cpu', cpuFactory, 1);
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {});
    try {
      await selectBackend('wasm');
      await tf.setBackend('cpu');
      tf.tensor1d([1, 2]).dispose();
      expect(warn).not.toHaveBeenCalled();
    } finally {
      warn.mockRestore();
      await tf.setBackend('cpu');
    }
  });
});

describe('probeAdapterInChild (auto: the adapter is probed in a child process)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'taskforge-dawn-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  /** A stand-in for the `webgpu` package that writes what Dawn writes on lavapipe, plus `extra`. */
  const fakeDawn = (name: string, adapter: object | null, extra = '') => {
    const file = join(dir, `${name}.mjs`);
    writeFileSync(
      file,
      `process.stderr.write('Warning: maxDynamicUniformBuffersPerPipelineLayout artificially reduced from 1000000 to 16 to fit dynamic offset allocation limit.\\n');
process.stderr.write('Warning: maxDynamicStorageBuffersPerPipelineLayout artificially reduced from 1000000 to 16 to fit dynamic offset allocation limit.\\n');
process.stderr.write(${JSON.stringify(extra)});
export const create = () => ({ requestAdapter: async () => (${JSON.stringify(adapter)}) });
export const globals = {};`,
    );
    return pathToFileURL(file).href;
  };

  it("drops Dawn's harmless limit warnings, passes any other stderr line on, and reports the adapter", async () => {
    let stderr = '';
    const lavapipe = {
      info: { vendor: 'mesa', architecture: 'software', device: 'llvmpipe', description: 'llvmpipe' },
    };
    const info = await probeAdapterInChild(
      fakeDawn('soft', lavapipe, 'Error: something real went wrong\n'),
      (t) => (stderr += t),
    );
    expect(info).toMatchObject({ device: 'llvmpipe', software: true });
    expect(stderr).toBe('Error: something real went wrong\n');
  });

  it('says null when Dawn has no adapter, and undefined when the child fails', async () => {
    let stderr = '';
    expect(await probeAdapterInChild(fakeDawn('none', null), (t) => (stderr += t))).toBeNull();
    expect(stderr).toBe('');
    const broken = join(dir, 'broken.mjs');
    writeFileSync(broken, "throw new Error('dawn.node: cannot open shared object file');");
    expect(await probeAdapterInChild(pathToFileURL(broken).href, (t) => (stderr += t))).toBeUndefined();
    expect(stderr).toContain('cannot open shared object file');
  });
});

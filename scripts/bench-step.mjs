// One taskforge training-speed measurement in a fresh process (so peak RSS, the wasm heap and
// the time to the first step belong to this run alone, and a wasm abort only kills this child).
// Run by scripts/bench.mjs; prints one JSON object as its last stdout line.
//
// The components are built as `taskforge train` builds them (Session.open, compose, the
// Instantiator, core's buildTaskFromConfig), and each step runs the Trainer's own step code: next
// batch from the dataloader, the strategy's trainingStep (core's SingleDeviceStrategy, or with
// --devices=N > 1 its DDPStrategy: N-1 worker threads built like `taskforge train` builds them,
// rank 0 on this thread), optimizer.applyGradients. Not timed: the Trainer's logging, callbacks
// and progress bar.
import { parseArgs } from 'node:util';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');

const { values: a } = parseArgs({
  options: {
    backend: { type: 'string', default: 'wasm' },
    embed: { type: 'string', default: '16' },
    layers: { type: 'string', default: '8' },
    heads: { type: 'string', default: '2' },
    batch: { type: 'string', default: '16' },
    devices: { type: 'string', default: '1' },
    palette: { type: 'string', default: '16' },
    steps: { type: 'string', default: '5' },
    warmup: { type: 'string', default: '2' },
    // Comma-separated config overrides for the dataset (dataset.url=..., dataset.md5=...).
    'data-overrides': { type: 'string', default: '' },
    synthetic: { type: 'boolean', default: false },
    'prepare-only': { type: 'boolean', default: false },
    profile: { type: 'boolean', default: false },
    // Date.now() in the parent just before it spawned us: start-up time includes Node's own.
    'spawned-at': { type: 'string' },
  },
});
const spawnedAt = a['spawned-at'] ? Number(a['spawned-at']) : Date.now() - performance.now();
const int = (k) => Number.parseInt(a[k], 10);

// Library chatter (accelerator line, cache notes) goes to stderr; stdout carries only the result.
const quietOutput = {
  info: (m) => process.stderr.write(`${m}\n`),
  warn: (m) => process.stderr.write(`warning: ${m}\n`),
  progress: () => ({ update() {}, setTotal() {}, stop() {} }),
};

const emit = (result) => process.stdout.write(`${JSON.stringify(result)}\n`);

try {
  emit(await main());
} catch (error) {
  emit({ ok: false, error: error instanceof Error ? error.message : String(error) });
  process.exitCode = 1;
}

async function main() {
  const tf = await import('@tensorflow/tfjs');
  const { Session, Tokens, DDPStrategy, SingleDeviceStrategy, appReplica, buildTaskFromConfig } =
    await import('@taskforge/core');
  const session = await Session.open({ cwd: ROOT });
  session.container.register(Tokens.Output, { useValue: quietOutput });
  const [B, D, L, H, V] = ['batch', 'embed', 'layers', 'heads', 'palette'].map(int);
  const overrides = [
    `trainer.accelerator=${a.backend}`,
    `dataset.batch_size=${B}`,
    `dataset.palette_size=${V}`,
    `backbone.embed_dim=${D}`,
    `backbone.num_layers=${L}`,
    `backbone.num_heads=${H}`,
    ...a['data-overrides'].split(',').filter(Boolean),
  ];
  const { config } = session.compose(overrides);
  const instantiator = session.container.resolve(Tokens.Instantiator);
  const container = session.container;

  const datamodule = instantiator.create('datamodule', config.dataset, { container }, 'dataset');
  if (a['prepare-only']) {
    const t0 = performance.now();
    await datamodule.prepareData();
    await datamodule.setup('fit');
    return { ok: true, prepareMs: performance.now() - t0, dataDir: datamodule.dataDir };
  }

  const devices = int('devices');
  const accelerator = container.resolve(Tokens.Accelerator);
  const strategy =
    devices > 1
      ? new DDPStrategy(
          { strategy: 'ddp', devices, accelerator: a.backend, threads: config.trainer.threads, batchSize: B },
          accelerator,
          quietOutput,
          appReplica({ projectRoot: ROOT, config, plugins: [] }),
        )
      : new SingleDeviceStrategy({ accelerator: a.backend, threads: config.trainer.threads }, accelerator);
  // Selects the backend (as the Trainer's strategy does) before any tensor exists.
  const selection = await strategy.setup();
  let modelDataArgs;
  let batches;
  if (a.synthetic) {
    modelDataArgs = syntheticDataArgs(V);
    batches = syntheticBatches(B, 1024, V);
  } else {
    await datamodule.prepareData();
    await datamodule.setup('fit');
    modelDataArgs = datamodule.modelDataArgs;
    batches = endless((epoch) => datamodule.trainDataloader({ epoch, seed: config.trainer.seed }));
  }
  const task = buildTaskFromConfig(container, config, modelDataArgs);
  // As the Trainer builds it: the configured optimizer over the task's trainable variables (the
  // LR schedule does not change the cost of a step).
  const variables = Object.entries(task.namedVariables()).filter(([, v]) => v.trainable);
  const optimizer = instantiator.create(
    'optimizer',
    config.optimizer,
    { container, variables: Object.fromEntries(variables) },
    'optimizer',
  );
  const varList = variables.map(([, v]) => v);
  const numParams = varList.reduce((n, v) => n + v.size, 0);
  strategy.connect?.({ modelDataArgs });

  let globalStep = 0;
  let liveTensorBytes = 0;
  const step = async () => {
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    const { value: batch } = await batches.next();
    const t1 = performance.now();
    const fields = { globalStep, epoch: 0, batchIdx: globalStep, training: true, seed: globalStep };
    // Reading the loss waits for the backend, so asynchronous backends are timed fully too.
    const { loss, grads: named } = await strategy.trainingStep(task, batch, fields, variables);
    liveTensorBytes = Math.max(liveTensorBytes, tf.memory().numBytes);
    const t2 = performance.now();
    optimizer.applyGradients(named);
    await varList[0].data();
    const t3 = performance.now();
    tf.dispose(Object.values(named));
    globalStep += 1;
    const cpu = process.cpuUsage(cpu0);
    const ddp = strategy.lastStepTimings;
    return {
      dataMs: t1 - t0,
      forwardBackwardMs: t2 - t1,
      // Under ddp: rank 0's own shard, its idle wait for the workers, the gradient average, and
      // each worker's busy time for its request (strategy.lastStepTimings).
      ...(ddp ? { ddp: { ...ddp, workerBusyMs: [...ddp.workerBusyMs] } } : {}),
      optimizerMs: t3 - t2,
      totalMs: t3 - t0,
      cpuMs: (cpu.user + cpu.system) / 1000,
      loss,
    };
  };

  const warmup = [];
  let firstStepMs;
  let profile;
  for (let i = 0; i < int('warmup'); i++) {
    // The last warm-up step is the profiled one: tf.profile's peakBytes is the true in-step
    // peak (activations kept for the backward pass), which tf.memory() after the step misses.
    if (i === int('warmup') - 1 && a.profile) profile = await profileStep(tf, step);
    else warmup.push(await step());
    firstStepMs ??= Date.now() - spawnedAt;
  }
  const steps = [];
  for (let i = 0; i < int('steps'); i++) {
    steps.push(await step());
    firstStepMs ??= Date.now() - spawnedAt;
  }
  const wasmModule = tf.getBackend() === 'wasm' ? tf.backend().wasm : undefined;
  const usage = process.resourceUsage();
  const result = {
    ok: true,
    backend: selection.backend,
    backendDescription: selection.description,
    devices,
    synthetic: a.synthetic,
    shape: {
      batch: B,
      seqLen: modelDataArgs.num_positions,
      vocab: modelDataArgs.num_vocab,
      embed: D,
      layers: L,
      heads: H,
    },
    numParams,
    warmup,
    steps,
    firstStepMs,
    peakRssBytes: usage.maxRSS * 1024,
    // In-step peak only from tf.profile; after the step only weights, optimizer state and grads remain.
    peakTensorBytes: profile?.peakBytes ?? null,
    liveTensorBytesAfterStep: liveTensorBytes,
    // Wasm linear memory only grows, so its size now is its peak.
    wasmHeapBytes: wasmModule?.HEAPU8?.buffer.byteLength ?? null,
    profile: profile ?? null,
  };
  await strategy.teardown();
  task.dispose();
  optimizer.dispose();
  await datamodule.teardown?.();
  return result;
}

async function profileStep(tf, step) {
  let timing;
  const info = await tf.profile(async () => {
    timing = await step();
  });
  const byName = new Map();
  for (const k of info.kernels) {
    const entry = byName.get(k.name) ?? { name: k.name, ms: 0, calls: 0 };
    entry.ms += typeof k.kernelTimeMs === 'number' ? k.kernelTimeMs : 0;
    entry.calls += 1;
    byName.set(k.name, entry);
  }
  // tf.profile also lists scopes (e.g. the forward of a tf.customGrad op, as 'unnamed scope')
  // whose time includes the kernels inside them, which are listed too: keep them apart so the
  // kernel total counts each millisecond once.
  const isKernel = (name) => tf.getKernel(name, tf.getBackend()) !== undefined;
  const all = [...byName.values()].sort((x, y) => y.ms - x.ms);
  const kernels = all.filter((k) => isKernel(k.name));
  return {
    step: timing,
    peakBytes: info.peakBytes,
    kernelMs: kernels.reduce((s, k) => s + k.ms, 0),
    kernels: kernels.slice(0, 20),
    scopes: all.filter((k) => !isKernel(k.name)),
  };
}

/** Epoch after epoch of a dataloader, so a short dataset never ends a benchmark early. */
async function* endless(loader) {
  for (let epoch = 0; ; epoch++) {
    let any = false;
    for await (const batch of loader(epoch)) {
      any = true;
      yield batch;
    }
    if (!any) throw new Error('the training dataloader yielded no batches');
  }
}

/** Uniform random tokens with CIFAR's shapes: only for machines without the dataset. */
async function* syntheticBatches(size, positions, vocab) {
  let state = 12345;
  for (;;) {
    const tokens = new Int32Array(size * positions);
    for (let i = 0; i < tokens.length; i++) {
      state = (Math.imul(state, 1103515245) + 12345) >>> 0;
      tokens[i] = state % vocab;
    }
    yield { tokens, labels: new Int32Array(size), size };
  }
}

function syntheticDataArgs(vocab) {
  const palette = Array.from({ length: vocab }, (_, i) => [(i * 53) % 256, (i * 101) % 256, (i * 197) % 256]);
  return {
    num_vocab: vocab,
    num_positions: 1024,
    num_classes: 10,
    image_height: 32,
    image_width: 32,
    palette,
    class_names: Array.from({ length: 10 }, (_, i) => `class ${i}`),
  };
}

/** `task.pretrained` takes the backbone settings from the checkpoint's config.yaml unless the command line sets them. */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { container } from 'tsyringe';
import { ConfigError, setPath, TaskforgeError, writeCheckpoint, type RunConfigDraft } from '@taskforge/core';
import { createGpt2, gpt2Schema } from '@taskforge/backbone-gpt2';
import { backboneFromPretrained, igptTaskSchema, igptTaskSpec } from '../src/index.js';
import { dataArgs, makeTask } from './fixtures.js';

let tmp: string;
beforeAll(async () => {
  expect(await tf.setBackend('wasm')).toBe(true);
  tmp = mkdtempSync(join(tmpdir(), 'igpt-pretrained-config-'));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const GPT2 = 'backbone/gpt2';

/** A run config draft as the app layer builds it: `cli` lists the leaves the command line set. */
function draftOf(config: Record<string, any>, cli: string[] = []) {
  const sources = new Map<string, string>();
  const leaves = (node: unknown, path: string): void => {
    if (node && typeof node === 'object' && !Array.isArray(node))
      for (const [k, v] of Object.entries(node)) leaves(v, path ? `${path}.${k}` : k);
    else sources.set(path, cli.includes(path) ? 'command line' : 'conf/config.yaml');
  };
  leaves(config, '');
  const draft: RunConfigDraft = {
    config,
    section: 'task',
    node: config.task,
    sourceOf: (path) => sources.get(path),
    fromCommandLine: (path) =>
      [...sources].some(([k, s]) => s === 'command line' && (k === path || k.startsWith(`${path}.`))),
    set(path, value, source) {
      setPath(config, path, value);
      sources.set(path, source);
    },
  };
  return { draft, sources };
}

function checkpointDir(name: string, backbone: Record<string, unknown> | string): string {
  const dir = join(tmp, name);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'config.yaml'), typeof backbone === 'string' ? backbone : YAML.stringify({ backbone }));
  return dir;
}

const composedBackbone = () => ({
  _target_: GPT2,
  embed_dim: 16,
  num_heads: 2,
  num_layers: 8,
  dropout: 0,
  init_seed: 0,
});

describe("backboneFromPretrained (the task's adjustRunConfig)", () => {
  it("takes every backbone key from the checkpoint's config.yaml and says which, in one line", () => {
    const dir = checkpointDir('wide', { ...composedBackbone(), embed_dim: 64, num_heads: 4, num_layers: 3 });
    const config = { task: { _target_: 'task/vision/igpt', pretrained: dir }, backbone: composedBackbone() };
    const { draft, sources } = draftOf(config);
    const notes = backboneFromPretrained(draft);
    expect(config.backbone).toEqual({ ...composedBackbone(), embed_dim: 64, num_heads: 4, num_layers: 3 });
    const file = join(dir, 'config.yaml');
    expect(sources.get('backbone.embed_dim')).toBe(`checkpoint ${file}`);
    expect(sources.get('backbone.dropout')).toBe(`checkpoint ${file}`);
    expect(notes).toEqual([
      `task.pretrained: backbone settings taken from ${file}: embed_dim=64, num_heads=4, num_layers=3, dropout=0, init_seed=0 (changed: embed_dim, num_heads, num_layers)`,
    ]);
  });

  it("keeps what the command line set and names it with the checkpoint's value", () => {
    const dir = checkpointDir('kept', { ...composedBackbone(), embed_dim: 64, num_heads: 4 });
    const backbone = { ...composedBackbone(), dropout: 0.1, num_heads: 8 };
    const config = { task: { _target_: 'task/vision/igpt', pretrained: dir }, backbone };
    const { draft } = draftOf(config, ['backbone.dropout', 'backbone.num_heads']);
    const [note] = backboneFromPretrained(draft);
    expect(config.backbone).toMatchObject({ embed_dim: 64, num_heads: 8, dropout: 0.1 });
    expect(note).toMatch(/taken from .*: embed_dim=64, num_layers=8, init_seed=0 \(changed: embed_dim\); /);
    expect(note).toMatch(
      /kept from the command line: backbone\.num_heads=8 \(checkpoint: 4\), backbone\.dropout=0\.1 \(checkpoint: 0\)$/,
    );
  });

  it('does nothing without task.pretrained, without a saved config, or for another backbone component', () => {
    const plain = { task: { _target_: 'task/vision/igpt', pretrained: null }, backbone: composedBackbone() };
    expect(backboneFromPretrained(draftOf(plain).draft)).toEqual([]);
    const empty = join(tmp, 'no-config');
    mkdirSync(empty);
    const noConfig = { task: { _target_: 'task/vision/igpt', pretrained: empty }, backbone: composedBackbone() };
    expect(backboneFromPretrained(draftOf(noConfig).draft)).toEqual([]);
    expect(noConfig.backbone).toEqual(composedBackbone());
    const other = checkpointDir('other', { _target_: 'backbone/other', embed_dim: 64 });
    const otherConfig = { task: { _target_: 'task/vision/igpt', pretrained: other }, backbone: composedBackbone() };
    expect(backboneFromPretrained(draftOf(otherConfig).draft)[0]).toMatch(
      /trained with backbone backbone\/other, this run configures backbone\/gpt2; no backbone settings were taken/,
    );
    expect(otherConfig.backbone).toEqual(composedBackbone());
  });

  it('a config.yaml that is not YAML is a config error at task.pretrained (exit 2)', () => {
    const dir = checkpointDir('broken', 'backbone: [unclosed\n');
    const config = { task: { _target_: 'task/vision/igpt', pretrained: dir }, backbone: composedBackbone() };
    const run = () => backboneFromPretrained(draftOf(config).draft);
    expect(run).toThrow(ConfigError);
    expect(run).toThrow(/task\.pretrained: the checkpoint's .*config\.yaml cannot be read as YAML/);
  });

  it("is the task component's hook", () => {
    expect(igptTaskSpec.adjustRunConfig).toBe(backboneFromPretrained);
  });
});

describe("a command-line backbone setting that does not fit the checkpoint's weights", () => {
  it('is an exit-2 error naming the keys, both values and the override to drop', async () => {
    const source = makeTask({}, { seed: 5 }); // embed_dim 16, 2 layers
    const saved = { _target_: GPT2, embed_dim: 16, num_heads: 2, num_layers: 2, dropout: 0, init_seed: 5 };
    const dir = await writeCheckpoint(join(tmp, 'ckpt'), {
      task: source,
      modelDataArgs: dataArgs,
      config: { backbone: saved },
    });
    const backboneConfig = { ...saved, embed_dim: 8 }; // backbone.embed_dim=8 on the command line
    const build = () =>
      igptTaskSpec.create(igptTaskSchema.parse({ pretrained: dir }), {
        container: container.createChildContainer(),
        modelDataArgs: dataArgs,
        backbone: createGpt2(gpt2Schema.parse({ embed_dim: 8, num_heads: 2, num_layers: 2 }), dataArgs),
        backboneConfig,
      });
    let error: unknown;
    try {
      build();
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(TaskforgeError);
    const e = error as TaskforgeError;
    expect(e.exitCode).toBe(2);
    expect(e.message).toMatch(/^task\.pretrained: cannot load .*mis-shaped/s);
    expect(e.message).toContain(
      "This run's backbone differs from the checkpoint's in backbone.embed_dim (checkpoint 16, this run 8).",
    );
    expect(e.message).toContain(
      "Drop the command-line override backbone.embed_dim=8 (the checkpoint's value is then taken from its config.yaml), or pre-train a model with these settings.",
    );
    // Without the run's backbone config the message still says what to do.
    expect(() =>
      igptTaskSpec.create(igptTaskSchema.parse({ pretrained: dir }), {
        container: container.createChildContainer(),
        modelDataArgs: dataArgs,
        backbone: createGpt2(gpt2Schema.parse({ embed_dim: 8, num_heads: 2, num_layers: 2 }), dataArgs),
      }),
    ).toThrow(/Use the backbone settings the checkpoint was trained with \(see its config\.yaml\)/);
    source.dispose();
  });
});

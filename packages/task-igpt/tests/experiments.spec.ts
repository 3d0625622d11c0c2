/**
 * The recipes shipped in conf/experiment/ (`+experiment=<name>`), composed and validated as
 * `taskforge train` does: the workspace's conf/ and every plugin's conf/ on the search path.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, createContainer, Session, type Output } from '@taskforge/core';

const REPO = new URL('../../..', import.meta.url).pathname;
const EXPERIMENTS = new URL('../conf/experiment/', import.meta.url).pathname;

let session: Session;
const infos: string[] = [];
beforeAll(async () => {
  const output: Output = {
    info: (m) => infos.push(m),
    warn: (m) => infos.push(`warn ${m}`),
    progress: () => ({ update() {}, setTotal() {}, stop() {} }),
  };
  session = await Session.open({ cwd: REPO, container: createContainer({ output }) });
}, 60_000);

/** The composed, validated run config of `overrides`, as a plain tree, and where each value came from. */
function compose(...overrides: string[]) {
  const { config, sources } = session.compose(overrides);
  return { config: config as Record<string, any>, sources };
}

/** What every stage of the one-hour recipe shares: the data and the model. */
const SHARED = {
  dataset: { image_size: 16, palette_size: 16, batch_size: 32 },
  backbone: { _target_: 'backbone/gpt2', embed_dim: 64, num_heads: 4, num_layers: 4 },
};

describe('conf/experiment recipes', () => {
  it('ships the three stages of the one-hour recipe, each a Hydra `# @package _global_` file', () => {
    const files = readdirSync(EXPERIMENTS).sort();
    expect(files).toEqual(['cifar10_1h_finetune.yaml', 'cifar10_1h_pretrain.yaml', 'cifar10_1h_probe.yaml']);
    for (const file of files)
      expect(readFileSync(join(EXPERIMENTS, file), 'utf8').split('\n')[0], file).toBe('# @package _global_');
  });

  it('+experiment=cifar10_1h_pretrain: generative pre-training, 1,700 steps over epochs, samples every 850', () => {
    const { config, sources } = compose('+experiment=cifar10_1h_pretrain');
    expect(config).toMatchObject(SHARED);
    expect(config.dataset.augment).toBe(false);
    expect(config.task).toMatchObject({
      _target_: 'task/vision/igpt',
      classify: false,
      probe_layer: null,
      pretrained: null,
    });
    expect(config.optimizer).toMatchObject({ _target_: 'optimizer/adam', lr: 3e-3 });
    expect(config.scheduler).toMatchObject({ _target_: 'scheduler/warmup_cosine', warmup_steps: 100, min_lr_ratio: 0 });
    expect(config.trainer).toMatchObject({
      max_epochs: -1,
      max_steps: 1700,
      val_check_interval: 425,
      limit_val_batches: 40,
      log_every_n_steps: 20,
    });
    expect(config.trainer.callbacks.sampler).toMatchObject({ _target_: 'callback/igpt_sampler', every_n_steps: 850 });
    expect(sources.get('trainer.max_steps')).toMatch(/conf\/experiment\/cifar10_1h_pretrain\.yaml$/);
    expect(sources.get('backbone.embed_dim')).toMatch(/conf\/experiment\/cifar10_1h_pretrain\.yaml$/);
  });

  it('+experiment=cifar10_1h_finetune: classification with augmentation, keeps the best val/acc, no sampler', () => {
    const { config } = compose('+experiment=cifar10_1h_finetune');
    expect(config).toMatchObject(SHARED);
    expect(config.dataset.augment).toBe(true);
    expect(config.task).toMatchObject({ classify: true, probe_layer: null });
    expect(config.optimizer.lr).toBe(1e-3);
    expect(config.scheduler.warmup_steps).toBe(50);
    expect(config.trainer).toMatchObject({ max_epochs: -1, max_steps: 2800, val_check_interval: 560 });
    expect(config.trainer.callbacks.model_checkpoint).toMatchObject({ monitor: 'val/acc', mode: 'max' });
    expect(config.trainer.callbacks.sampler).toBeNull();
  });

  it('+experiment=cifar10_1h_probe: a linear probe on the middle layer for one epoch', () => {
    const { config } = compose('+experiment=cifar10_1h_probe');
    expect(config).toMatchObject(SHARED);
    expect(config.task).toMatchObject({ classify: false, probe_layer: 2 });
    expect(config.trainer).toMatchObject({ max_epochs: -1, max_steps: 1400 });
    expect(config.trainer.callbacks.model_checkpoint).toMatchObject({ monitor: 'val/acc', mode: 'max' });
    expect(config.trainer.callbacks.sampler).toBeNull();
    expect(config.task.probe_layer).toBeLessThanOrEqual(config.backbone.num_layers);
  });

  it('stays overridable from the command line', () => {
    const { config, sources } = compose(
      '+experiment=cifar10_1h_pretrain',
      'trainer.max_steps=10',
      'backbone.embed_dim=128',
      'dataset.image_size=32',
      'trainer.callbacks.sampler=null',
    );
    expect(config.trainer.max_steps).toBe(10);
    expect(config.backbone.embed_dim).toBe(128);
    expect(config.backbone.num_layers).toBe(4);
    expect(config.dataset.image_size).toBe(32);
    expect(config.trainer.callbacks.sampler).toBeNull();
    expect(sources.get('trainer.max_steps')).toBe('command line');
  });

  it('+experiment=nope is a config error (exit 2) listing the available experiments, with a did-you-mean for a typo', () => {
    const errorOf = (option: string) => {
      try {
        compose(`+experiment=${option}`);
      } catch (error) {
        expect(error).toBeInstanceOf(ConfigError);
        expect((error as ConfigError).exitCode).toBe(2);
        return (error as ConfigError).message;
      }
      throw new Error(`+experiment=${option} was accepted`);
    };
    const available = '(available: cifar10_1h_finetune, cifar10_1h_pretrain, cifar10_1h_probe)';
    expect(errorOf('nope')).toContain(`config group 'experiment' has no option 'nope' ${available}`);
    expect(errorOf('cifar10_1h_pretrian')).toContain(`did you mean 'cifar10_1h_pretrain'`);
  });
});

import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { parse } from 'yaml';
import { ConfigError, isPlainObject, type RunConfigDraft } from '@taskforge/core';

/** Where a setting taken from a checkpoint came from, as `taskforge config` shows it. */
const sourceLabel = (file: string) => `checkpoint ${file}`;

/**
 * The task's `adjustRunConfig`: with `task.pretrained` naming a checkpoint directory, the run's
 * backbone settings become the ones that checkpoint was trained with (the `backbone` node of its
 * saved `config.yaml`), so fine-tuning or probing from it needs no backbone settings copied by
 * hand. Keys set on the command line (`backbone.embed_dim=…`) are kept; a kept value that does
 * not fit the checkpoint's weights is refused when they are loaded (see `loadPretrained`). Only
 * for the same backbone component (`_target_`); other values and paths are left to validation
 * and loading, which report them.
 *
 * Returns one note naming every key taken (with its value), those whose value changed, and the
 * command-line values kept where the checkpoint's differ.
 * @throws ConfigError (exit code 2) at `task.pretrained` when the checkpoint's config.yaml is not valid YAML.
 */
export function backboneFromPretrained(draft: RunConfigDraft): string[] {
  const dirArg = draft.node['pretrained'];
  if (typeof dirArg !== 'string' || dirArg === '') return [];
  const file = join(resolve(dirArg), 'config.yaml');
  if (!existsSync(file)) return [];
  let saved: unknown;
  try {
    saved = parse(readFileSync(file, 'utf8'));
  } catch (error) {
    throw new ConfigError([
      {
        path: `${draft.section}.pretrained`,
        message:
          `the checkpoint's ${file} cannot be read as YAML (${(error as Error).message.split('\n')[0]}); ` +
          'point it at a checkpoint directory written by taskforge, such as <run dir>/checkpoints/last',
        value: dirArg,
      },
    ]);
  }
  const fromCheckpoint = isPlainObject(saved) ? saved['backbone'] : undefined;
  const current = draft.config['backbone'];
  if (!isPlainObject(fromCheckpoint) || !isPlainObject(current)) return [];
  if (fromCheckpoint['_target_'] !== current['_target_']) {
    return [
      `task.pretrained: the checkpoint was trained with backbone ${String(fromCheckpoint['_target_'])}, ` +
        `this run configures ${String(current['_target_'])}; no backbone settings were taken from ${file}`,
    ];
  }
  const taken: string[] = [];
  const changed: string[] = [];
  const kept: string[] = [];
  for (const [key, value] of Object.entries(fromCheckpoint)) {
    if (key === '_target_') continue;
    const path = `backbone.${key}`;
    const same = isDeepStrictEqual(current[key], value);
    if (draft.fromCommandLine(path)) {
      if (!same) kept.push(`${path}=${JSON.stringify(current[key])} (checkpoint: ${JSON.stringify(value)})`);
      continue;
    }
    draft.set(path, value, sourceLabel(file));
    taken.push(`${key}=${JSON.stringify(value)}`);
    if (!same) changed.push(key);
  }
  if (!taken.length && !kept.length) return [];
  const parts = [
    taken.length
      ? `task.pretrained: backbone settings taken from ${file}: ${taken.join(', ')}` +
        (changed.length ? ` (changed: ${changed.join(', ')})` : ' (all as configured)')
      : `task.pretrained: no backbone settings taken from ${file}`,
  ];
  if (kept.length) parts.push(`kept from the command line: ${kept.join(', ')}`);
  return [parts.join('; ')];
}

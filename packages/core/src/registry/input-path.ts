import { existsSync, statSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { findProjectRoot } from '../services/paths.js';

/** Options for {@link inputPath}. */
export interface InputPathOptions {
  /** What must be there: a directory, a file, or either (default). */
  kind?: 'dir' | 'file' | 'any';
  /** Relative paths resolve against the cwd (default) or the project root (the nearest package.json). */
  relativeTo?: 'cwd' | 'project';
  /** Let `http://`, `https://` (not checked) and `file://` (checked) URLs through as well as paths. */
  urls?: boolean;
  /** Appended to the "does not exist" message, e.g. what such a path usually looks like. */
  hint?: string;
  /**
   * Words users type meaning something else (Lightning's `ckpt_path='last'`): when the value is one
   * of these and no such path exists, its message replaces "the path does not exist".
   */
  words?: Record<string, string>;
}

/**
 * Schema for a config value that names something the run READS (a checkpoint to resume from,
 * pretrained weights, a local dataset archive): a non-empty string whose target must exist when
 * the config is validated. Because validation happens when the config is composed, a missing path
 * is reported by `taskforge config` as well as by `train`, before any run dir is created, as a
 * config error (exit code 2) naming the key, the value and the resolved absolute path.
 */
export function inputPath(options: InputPathOptions = {}) {
  const { kind = 'any', relativeTo = 'cwd', urls = false, hint, words = {} } = options;
  return z
    .string()
    .min(1)
    .superRefine((value, ctx) => {
      if (urls && /^https?:\/\//i.test(value)) return;
      let path: string;
      if (urls && /^file:\/\//i.test(value)) {
        try {
          path = fileURLToPath(value);
        } catch {
          ctx.addIssue({ code: 'custom', message: 'is not a valid file:// URL' });
          return;
        }
      } else if (urls && /^[a-z][a-z0-9+.-]+:\/\//i.test(value)) {
        return; // an unsupported scheme: the component reports it with its own message
      } else {
        path = isAbsolute(value) ? value : resolve(relativeTo === 'project' ? findProjectRoot() : process.cwd(), value);
      }
      const tail = hint ? `; ${hint}` : '';
      if (!existsSync(path) && Object.hasOwn(words, value)) {
        ctx.addIssue({ code: 'custom', message: words[value]! });
        return;
      }
      if (!existsSync(path)) {
        ctx.addIssue({ code: 'custom', message: `the path does not exist (${path})${tail}` });
        return;
      }
      const isDir = statSync(path).isDirectory();
      if (kind === 'dir' && !isDir)
        ctx.addIssue({ code: 'custom', message: `expected a directory, but ${path} is a file${tail}` });
      if (kind === 'file' && isDir)
        ctx.addIssue({ code: 'custom', message: `expected a file, but ${path} is a directory${tail}` });
    });
}

import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import type { Paths } from './tokens.js';

/** The nearest directory at or above `cwd` holding a package.json; `cwd` itself when there is none. */
export function findProjectRoot(cwd: string = process.cwd()): string {
  let dir = resolve(cwd);
  for (;;) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    const parent = dirname(dir);
    if (parent === dir) return resolve(cwd);
    dir = parent;
  }
}

export interface PathsOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  home?: string;
}

/** Paths from the environment: see `Paths` for the rules. Empty variables count as unset. */
export function defaultPaths(options: PathsOptions = {}): Paths {
  const env = options.env ?? process.env;
  const cwd = options.cwd ?? process.cwd();
  const cacheDir = env.TASKFORGE_CACHE_DIR
    ? resolve(cwd, env.TASKFORGE_CACHE_DIR)
    : env.XDG_CACHE_HOME
      ? join(resolve(cwd, env.XDG_CACHE_HOME), 'taskforge')
      : join(options.home ?? homedir(), '.cache', 'taskforge');
  return { projectRoot: findProjectRoot(cwd), cacheDir };
}

/**
 * A session ties the pieces together for one command: a service container, the plugins found
 * in the project, the config search path, and composition + validation of the run config.
 */
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { DependencyContainer } from 'tsyringe';
import { z } from 'zod';
import { attachEnvSources, composeConfig, type ComposedConfig } from '../config/index.js';
import type { ConfigNode } from '../config/paths.js';
import { ConfigError } from '../errors.js';
import { discoverPlugins, loadPlugins, type DiscoveredPlugin } from '../registry/discovery.js';
import type { ComponentRegistry } from '../registry/registry.js';
import { validateConfig } from '../registry/validate.js';
import { createContainer } from './container.js';
import { findProjectRoot } from '../services/paths.js';
import { Tokens, type Output } from '../services/tokens.js';
import { trainerConfigSchema, type TrainerConfig } from '../trainer/config.js';

export interface SessionOptions {
  cwd?: string;
  /** The project's own conf dir, searched first; default `<project root>/conf`. */
  configDir?: string;
  /** Primary config name; default `config`. */
  configName?: string;
  /** A container to build on (tests swap services here); default: a fresh one. */
  container?: DependencyContainer;
}

/** The validated run config. Component sections keep their `_target_`. */
export interface RunConfig {
  task?: ConfigNode;
  dataset?: ConfigNode;
  backbone?: ConfigNode;
  optimizer?: ConfigNode;
  scheduler?: ConfigNode;
  trainer: TrainerConfig;
  plugins: string[];
  [key: string]: unknown;
}

export interface ComposedRun {
  config: RunConfig;
  /** Where each value came from (files, command line, or a schema default). */
  sources: Map<string, string>;
  choices: Record<string, string | null>;
}

/** Top-level sections of a run config; anything else is a misspelling. */
const ROOT_SCHEMAS = {
  trainer: trainerConfigSchema,
  plugins: z.array(z.string()).default([]),
};
const COMPONENT_SECTIONS = ['task', 'dataset', 'backbone', 'optimizer', 'scheduler'] as const;

export class Session {
  private constructor(
    readonly container: DependencyContainer,
    readonly projectRoot: string,
    readonly plugins: DiscoveredPlugin[],
    readonly searchPath: string[],
    private readonly configName: string,
  ) {}

  static async open(options: SessionOptions = {}): Promise<Session> {
    const container = options.container ?? createContainer();
    const projectRoot = findProjectRoot(options.cwd);
    const discovered = discoverPlugins({ projectRoot });
    const output = container.resolve<Output>(Tokens.Output);
    for (const skipped of discovered.skipped) output.warn(skipped.message);
    await loadPlugins(discovered, container.resolve<ComponentRegistry>(Tokens.Registry));
    const projectConf = options.configDir ? resolve(options.configDir) : join(projectRoot, 'conf');
    if (options.configDir && !existsSync(projectConf)) {
      throw new ConfigError(`the config dir ${projectConf} (from --config-dir) does not exist`, 'Usage error');
    }
    const searchPath = [...(existsSync(projectConf) ? [projectConf] : []), ...discovered.searchPathDirs];
    return new Session(container, projectRoot, discovered.plugins, searchPath, options.configName ?? 'config');
  }

  get registry(): ComponentRegistry {
    return this.container.resolve<ComponentRegistry>(Tokens.Registry);
  }

  /** Composes the config from the search path and overrides, then validates every section. */
  compose(overrides: string[], options: { searchPath?: string[]; configName?: string } = {}): ComposedRun {
    const composed = composeConfig({
      searchPath: options.searchPath ?? this.searchPath,
      configName: options.configName ?? this.configName,
      overrides,
    });
    return this.validate(composed);
  }

  validate(composed: ComposedConfig): ComposedRun {
    let config: RunConfig;
    try {
      config = validateConfig<ConfigNode>(composed.config, this.registry, {
        rootSchemas: ROOT_SCHEMAS,
        allowedRootKeys: COMPONENT_SECTIONS,
      }) as RunConfig;
    } catch (error) {
      // A type error in a value from `${env:…}` names the variable, not just the config key.
      throw error instanceof ConfigError ? attachEnvSources(error, composed.sources) : error;
    }
    const sources = new Map(composed.sources);
    markDefaults(config, '', sources);
    return { config, sources, choices: composed.choices };
  }
}

/** Values the files did not set came from a component's schema: say so in `taskforge config`. */
function markDefaults(node: unknown, path: string, sources: Map<string, string>): void {
  if (node === null || typeof node !== 'object' || Array.isArray(node)) {
    if (path && !sources.has(path)) sources.set(path, 'schema default');
    return;
  }
  for (const [key, value] of Object.entries(node)) markDefaults(value, path ? `${path}.${key}` : key, sources);
}

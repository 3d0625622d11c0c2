/**
 * A session ties the pieces together for one command: a service container, the plugins found
 * in the project, the config search path, and composition + validation of the run config.
 */
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { DependencyContainer } from 'tsyringe';
import { z } from 'zod';
import { attachEnvSources, composeConfig, type ComposedConfig } from '../config/index.js';
import { setPath, type ConfigNode } from '../config/paths.js';
import { ConfigError, type ConfigProblem } from '../errors.js';
import { discoverPlugins, loadPlugins, type DiscoveredPlugin } from '../registry/discovery.js';
import type { ComponentRegistry } from '../registry/registry.js';
import type { RunConfigDraft } from '../registry/types.js';
import { isComponentNode, validateConfig } from '../registry/validate.js';
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
  /** Settings dropped because their group now selects an option without them (already printed as warnings). */
  notes: string[];
}

/** Top-level sections of a run config; anything else is a misspelling. */
const ROOT_SCHEMAS = {
  trainer: trainerConfigSchema,
  plugins: z.array(z.string()).default([]),
};
const COMPONENT_SECTIONS = ['task', 'dataset', 'backbone', 'optimizer', 'scheduler'] as const;
/**
 * Sections a configured task is built with (the optimizer only in `train`, but `config` validates
 * as `train` does); `~scheduler` means a constant learning rate. A project that selects no task
 * at all still prints its skeleton with `taskforge config`; commands refuse it ("Nothing to run").
 */
const REQUIRED_WITH_TASK = ['dataset', 'backbone', 'optimizer'] as const;

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

  /**
   * Composes the config from the search path and overrides, lets the configured components adjust
   * it (their `adjustRunConfig`, unless `adjust: false`; their notes are printed as information),
   * then validates every section; notes about settings dropped by a group swap are printed as
   * warnings. Every command (`config` included) goes through here, so all validate alike.
   * @throws ConfigError (exit code 2) listing every problem.
   */
  compose(
    overrides: string[],
    options: { searchPath?: string[]; configName?: string; adjust?: boolean } = {},
  ): ComposedRun {
    const composed = composeConfig({
      searchPath: options.searchPath ?? this.searchPath,
      configName: options.configName ?? this.configName,
      overrides,
    });
    const output = this.container.resolve<Output>(Tokens.Output);
    for (const note of composed.notes) output.warn(note);
    if (options.adjust !== false) for (const note of this.adjust(composed)) output.info(note);
    return this.validate(composed);
  }

  /**
   * Calls `adjustRunConfig` of the component each top-level section names (unknown targets are
   * left to validation), in place; returns their notes.
   */
  private adjust(composed: ComposedConfig): string[] {
    const notes: string[] = [];
    const { config, sources } = composed;
    for (const section of COMPONENT_SECTIONS) {
      const node = config[section];
      if (!isComponentNode(node) || typeof node._target_ !== 'string' || !this.registry.has(node._target_)) continue;
      const spec = this.registry.resolve(node._target_);
      if (!spec.adjustRunConfig) continue;
      const draft: RunConfigDraft = {
        config,
        section,
        node,
        sourceOf: (path) => sources.get(path),
        fromCommandLine: (path) =>
          [...sources].some(
            ([key, source]) => source === 'command line' && (key === path || key.startsWith(`${path}.`)),
          ),
        set(path, value, source) {
          setPath(config, path, value);
          for (const key of [...sources.keys()]) if (key.startsWith(`${path}.`)) sources.delete(key);
          sources.set(path, source);
        },
      };
      notes.push(...(spec.adjustRunConfig(draft) ?? []));
    }
    return notes;
  }

  /**
   * Validates a composed config: each component section against its component's schema, the
   * `trainer` section, the sections a configured task needs (dataset, backbone, optimizer), and that every
   * component section
   * names its component (`_target_`), so nothing half-configured reaches a command.
   * @throws ConfigError (exit code 2) listing every problem.
   */
  validate(composed: ComposedConfig): ComposedRun {
    const problems: ConfigProblem[] = [];
    const configured = (section: string) => composed.config[section] !== undefined && composed.config[section] !== null;
    for (const section of configured('task') ? REQUIRED_WITH_TASK : []) {
      if (!configured(section)) {
        problems.push({
          path: section,
          message:
            `no ${section} is configured; select one on the command ` +
            `line, e.g. ${section}=<option> (see \`taskforge list\`)`,
        });
      }
    }
    for (const section of COMPONENT_SECTIONS) {
      const node = composed.config[section];
      if (node === undefined || node === null || isComponentNode(node)) continue;
      const leaf = firstLeaf(composed.sources, section);
      const source = leaf === undefined ? undefined : composed.sources.get(leaf);
      problems.push({
        path: section,
        message:
          `has settings but names no component (no _target_): select an option ` +
          `with ${section}=<option>, or delete the whole group with ~${section}`,
        value: node,
        ...(source ? { source } : {}),
      });
    }
    if (problems.length) throw new ConfigError(problems);
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
    return { config, sources, choices: composed.choices, notes: composed.notes };
  }
}

/** The first recorded leaf under `section`, to say where a value came from. */
function firstLeaf(sources: Map<string, string>, section: string): string | undefined {
  for (const key of sources.keys()) if (key.startsWith(`${section}.`)) return key;
  return undefined;
}

/** Values the files did not set came from a component's schema: say so in `taskforge config`. */
function markDefaults(node: unknown, path: string, sources: Map<string, string>): void {
  if (node === null || typeof node !== 'object' || Array.isArray(node)) {
    if (path && !sources.has(path)) sources.set(path, 'schema default');
    return;
  }
  for (const [key, value] of Object.entries(node)) markDefaults(value, path ? `${path}.${key}` : key, sources);
}

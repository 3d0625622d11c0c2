import { z } from 'zod';
import { isPlainObject, type ConfigNode } from '../config/paths.js';
import { suggest } from '../config/suggest.js';
import { ConfigError, type ConfigProblem } from '../errors.js';
import type { ComponentRegistry } from './registry.js';
import type { ComponentKind } from './types.js';
import { describeSchema, issuePath, issuesToProblems } from './zod-issues.js';

export interface ValidateOptions {
  /** Schemas for top-level keys that are not components themselves (e.g. `trainer`). */
  rootSchemas?: Record<string, z.ZodType>;
  /**
   * Top-level keys allowed besides those in `rootSchemas`. When neither option is given every
   * top-level key is allowed; otherwise any other key is reported with suggestions.
   */
  allowedRootKeys?: readonly string[];
}

/** A config node that names a component: a mapping with a `_target_` key. */
export function isComponentNode(value: unknown): value is ConfigNode & { _target_: unknown } {
  return isPlainObject(value) && '_target_' in value;
}

function containsComponent(value: unknown): boolean {
  if (isComponentNode(value)) return true;
  if (Array.isArray(value)) return value.some(containsComponent);
  return isPlainObject(value) && Object.values(value).some(containsComponent);
}

/**
 * Schema for a field that holds a nested component node (e.g. a task's `optimizer`). Only the
 * target's kind is checked here; the node itself is validated against its own component's schema.
 */
export function componentNode(kind?: ComponentKind) {
  const target = kind
    ? z.string().refine((t) => t.startsWith(`${kind}/`), {
        message: `expected a ${kind} component ('_target_: ${kind}/<name>')`,
      })
    : z.string();
  return z.looseObject({ _target_: target });
}

/**
 * Component nodes this module produced from a successful parse (defaults applied, nested nodes
 * validated). The Instantiator builds these as they are, so a node validated with the whole
 * config (the session) is not parsed a second time; any other node, including a copy edited
 * after validation, is validated when it is built.
 */
const validatedNodes = new WeakMap<object, ComponentRegistry>();

/**
 * Whether `node` is a component node that `validateConfig`/`validateComponentNode` returned when
 * validating against `registry` (see above); a node validated against another registry is not.
 */
export function isValidatedNode(node: unknown, registry: ComponentRegistry): boolean {
  return typeof node === 'object' && node !== null && validatedNodes.get(node) === registry;
}

class Validator {
  readonly problems: ConfigProblem[] = [];
  constructor(private readonly registry: ComponentRegistry) {}

  /** Copies `value`, validating every component node found inside it. */
  walk(value: unknown, path: string): unknown {
    if (isComponentNode(value)) return this.component(value, path);
    if (Array.isArray(value)) return value.map((v, i) => this.walk(v, issuePath(path, [i])));
    if (isPlainObject(value))
      return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, this.walk(v, issuePath(path, [k]))]));
    return value;
  }

  component(node: ConfigNode & { _target_: unknown }, path: string): ConfigNode {
    const { _target_: target, ...rest } = node;
    if (typeof target !== 'string' || !this.registry.has(target)) {
      this.problems.push(this.registry.unknownTargetProblem(target, issuePath(path, ['_target_'])));
      this.walk(rest, path); // still report problems in nested components
      return node;
    }
    const spec = this.registry.resolve(target);
    const before = this.problems.length;
    const out: ConfigNode = {
      _target_: target,
      ...(this.parse(spec.schema, rest, path, target, spec.keyAliases) as ConfigNode),
    };
    if (this.problems.length === before) validatedNodes.set(out, this.registry);
    return out;
  }

  /**
   * Parses `input` with `schema`; nested component nodes are validated as their own components
   * and their validated form replaces whatever the outer schema made of them.
   */
  parse(
    schema: z.ZodType,
    input: unknown,
    path: string,
    owner?: string,
    keyAliases?: Readonly<Record<string, string>>,
  ): unknown {
    const nested: ConfigNode = {};
    if (isPlainObject(input)) {
      for (const [key, value] of Object.entries(input)) {
        if (containsComponent(value)) nested[key] = this.walk(value, issuePath(path, [key]));
      }
    }
    const result = schema.safeParse(input);
    if (!result.success) {
      this.problems.push(...issuesToProblems(result.error.issues, schema, input, path, owner, keyAliases));
      return isPlainObject(input) ? { ...input, ...nested } : input;
    }
    return isPlainObject(result.data) ? { ...result.data, ...nested } : result.data;
  }
}

/**
 * Validates a composed config: every mapping with `_target_` must name a registered component
 * and satisfy its schema; `rootSchemas` validate the other top-level sections. Returns the config
 * with defaults applied (its component nodes are recorded as validated, see `isValidatedNode`).
 * @throws ConfigError (exit 2) collecting every problem in the tree, each with its path, value,
 *   what was expected and suggestions.
 */
export function validateConfig<T extends ConfigNode = ConfigNode>(
  config: unknown,
  registry: ComponentRegistry,
  options: ValidateOptions = {},
): T {
  if (!isPlainObject(config)) {
    throw new ConfigError([
      { path: '', message: 'the configuration must be a mapping of top-level keys to values', value: config },
    ]);
  }
  const rootSchemas = options.rootSchemas ?? {};
  const allowed =
    options.rootSchemas || options.allowedRootKeys
      ? new Set([...Object.keys(rootSchemas), ...(options.allowedRootKeys ?? [])])
      : undefined;
  const v = new Validator(registry);
  const out: ConfigNode = {};
  for (const [key, value] of Object.entries(config)) {
    const schema = Object.hasOwn(rootSchemas, key) ? rootSchemas[key] : undefined;
    if (allowed && !allowed.has(key)) {
      const suggestions = suggest(key, allowed);
      v.problems.push({
        path: key,
        message:
          `unknown top-level key (allowed: ${[...allowed].sort().join(', ')})` +
          // `+group=option` for a group that exists composes it; one left as a string had none to compose.
          (typeof value === 'string'
            ? `; as a config group ('${key}=${value}') it is not in the search path either: it would compose ` +
              `${key}/${value}.yaml from a conf dir on the search path (e.g. conf/${key}/${value}.yaml; begin it with ` +
              `'# @package _global_' to set keys anywhere, as Hydra's experiment configs do; \`taskforge list\` shows the search path)`
            : ''),
        ...(suggestions.length ? { suggestions } : {}),
      });
    } else if (schema && isComponentNode(value)) {
      // The root schema checks what may go here (e.g. the kind); the component checks the rest.
      const check = schema.safeParse(value);
      if (!check.success) v.problems.push(...issuesToProblems(check.error.issues, schema, value, key));
      out[key] = v.component(value, key);
    } else if (schema) {
      out[key] = v.parse(schema, value, key);
    } else {
      out[key] = v.walk(value, key);
    }
  }
  for (const [key, schema] of Object.entries(rootSchemas)) {
    if (Object.hasOwn(config, key)) continue;
    const result = schema.safeParse(undefined);
    if (!result.success) {
      const expected = describeSchema(schema);
      v.problems.push({
        path: key,
        message: `missing required top-level key${expected ? `; expected ${expected}` : ''}`,
      });
    } else if (result.data !== undefined) out[key] = result.data;
  }
  if (v.problems.length) throw new ConfigError(v.problems);
  return out as T;
}

/**
 * Validates one component node (as found at `path`) and returns it with defaults applied.
 * @throws ConfigError (exit 2) listing every problem in the node and its nested components.
 */
export function validateComponentNode(
  node: ConfigNode & { _target_: unknown },
  registry: ComponentRegistry,
  path: string,
): ConfigNode {
  const v = new Validator(registry);
  const out = v.component(node, path);
  if (v.problems.length) throw new ConfigError(v.problems);
  return out;
}

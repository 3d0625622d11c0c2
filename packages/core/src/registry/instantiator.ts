import { suggest } from '../config/suggest.js';
import { ConfigError, TaskforgeError } from '../errors.js';
import { messageOf, parseTarget, type ComponentRegistry } from './registry.js';
import type { ComponentInstances, ComponentKind, CreateContexts } from './types.js';
import { isComponentNode, isValidatedNode, validateComponentNode } from './validate.js';

/**
 * Builds components from config nodes (`_target_` + the component's own keys). A config is
 * validated once on its way to a component: a node that `validateConfig` already returned (the
 * session validates the whole run config) is built as it is; any other node (built by hand, or
 * copied and edited after validation) is validated here. Either way a component's `create`
 * receives its schema's parsed, typed output and never parses it again.
 */
export class Instantiator {
  constructor(private readonly registry: ComponentRegistry) {}

  /**
   * Builds the `kind` component `node` names. `path` is where the node sits in the config (for
   * messages); defaults to `kind`. `ctx` is what the kind is given besides its config (`CreateContexts`).
   * @throws ConfigError (exit 2) when `node` is not a component node, names a component of another
   *   kind or an unregistered one, or (when not validated already) fails its schema.
   * @throws TaskforgeError whatever the component's `create` threw as a TaskforgeError (its exit
   *   code); any other error wrapped as one (exit 1) naming the target, config path and package.
   */
  create<K extends ComponentKind>(
    kind: K,
    node: unknown,
    ctx: CreateContexts[K],
    path: string = kind,
  ): ComponentInstances[K] {
    const expected = this.registry.list(kind).map((e) => e.target);
    const example = `'_target_: ${kind}/<name>'`;
    if (!isComponentNode(node)) {
      throw new ConfigError([
        {
          path,
          message:
            `expected a ${kind} component node with ${example}` +
            (expected.length ? ` (registered: ${expected.join(', ')})` : ` but no ${kind} components are registered`),
          value: node,
        },
      ]);
    }
    const target = node._target_;
    const targetKind = typeof target === 'string' ? parseTarget(target)?.kind : undefined;
    if (targetKind && targetKind !== kind) {
      const name = (target as string).slice(targetKind.length + 1);
      const suggestions = suggest(name, expected);
      throw new ConfigError([
        {
          path: `${path}._target_`,
          message:
            `'${String(target)}' is a ${targetKind}, but a ${kind} is expected ` +
            `here (${example}; registered: ${expected.join(', ') || 'none'})`,
          value: target,
          ...(suggestions.length ? { suggestions } : {}),
        },
      ]);
    }
    const validated = isValidatedNode(node, this.registry) ? node : validateComponentNode(node, this.registry, path);
    const { _target_, ...config } = validated;
    const spec = this.registry.resolve(_target_ as string, `${path}._target_`);
    try {
      return spec.create(config, ctx as never) as ComponentInstances[K];
    } catch (error) {
      if (error instanceof TaskforgeError) throw error;
      const owner = this.registry.entry(_target_ as string)?.packageName;
      throw new TaskforgeError(
        `Creating ${String(_target_)} (config '${path}', from '${owner}') failed: ${messageOf(error)}`,
        { cause: error },
      );
    }
  }
}

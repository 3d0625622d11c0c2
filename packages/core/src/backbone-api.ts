import type { Backbone } from './contracts.js';
import { TaskforgeError } from './errors.js';

/** What a task needs from the backbone it is configured with (see `requireBackbone`). */
export interface BackboneRequirements {
  /** Who needs it, for the message, e.g. `task/vision/igpt`. */
  task: string;
  /** What it needs, for the message; default `a backbone` (e.g. `a decoder backbone`). */
  what?: string;
  /** Methods the backbone must have, e.g. `['forward', 'createCache', 'step']`. */
  methods: readonly string[];
  /** Number-valued properties the backbone must have, e.g. `['hiddenSize']`. */
  numbers?: readonly string[];
  /** The configured backbone, for the message (e.g. its class name). */
  target: string;
  /** How to fix it, the message's last sentence, e.g. `Use 'backbone: gpt2' (from @taskforge/backbone-gpt2).` */
  fix: string;
}

/**
 * Checks a backbone structurally against the API a task declares for it (in the task's own
 * package: tasks depend on core only), once when the task is built instead of mid-step, and
 * returns it typed as that API. The caller names the type, e.g.
 * `requireBackbone<IgptBackbone>(ctx.backbone, { task: 'task/vision/igpt', methods: ['forward'], … })`;
 * only the listed members are checked.
 *
 * @throws TaskforgeError (exit 2, a configuration mistake: the wrong backbone is configured)
 *   naming every missing member: "<task> needs <what> with forward(), step() and hiddenSize, but
 *   the configured backbone (<target>) lacks step(). <fix>".
 */
export function requireBackbone<B extends Backbone>(backbone: Backbone, needs: BackboneRequirements): B {
  const members = backbone as unknown as Record<string, unknown>;
  const numbers = needs.numbers ?? [];
  const missing = [
    ...needs.methods.filter((m) => typeof members[m] !== 'function').map((m) => `${m}()`),
    ...numbers.filter((p) => typeof members[p] !== 'number'),
  ];
  if (missing.length) {
    const wanted = [...needs.methods.map((m) => `${m}()`), ...numbers];
    const list = wanted.length > 1 ? `${wanted.slice(0, -1).join(', ')} and ${wanted.at(-1)}` : wanted.join('');
    throw new TaskforgeError(
      `${needs.task} needs ${needs.what ?? 'a backbone'} with ${list}, but the configured backbone ` +
        `(${needs.target}) lacks ${missing.join(', ')}. ${needs.fix}`,
      { exitCode: 2 },
    );
  }
  return backbone as B;
}

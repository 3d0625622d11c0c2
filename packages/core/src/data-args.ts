import type { ModelDataArgs, SequenceDataArgs } from './contracts.js';
import { ConfigError, type ConfigProblem } from './errors.js';

/** What `readSequenceDataArgs` returns: the sequence keys, with those `required` present. */
export type RequiredSequenceDataArgs<K extends keyof SequenceDataArgs> = SequenceDataArgs &
  Required<Pick<SequenceDataArgs, K>>;

/**
 * Reads the `SequenceDataArgs` keys `required` from a data module's `modelDataArgs` (when a
 * backbone or task is built), checking that each is a positive integer.
 *
 * @param args the data module's `modelDataArgs` (as given in the create context).
 * @param options `who`: the component asking, e.g. `backbone/gpt2`; `required`: the keys it needs;
 *   `example`: a data module that provides them, e.g. `datamodule/cifar10`.
 * @returns the required keys (and `num_classes` when the data module gives a valid one), typed.
 * @throws ConfigError (exit 2) with one problem per missing or invalid key, at
 *   `modelDataArgs.<key>`: "<who> needs a positive integer <key> from the data module; use a data
 *   module that provides <required keys> in its modelDataArgs (e.g. <example>)".
 */
export function readSequenceDataArgs<K extends keyof SequenceDataArgs>(
  args: ModelDataArgs,
  options: { who: string; required: readonly K[]; example?: string },
): RequiredSequenceDataArgs<K> {
  const { who, required, example } = options;
  const isCount = (value: unknown): value is number =>
    typeof value === 'number' && Number.isInteger(value) && value > 0;
  const problems: ConfigProblem[] = [];
  const out: Record<string, number> = {};
  for (const key of required) {
    const value = args[key];
    if (isCount(value)) out[key] = value;
    else {
      problems.push({
        path: `modelDataArgs.${key}`,
        message:
          `${who} needs a positive integer ${key} from the data module; use a data module that provides ` +
          `${required.join(', ')} in its modelDataArgs${example ? ` (e.g. ${example})` : ''}`,
        value: value ?? null,
      });
    }
  }
  if (problems.length) throw new ConfigError(problems, `${who} cannot be built from this data module`);
  if (out['num_classes'] === undefined && isCount(args['num_classes'])) out['num_classes'] = args['num_classes'];
  return out as unknown as RequiredSequenceDataArgs<K>;
}

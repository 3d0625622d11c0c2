import type { NamedVariables, ParamGroup } from '../contracts.js';

/**
 * True when `name` matches `pattern`. A pattern with `*` or `?` is a glob over the whole name
 * (`*` spans any characters, `.` and `/` included); otherwise it is a substring test. Matching
 * ignores case because frameworks disagree on `LayerNorm` vs `layer_norm`.
 */
export function matchesPattern(name: string, pattern: string): boolean {
  const lowerName = name.toLowerCase();
  const lowerPattern = pattern.toLowerCase();
  if (!/[*?]/.test(lowerPattern)) return lowerName.includes(lowerPattern);
  const source = lowerPattern
    .split('')
    .map((c) => (c === '*' ? '.*' : c === '?' ? '.' : c.replace(/[.+^${}()|[\]\\]/g, '\\$&')))
    .join('');
  return new RegExp(`^${source}$`, 's').test(lowerName);
}

/**
 * Splits variables into a `decay` group and a `no_decay` group (weight decay 0) for the
 * variables whose name matches any `noDecay` pattern, as is customary for biases, norms and
 * embeddings. Empty groups are left out.
 */
export function buildParamGroups(
  variables: NamedVariables,
  options: { weightDecay: number; noDecay: readonly string[] },
): ParamGroup[] {
  const decay: NamedVariables = {};
  const noDecay: NamedVariables = {};
  for (const [name, variable] of Object.entries(variables)) {
    const exempt = options.noDecay.some((pattern) => matchesPattern(name, pattern));
    (exempt ? noDecay : decay)[name] = variable;
  }
  const groups: ParamGroup[] = [];
  if (Object.keys(decay).length > 0) groups.push({ name: 'decay', variables: decay, weightDecay: options.weightDecay });
  if (Object.keys(noDecay).length > 0) groups.push({ name: 'no_decay', variables: noDecay, weightDecay: 0 });
  return groups;
}

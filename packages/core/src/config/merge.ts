import { deepCopy, isPlainObject, put, joinPath, splitPath, type ConfigNode } from './paths.js';

/** Where each leaf came from: dotted path → file (relative to the cwd when inside it) or `command line`. */
export type Sources = Map<string, string>;

/** Forgets the sources of `path` and everything below it (the root when `path` is empty). */
export function clearSources(sources: Sources, path: string): void {
  for (const key of [...sources.keys()]) {
    if (path === '' || key === path || key.startsWith(`${path}.`)) sources.delete(key);
  }
}

/** Records `source` for every leaf of `value`; lists and empty mappings count as leaves. */
export function recordSources(sources: Sources, path: string, value: unknown, source: string): void {
  if (isPlainObject(value) && Object.keys(value).length > 0) {
    for (const [key, child] of Object.entries(value)) recordSources(sources, joinPath(path, key), child, source);
  } else if (path !== '') {
    sources.set(path, source);
  }
}

function mergeValue(
  parent: ConfigNode,
  key: string,
  path: string,
  value: unknown,
  source: string,
  sources: Sources,
): void {
  const existing = Object.hasOwn(parent, key) ? parent[key] : undefined;
  if (isPlainObject(value) && isPlainObject(existing)) {
    if (Object.keys(value).length > 0) sources.delete(path);
    for (const [childKey, childValue] of Object.entries(value)) {
      mergeValue(existing, childKey, joinPath(path, childKey), childValue, source, sources);
    }
    return;
  }
  // Lists and scalars are replaced wholesale, as in OmegaConf: merging lists element-wise surprises.
  clearSources(sources, path);
  put(parent, key, deepCopy(value));
  recordSources(sources, path, value, source);
}

/**
 * Deep-merges mapping `body` into `root` at package `pkg` (dotted, '' = root): mappings merge key
 * by key, anything else is replaced, later wins. Updates `sources` for every leaf written.
 */
export function mergeAtPackage(
  root: ConfigNode,
  pkg: string,
  body: ConfigNode,
  source: string,
  sources: Sources,
): void {
  const keys = splitPath(pkg);
  let node = root;
  let path = '';
  for (const key of keys.slice(0, -1)) {
    path = joinPath(path, key);
    if (!Object.hasOwn(node, key) || !isPlainObject(node[key])) {
      clearSources(sources, path);
      put(node, key, {});
    }
    node = node[key] as ConfigNode;
  }
  const last = keys.at(-1);
  if (last === undefined) {
    for (const [key, value] of Object.entries(body)) mergeValue(root, key, key, value, source, sources);
  } else {
    mergeValue(node, last, joinPath(path, last), body, source, sources);
  }
}

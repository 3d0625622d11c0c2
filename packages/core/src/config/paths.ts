/** A composed config: plain JSON-like objects, arrays and scalars. */
export type ConfigNode = Record<string, unknown>;

/**
 * True for a mapping: an object whose prototype is `Object.prototype` or `null` (what YAML and
 * JSON produce). Arrays, tensors, dates and other class instances are not mappings.
 */
export function isPlainObject(value: unknown): value is ConfigNode {
  if (value === null || typeof value !== 'object') return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

/** Splits a dotted path; the empty string is the root. */
export function splitPath(path: string): string[] {
  return path === '' ? [] : path.split('.');
}

export function joinPath(parent: string, key: string): string {
  return parent === '' ? key : `${parent}.${key}`;
}

/** Own-property write: a `__proto__` key from a config file stays data instead of changing a prototype. */
export function put(obj: ConfigNode, key: string, value: unknown): void {
  Object.defineProperty(obj, key, { value, writable: true, enumerable: true, configurable: true });
}

function child(node: unknown, key: string): { found: boolean; value?: unknown } {
  if (Array.isArray(node)) {
    const index = /^\d+$/.test(key) ? Number(key) : -1;
    return index >= 0 && index < node.length ? { found: true, value: node[index] } : { found: false };
  }
  if (isPlainObject(node) && Object.hasOwn(node, key)) return { found: true, value: node[key] };
  return { found: false };
}

/** Whether `path` (dotted; numeric segments index lists) exists in `obj`. */
export function hasPath(obj: unknown, path: string): boolean {
  let node = obj;
  for (const key of splitPath(path)) {
    const next = child(node, key);
    if (!next.found) return false;
    node = next.value;
  }
  return true;
}

/** The value at a dotted path (numeric segments index lists), or `undefined` when absent. */
export function getPath(obj: unknown, path: string): unknown {
  let node = obj;
  for (const key of splitPath(path)) {
    const next = child(node, key);
    if (!next.found) return undefined;
    node = next.value;
  }
  return node;
}

/**
 * Sets the value at a dotted path, creating missing intermediate mappings. Throws a plain `Error`
 * (callers turn it into a ConfigProblem) when an intermediate value is a scalar.
 */
export function setPath(obj: ConfigNode, path: string, value: unknown): void {
  const keys = splitPath(path);
  if (keys.length === 0) throw new Error('cannot replace the root of the config');
  let node: unknown = obj;
  for (let i = 0; i < keys.length; i++) {
    const key = keys[i]!;
    const last = i === keys.length - 1;
    if (Array.isArray(node)) {
      const index = /^\d+$/.test(key) ? Number(key) : -1;
      if (index < 0 || index >= node.length) {
        throw new Error(
          `'${keys.slice(0, i).join('.')}' is a list of ${node.length} items; '${key}' is not an index in it`,
        );
      }
      if (last) node[index] = value;
      else node = node[index];
    } else if (isPlainObject(node)) {
      if (last) put(node, key, value);
      else {
        if (!Object.hasOwn(node, key) || node[key] === undefined) put(node, key, {});
        node = node[key];
      }
    } else {
      throw new Error(
        `'${keys.slice(0, i).join('.')}' is a ${describe(node)}, not a mapping, so it has no key '${key}'`,
      );
    }
  }
}

/** Removes the value at a dotted path; returns whether something was removed. */
export function deletePath(obj: ConfigNode, path: string): boolean {
  const keys = splitPath(path);
  const last = keys.pop();
  if (last === undefined) return false;
  const parent = getPath(obj, keys.join('.'));
  if (Array.isArray(parent) && child(parent, last).found) {
    parent.splice(Number(last), 1);
    return true;
  }
  if (isPlainObject(parent) && Object.hasOwn(parent, last)) {
    delete parent[last];
    return true;
  }
  return false;
}

/** Every path in the tree (mappings are descended, lists are not), for "did you mean". */
export function allPaths(obj: unknown, prefix = ''): string[] {
  if (!isPlainObject(obj)) return [];
  return Object.entries(obj).flatMap(([key, value]) => {
    const path = joinPath(prefix, key);
    return [path, ...allPaths(value, path)];
  });
}

export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'list';
  if (isPlainObject(value)) return 'mapping';
  return typeof value;
}

/**
 * Deep copy of mappings and lists. Unlike structuredClone it does not preserve shared references,
 * which YAML aliases create and which would make one override silently change two keys.
 */
export function deepCopy<T>(value: T): T {
  if (Array.isArray(value)) return value.map((item) => deepCopy(item)) as T;
  if (isPlainObject(value)) {
    const copy: ConfigNode = {};
    for (const [k, v] of Object.entries(value)) put(copy, k, deepCopy(v));
    return copy as T;
  }
  return value;
}

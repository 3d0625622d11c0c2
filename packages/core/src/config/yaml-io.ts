import { readFileSync } from 'node:fs';
import { Document, isMap, isScalar, isSeq, LineCounter, parseDocument, type Node as YamlNode } from 'yaml';
import type { ConfigProblem } from '../errors.js';
import { deepCopy, isPlainObject, joinPath, type ConfigNode } from './paths.js';

/** One raw entry of a `defaults:` list, with the `file:line` it was written at. */
export interface RawDefault {
  value: unknown;
  where: string;
}

/** A config file split into its parts; `problems` is non-empty when it could not be read cleanly. */
export interface LoadedFile {
  body: ConfigNode;
  defaults?: RawDefault[];
  /** Value of a `# @package <path>` header in the leading comment lines. */
  packageHeader?: string;
  problems: ConfigProblem[];
}

const PACKAGE_HEADER = /^#\s*@package\s+(\S+)\s*$/;

function packageHeaderOf(text: string): string | undefined {
  for (const line of text.split(/\r?\n/)) {
    const trimmed = line.trim();
    if (trimmed === '') continue;
    if (!trimmed.startsWith('#')) return undefined;
    const match = PACKAGE_HEADER.exec(trimmed);
    if (match) return match[1];
  }
  return undefined;
}

/** Reads and parses a YAML config file; `display` is the name used in messages. */
export function loadConfigFile(file: string, display: string): LoadedFile {
  const empty: ConfigNode = {};
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    return {
      body: empty,
      problems: [{ path: '', message: `cannot read config file: ${(error as Error).message}`, source: display }],
    };
  }
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: true });
  if (doc.errors.length > 0) {
    const problems = doc.errors.map((error): ConfigProblem => {
      const pos = error.linePos?.[0];
      // yaml appends " at line L, column C:" and a code frame; keep the one-line reason only.
      const reason = error.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '');
      return {
        path: '',
        message: `YAML syntax error: ${reason}`,
        source: pos ? `${display}:${pos.line}:${pos.col}` : display,
      };
    });
    return { body: empty, problems };
  }
  const packageHeader = packageHeaderOf(text);
  const data: unknown = doc.toJS({ maxAliasCount: 1000 });
  if (data === null || data === undefined) return { body: empty, packageHeader, problems: [] };
  if (!isPlainObject(data)) {
    return {
      body: empty,
      problems: [
        {
          path: '',
          message:
            `a config file must contain a mapping at the top ` +
            `level, not a ${Array.isArray(data) ? 'list' : 'scalar'}`,
          source: display,
        },
      ],
    };
  }
  // toJS shares objects between YAML aliases; clone so merging into one alias cannot change another.
  const body = deepCopy(data);
  if (!Object.hasOwn(body, 'defaults')) return { body, packageHeader, problems: [] };
  const defaultsNode = doc.get('defaults', true) as YamlNode | undefined;
  delete body.defaults;
  const where = (node: YamlNode | undefined): string => {
    const start = node?.range?.[0];
    return start === undefined ? display : `${display}:${lineCounter.linePos(start).line}`;
  };
  if (isScalar(defaultsNode) && defaultsNode.value === null) return { body, defaults: [], packageHeader, problems: [] };
  if (!isSeq(defaultsNode)) {
    return {
      body,
      packageHeader,
      problems: [
        {
          path: 'defaults',
          message: 'the defaults list must be a YAML list, e.g. "defaults:\\n  - task: classification\\n  - _self_"',
          source: where(defaultsNode),
        },
      ],
    };
  }
  const defaults = defaultsNode.items.map((item) => ({
    value: (item as YamlNode).toJSON(),
    where: where(item as YamlNode),
  }));
  return { body, defaults, packageHeader, problems: [] };
}

/** Options for {@link toYaml}. */
export interface ToYamlOptions {
  /** Dotted path → origin, as returned by `composeConfig`; adds a `# from <origin>` comment per value. */
  sources?: Map<string, string>;
}

function annotate(node: unknown, path: string, sources: Map<string, string>): void {
  if (!isMap(node)) return;
  for (const pair of node.items) {
    const key = isScalar(pair.key) ? String(pair.key.value) : String(pair.key);
    const childPath = joinPath(path, key);
    const value = pair.value as YamlNode | null;
    const source = sources.get(childPath);
    if (isMap(value) && value.items.length > 0) {
      annotate(value, childPath, sources);
    } else if (source !== undefined && value !== null) {
      // Short leaf collections print inline so the comment sits on the same line as the key.
      const collection = isSeq(value) || isMap(value);
      if (collection && value.items.every((item) => isScalar(item))) value.flow = true;
      if (isScalar(value) || (collection && value.flow)) value.comment = ` from ${source}`;
      else if (isScalar(pair.key)) pair.key.comment = ` from ${source}`;
    }
  }
}

/** Serialises a config to YAML; with `sources`, each value gets a `# from <file>` comment. */
export function toYaml(config: ConfigNode, options: ToYamlOptions = {}): string {
  const doc = new Document(config);
  if (options.sources) annotate(doc.contents, '', options.sources);
  return doc.toString({ lineWidth: 0 });
}

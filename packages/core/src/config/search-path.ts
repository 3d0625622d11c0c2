import { existsSync, readdirSync, statSync } from 'node:fs';
import { isAbsolute, join, relative } from 'node:path';

const EXTENSIONS = ['.yaml', '.yml'];

function isFile(path: string): boolean {
  try {
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

/** How a config file is named in messages and `# from` comments: relative to the cwd when inside it. */
export function displayPath(file: string): string {
  const rel = relative(process.cwd(), file);
  return rel !== '' && !rel.startsWith('..') && !isAbsolute(rel) ? rel : file;
}

/** The first `<dir>/<name>.yaml` (or `.yml`) along the search path, or undefined. */
export function findConfigFile(searchPath: string[], name: string): string | undefined {
  for (const dir of searchPath) {
    for (const ext of EXTENSIONS) {
      const candidate = join(dir, `${name}${ext}`);
      if (isFile(candidate)) return candidate;
    }
  }
  return undefined;
}

function entries(dir: string): Array<{ name: string; dir: boolean }> {
  try {
    return readdirSync(dir, { withFileTypes: true })
      .filter((e) => !e.name.startsWith('.') && e.name !== 'node_modules')
      .map((e) => ({ name: e.name, dir: e.isDirectory() }));
  } catch {
    return [];
  }
}

function configFilesUnder(dir: string, prefix = ''): string[] {
  return entries(dir).flatMap((entry) => {
    const rel = prefix === '' ? entry.name : `${prefix}/${entry.name}`;
    if (entry.dir) return configFilesUnder(join(dir, entry.name), rel);
    const ext = EXTENSIONS.find((e) => entry.name.endsWith(e));
    return ext ? [rel.slice(0, -ext.length)] : [];
  });
}

/**
 * Every option of a config group across the whole search path, sorted: file paths below
 * `<dir>/<group>/` without the extension, so nested options read `vision/igpt`.
 */
export function listGroupOptions(searchPath: string[], group: string): string[] {
  const clean = group.replace(/^\/+|\/+$/g, '');
  const options = new Set(
    searchPath.flatMap((dir) => (existsSync(join(dir, clean)) ? configFilesUnder(join(dir, clean)) : [])),
  );
  return [...options].sort();
}

/** Every config group (a directory holding config files, at any depth) across the search path, sorted. */
export function listGroups(searchPath: string[]): string[] {
  const groups = new Set<string>();
  for (const dir of searchPath) {
    for (const file of configFilesUnder(dir)) {
      const parts = file.split('/').slice(0, -1);
      for (let i = 1; i <= parts.length; i++) groups.add(parts.slice(0, i).join('/'));
    }
  }
  return [...groups].sort();
}

/** Top-level config files (candidates for the primary config) across the search path, sorted. */
export function listPrimaryConfigs(searchPath: string[]): string[] {
  const names = new Set(
    searchPath.flatMap((dir) =>
      entries(dir)
        .filter((e) => !e.dir)
        .flatMap((e) => EXTENSIONS.filter((ext) => e.name.endsWith(ext)).map((ext) => e.name.slice(0, -ext.length))),
    ),
  );
  return [...names].sort();
}

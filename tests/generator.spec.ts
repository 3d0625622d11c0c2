/**
 * The task generator end to end, in a throwaway copy of the workspace (uncommitted work included):
 * scaffold `task-demo`, then show that the project references stay in sync, that it builds with
 * everything else, and that the generator refuses a taken or invalid name without writing.
 * new-task-fresh-clone.spec.ts runs the rest of the documented flow (tests, typecheck, training,
 * `taskforge list`) from a fresh clone. The tests share the copy and run in order.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { stripVTControlCharacters } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { run, type RunResult } from './fixtures/cli.js';
import { copyWorkspace, type WorkspaceCopy } from './fixtures/workspace-copy.js';

const output = (r: RunResult) => stripVTControlCharacters(r.stdout + r.stderr);

/** Every file except node_modules and Nx's own cache, with size and mtime: enough to see a write. */
function snapshot(root: string): Map<string, string> {
  const files = new Map<string, string>();
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) {
        if (entry.name !== 'node_modules' && entry.name !== '.nx') walk(path);
      } else {
        const s = statSync(path);
        files.set(relative(root, path), `${s.size}@${s.mtimeMs}`);
      }
    }
  };
  walk(root);
  return files;
}

describe('nx g @taskforge/nx-plugin:task demo, in a copy of the workspace', () => {
  let ws: WorkspaceCopy;
  const nx = (...args: string[]) => run('npx', ['nx', ...args], { cwd: ws.root });
  const generate = (name: string) => nx('g', '@taskforge/nx-plugin:task', name, '--skipInstall', '--no-interactive');

  beforeAll(async () => {
    // Build outputs come along so the builds below only compile what changed (the new package).
    ws = copyWorkspace({ buildOutputs: true });
    const build = await nx('build', 'nx-plugin');
    expect(build.code, output(build)).toBe(0);
  }, 300_000);
  afterAll(() => ws?.remove());

  it('scaffolds packages/task-demo', async () => {
    const r = await generate('demo');
    expect(r.code, output(r)).toBe(0);
    const pkg = JSON.parse(readFileSync(join(ws.root, 'packages/task-demo/package.json'), 'utf8'));
    expect(pkg).toMatchObject({ name: '@taskforge/task-demo', taskforge: { conf: 'conf' } });
    expect(existsSync(join(ws.root, 'packages/task-demo/conf/task/demo.yaml'))).toBe(true);
    // What `npm install` does for a new workspace package (skipped: the copy shares node_modules).
    ws.linkPackage('task-demo', 'packages/task-demo');
  });

  it('leaves the TypeScript project references in sync (CI runs `nx sync:check`; Nx refuses to run tasks otherwise)', async () => {
    const r = await nx('sync:check');
    expect(r.code, output(r)).toBe(0);
  });

  it('nx run-many -t build builds every package, the new one included', async () => {
    const r = await nx('run-many', '-t', 'build');
    expect(r.code, output(r)).toBe(0);
    for (const file of ['dist/index.js', 'dist/index.d.ts']) expect(existsSync(join(ws.root, 'packages/task-demo', file)), file).toBe(true);
  });

  // Its tests, typecheck, training and discovery are run from a fresh clone, as a new user runs
  // them, by new-task-fresh-clone.spec.ts; this copy checks what needs the working tree.

  it('refuses to generate demo again, says why, and writes nothing', async () => {
    const before = snapshot(ws.root);
    const r = await generate('demo');
    expect(r.code).not.toBe(0);
    expect(output(r)).toContain("Cannot generate task 'demo'");
    expect(output(r)).toContain('the folder packages/task-demo already exists');
    expect(output(r)).toContain('Nothing was written');
    expect(snapshot(ws.root)).toEqual(before);
  });

  it('refuses an invalid name with the rule and a suggestion, and writes nothing', async () => {
    const before = snapshot(ws.root);
    const r = await generate('Bad_Name');
    expect(r.code).not.toBe(0);
    expect(output(r)).toContain("Invalid task name 'Bad_Name'");
    expect(output(r)).toContain("'bad-name'");
    expect(snapshot(ws.root)).toEqual(before);
  });
});

import { describe, expect, it } from 'vitest';
import { run } from './fixtures/cli.js';

describe('workspace', () => {
  it('Nx lists every package', async () => {
    const r = await run('npx', ['nx', 'show', 'projects', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const projects = JSON.parse(r.stdout) as string[];
    for (const name of ['core', 'data-cifar', 'backbone-gpt2', 'task-igpt', 'cli', 'nx-plugin', 'e2e'])
      expect(projects).toContain(name);
  });
});

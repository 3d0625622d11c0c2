/**
 * Config errors as a new user meets them: every problem of one command in one message, each
 * naming its key, value and source, with a did-you-mean before any other hint, and fixes that
 * work when pasted into a shell (each is run here through composition and validation).
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { main } from './main.js';

function io() {
  const out = { stdout: '', stderr: '' };
  return { out, io: { stdout: (t: string) => void (out.stdout += t), stderr: (t: string) => void (out.stderr += t) } };
}

/** The workspace's own conf/ (this package's dir has none): the default run, task vision/igpt. */
const WORKSPACE_CONF = join(import.meta.dirname, '../../../conf');

async function run(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const { out, io: streams } = io();
  const code = await main(args.includes('--config-dir') ? args : [...args, '--config-dir', WORKSPACE_CONF], streams);
  return { code, ...out };
}

/** The shell words after `write ` in a message, as a shell would pass them. */
function fixes(message: string): string[] {
  const words = [...message.matchAll(/write ("[^"]*"|'[^']*')/g)].map((m) => m[1]!);
  return words.map((word) => execFileSync('sh', ['-c', `printf '%s' ${word}`], { encoding: 'utf8' }));
}

/** The problem lines of a ConfigError message. */
const problemLines = (stderr: string) => stderr.split('\n').filter((l) => l.startsWith('  - '));

/** `<dir>/config.yaml`: the iGPT root defaults, then `lines` (so the file's line 5 is lines[0]); returns its path. */
function writeRootConfig(dir: string, lines: string[]): string {
  const file = join(dir, 'config.yaml');
  writeFileSync(
    file,
    ['defaults:', '  - trainer: default', '  - task: vision/igpt', '  - _self_', ...lines, ''].join('\n'),
  );
  return file;
}

describe('a misspelt key in a closed schema', () => {
  for (const [override, key, right] of [
    ['trainer.max_step=5', 'trainer.max_step', 'trainer.max_steps=5'],
    ['dataset.batchsize=4', 'dataset.batchsize', 'dataset.batch_size=4'],
    ['+trainer.max_step=5', 'trainer.max_step', 'trainer.max_steps=5'],
  ] as const) {
    it(`${override}: did-you-mean first, no '+key' hint, and every fix offered passes`, async () => {
      const bad = await run(['config', override]);
      expect(bad.code).toBe(2);
      const [line, ...rest] = problemLines(bad.stderr);
      expect(rest).toEqual([]);
      expect(line).toContain(`${key}:`);
      expect(line).toContain(`[from command line] ${override}`);
      // The did-you-mean comes before any fix, and no fix adds the misspelt key (it would fail).
      expect(line!.indexOf('did you mean')).toBeGreaterThan(0);
      expect(line!.indexOf('did you mean')).toBeLessThan(line!.indexOf('fix:'));
      const offered = fixes(line!);
      expect(offered.filter((f) => f.startsWith(`+${key}=`))).toEqual([]);
      expect(offered[0]).toBe(right);
      for (const fix of offered) {
        const good = await run(['config', fix]);
        expect(good.code, `${fix}: ${good.stderr}`).toBe(0);
      }
    });
  }

  it('offers +key where the node is open (a record of callbacks), and that fix passes', async () => {
    const bad = await run(['config', 'trainer.callbacks.my_cb=null']);
    expect(bad.code).toBe(2);
    const offered = fixes(bad.stderr);
    expect(offered).toContain('+trainer.callbacks.my_cb=null');
    for (const fix of offered) expect((await run(['config', fix])).code, fix).toBe(0);
  });

  it('does not offer +key under a closed mapping that does not exist yet', async () => {
    const bad = await run(['config', 'trainer.bogus.x=1']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).not.toContain('+trainer.bogus.x=1');
    // And the trial was right: the +key form is refused.
    expect((await run(['config', '+trainer.bogus.x=1'])).code).toBe(2);
  });
});

describe('all problems of one command in one message', () => {
  it('reports key, value and syntax problems together, each naming its key and override', async () => {
    const overrides = ['trainer.max_step=5', 'trainer.max_epochs=abc', 'dataset.batch_size=-1', 'a=b=c'];
    const bad = await run(['config', ...overrides]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/Invalid configuration \(4 problems\)/);
    const lines = problemLines(bad.stderr);
    expect(lines).toHaveLength(4);
    for (const override of overrides.slice(0, 3)) {
      const key = override.slice(0, override.indexOf('='));
      expect(lines.find((l) => l.startsWith(`  - ${key}: `))).toContain(`[from command line] ${override}`);
    }
    expect(lines.find((l) => l.includes("'a=b=c'"))).toBeDefined();
  });
});

describe('value errors', () => {
  it('name the key, value, the override as typed and a fix that passes', async () => {
    for (const [override, got] of [
      ['trainer.max_epochs=abc', '"abc"'],
      ['dataset.batch_size=-1', '-1'],
    ] as const) {
      const bad = await run(['config', override]);
      expect(bad.code).toBe(2);
      const [line] = problemLines(bad.stderr);
      const key = override.slice(0, override.indexOf('='));
      expect(line).toMatch(new RegExp(`^  - ${key.replace('.', '\\.')}: expected `));
      expect(line).toContain(`(got ${got}) [from command line] ${override}; fix: write '`);
      const [fix] = fixes(line!);
      const good = await run(['config', fix!]);
      expect(good.code, good.stderr).toBe(0);
    }
  });

  const dir = mkdtempSync(join(tmpdir(), 'taskforge-conf-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('from a YAML file name the file and line, with a fix that passes', async () => {
    const file = writeRootConfig(dir, ['trainer:', '  max_epochs: abc']);
    const bad = await run(['config', '--config-dir', dir]);
    expect(bad.code).toBe(2);
    const [line] = problemLines(bad.stderr);
    expect(line).toContain(`trainer.max_epochs: expected an integer >= -1 (got "abc") [from ${file}:6]`);
    expect(line).toContain(`fix: edit ${file}:6, or write 'trainer.max_epochs=1' (the default)`);
    const good = await run(['config', '--config-dir', dir, ...fixes(line!)]);
    expect(good.code, good.stderr).toBe(0);
  });
});

describe('user reports from Hydra, OmegaConf and Lightning, tried against taskforge', () => {
  it('an interpolation to a missing key is reported once, not again at every value that refers to it', async () => {
    const bad = await run(['config', 'trainer.seed=${trainer.missing}']);
    expect(bad.code).toBe(2);
    const lines = problemLines(bad.stderr);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain("trainer.seed: interpolation '${trainer.missing}' refers to 'trainer.missing'");
    expect(lines[0]).toContain('[from command line] trainer.seed=${trainer.missing}');
  });

  it('a misspelt key inside an interpolation: the fix keeps the key and corrects the reference (s5: finding 2)', async () => {
    for (const override of ['task.init_seed=${trainer.sed}', '++task.init_seed=${trainer.sed}']) {
      const bad = await run(['config', override]);
      expect(bad.code).toBe(2);
      const [line, ...rest] = problemLines(bad.stderr);
      expect(rest).toEqual([]);
      expect(line).toContain("task.init_seed: interpolation '${trainer.sed}' refers to 'trainer.sed'");
      expect(line).toContain("did you mean 'trainer.seed'");
      const offered = fixes(line!);
      expect(offered[0]).toBe(`${override.startsWith('++') ? '++' : ''}task.init_seed=\${trainer.seed}`);
      expect(offered.filter((f) => f.startsWith('trainer.seed='))).toEqual([]);
      for (const fix of offered) {
        const good = await run(['config', fix]);
        expect(good.code, `${fix}: ${good.stderr}`).toBe(0);
      }
    }
  });

  it('a misspelt key inside an interpolation in a YAML file: the fix names the file, line and key', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'taskforge-interp-'));
    const file = writeRootConfig(dir, ['task:', '  init_seed: ${trainer.sed}']);
    try {
      const bad = await run(['config', '--config-dir', dir]);
      expect(bad.code).toBe(2);
      const [line] = problemLines(bad.stderr);
      expect(line).toContain(`[from ${file}:6]`);
      expect(line).toContain(
        `fix: edit ${file}:6 so that task.init_seed is \${trainer.seed}, or write 'task.init_seed=\${trainer.seed}'`,
      );
      const good = await run(['config', '--config-dir', dir, ...fixes(line!)]);
      expect(good.code, good.stderr).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('max_epochs=-1 with no max_steps (Lightning: train forever) is refused by `config` too, with a fix that passes', async () => {
    const bad = await run(['config', 'trainer.max_epochs=-1']);
    expect(bad.code).toBe(2);
    const [line] = problemLines(bad.stderr);
    expect(line).toContain('trainer.max_epochs: max_epochs and max_steps are both -1');
    expect(line).toContain('[from command line] trainer.max_epochs=-1');
    for (const fix of fixes(line!)) expect((await run(['config', fix])).code, fix).toBe(0);
    expect((await run(['config', 'trainer.max_epochs=-1', 'trainer.max_steps=10'])).code).toBe(0);
  });

  it('key= (empty value) names the key and offers the configured value', async () => {
    const bad = await run(['config', 'trainer.run_dir=']);
    expect(bad.code).toBe(2);
    const [line] = problemLines(bad.stderr);
    expect(line).toContain(
      'trainer.run_dir: expected a non-empty string or null (got "") [from command line] trainer.run_dir=',
    );
    for (const fix of fixes(line!)) expect((await run(['config', fix])).code, fix).toBe(0);
  });

  it('gradient_clip_val=0 (Lightning: no clipping) is accepted as null', async () => {
    const good = await run(['config', 'trainer.gradient_clip_val=0']);
    expect(good.code, good.stderr).toBe(0);
    expect(good.stdout).toContain('gradient_clip_val: null # from command line');
  });
});

describe('a misspelt config group option', () => {
  it('gets the did-you-mean as a fix that passes', async () => {
    const bad = await run(['config', 'task=vision/igtp']);
    expect(bad.code).toBe(2);
    const [line] = problemLines(bad.stderr);
    expect(line).toContain(
      "did you mean 'vision/igpt'? [from command line] task=vision/igtp; fix: write 'task=vision/igpt'",
    );
    for (const fix of fixes(line!)) expect((await run(['config', fix])).code, fix).toBe(0);
  });
});

describe('a bad group override does not hide the other problems', () => {
  it('reports the group, the key and the value problems in one message', async () => {
    const bad = await run(['config', 'task=vision/igtp', 'trainer.max_step=5', 'trainer.max_epochs=abc', 'a=b=c']);
    expect(bad.code).toBe(2);
    const lines = problemLines(bad.stderr);
    expect(lines).toHaveLength(4);
    expect(lines.join('\n')).toContain("did you mean 'vision/igpt'? [from command line] task=vision/igtp");
    expect(lines.join('\n')).toContain('[from command line] trainer.max_step=5');
    expect(lines.join('\n')).toContain('[from command line] trainer.max_epochs=abc');
    expect(lines.join('\n')).toContain("cannot parse override 'a=b=c'");
  });
});

import { describe, expect, it } from 'vitest';
import { commandOptions, main } from './main.js';

function io() {
  const out = { stdout: '', stderr: '' };
  return { out, io: { stdout: (t: string) => void (out.stdout += t), stderr: (t: string) => void (out.stderr += t) } };
}

describe('commandOptions', () => {
  it('splits ckpt= from overrides and accepts the --key=value spelling', () => {
    expect(commandOptions(['trainer.max_steps=3', '--task.classify=true', 'ckpt=out/last', '--verbose', '~trainer.loggers.csv']))
      .toEqual({ overrides: ['trainer.max_steps=3', 'task.classify=true', '~trainer.loggers.csv'], ckpt: 'out/last' });
    expect(commandOptions(['--ckpt=a/b'])).toEqual({ overrides: [], ckpt: 'a/b' });
  });
});

describe('main', () => {
  it('prints the version and exits 0', async () => {
    const { out, io: streams } = io();
    expect(await main(['--version'], streams)).toBe(0);
    expect(out.stdout.trim()).toMatch(/^\d+\.\d+\.\d+$/);
  });

  it('exits 2 on an unknown command or option, with a usage hint', async () => {
    const { out, io: streams } = io();
    expect(await main(['trian'], streams)).toBe(2);
    expect(out.stderr).toContain("unknown command 'trian'");
    expect(out.stderr).toContain('--help');
  });

  it('exits 2 with every config problem and no stack trace; --verbose adds the stack', async () => {
    const { out, io: streams } = io();
    expect(await main(['config', 'trainer.max_stepz=3'], streams)).toBe(2);
    expect(out.stderr).toMatch(/^error: /);
    expect(out.stderr).toContain("did you mean 'trainer.max_steps'");
    expect(out.stderr).not.toMatch(/\n\s+at /);
    const verbose = io();
    expect(await main(['config', 'trainer.max_stepz=3', '--verbose'], verbose.io)).toBe(2);
    expect(verbose.out.stderr).toMatch(/\n\s+at /);
  });

  it('prints the composed config with sources', async () => {
    const { out, io: streams } = io();
    expect(await main(['config', 'trainer.max_steps=3'], streams)).toBe(0);
    expect(out.stdout).toContain('max_steps: 3 # from command line');
  });
});

import { describe, expect, it } from 'vitest';
import { resolveInterpolations } from './interpolate.js';
import type { ConfigNode } from './paths.js';

function resolve(config: ConfigNode, env: NodeJS.ProcessEnv = {}) {
  const sources = new Map<string, string>([['run.name', 'conf/config.yaml']]);
  const problems = resolveInterpolations(config, sources, env);
  return { config, problems, sources };
}

describe('resolveInterpolations', () => {
  it('keeps the type of a whole-value reference and stringifies embedded ones', () => {
    const { config, problems } = resolve({
      model: { width: 64, dropout: 0.1, act: 'gelu', tied: false, layers: [1, 2] },
      head: { width: '${model.width}', tied: '${model.tied}', copy: '${model}', second: '${model.layers.1}' },
      name: 'w${model.width}_${model.act}_${model.tied}',
      literal: 'cost \\${not.a.ref} and ${model.act}',
      list: ['${model.dropout}', 'x'],
    });
    expect(problems).toEqual([]);
    expect(config.head).toEqual({
      width: 64,
      tied: false,
      copy: { width: 64, dropout: 0.1, act: 'gelu', tied: false, layers: [1, 2] },
      second: 2,
    });
    expect(config.name).toBe('w64_gelu_false');
    expect(config.literal).toBe('cost ${not.a.ref} and gelu');
    expect(config.list).toEqual([0.1, 'x']);
  });

  it('follows chains, references into interpolated mappings, and relative references', () => {
    const { config, problems } = resolve({
      a: '${b}',
      b: '${c.value}',
      c: { value: 3, sibling: '${.value}', up: '${..b}' },
      alias: '${c}',
      through: '${alias.value}',
    });
    expect(problems).toEqual([]);
    expect(config).toEqual({
      a: 3,
      b: 3,
      c: { value: 3, sibling: 3, up: 3 },
      alias: { value: 3, sibling: 3, up: 3 },
      through: 3,
    });
  });

  it('reads environment variables typed like command-line values, with defaults', () => {
    const { config, problems } = resolve(
      {
        home: '${env:DATA_HOME}',
        cache: '${env:CACHE,/tmp/cache}/x',
        token: '${env:TOKEN,null}',
        seed: '${oc.env:SEED}',
      },
      { DATA_HOME: '/data', SEED: '7' },
    );
    expect(problems).toEqual([]);
    expect(config).toEqual({ home: '/data', cache: '/tmp/cache/x', token: null, seed: 7 });
  });

  it('reports a missing reference at the referencing path, with suggestions and source, once', () => {
    const { problems } = resolve({ model: { width: 8 }, run: { name: 'run_${model.widht}' }, other: '${run.name}' });
    expect(problems).toEqual([
      {
        path: 'run.name',
        message: "interpolation '${model.widht}' refers to 'model.widht', which does not exist",
        value: 'run_${model.widht}',
        suggestions: ['model.width'],
        // The fix rewrites the reference inside the value, keeping the key that holds it.
        correctedValues: ['run_${model.width}'],
        source: 'conf/config.yaml',
      },
    ]);
  });

  it('never suggests the key holding the reference, a key inside it or one around it (each fix would be a cycle)', () => {
    const { problems } = resolve({
      trainer: { seed: '${trainer.sed}', sedd: 1 },
      data: { seeds: { a: '${data.seed}' } },
    });
    expect(problems.map((p) => [p.path, p.suggestions])).toEqual([
      ['trainer.seed', ['trainer.sedd']],
      ['data.seeds.a', []],
    ]);
  });

  it('reports cycles with the chain, unset variables, unknown resolvers and bad syntax together', () => {
    const { problems } = resolve({
      a: '${b}',
      b: { c: '${a}' },
      d: '${env:NOPE}',
      d2: '${oc.env:NOPE_X}',
      e: '${evn:HOME}',
      f: 'x${a',
      g: 'text',
      h: '${g.h}',
      self: '${self}',
    });
    expect(problems.map((p) => [p.path, p.message])).toEqual([
      ['a', 'interpolation cycle: a -> b -> b.c -> a'],
      ['d', "environment variable 'NOPE' is not set; set it, or give a default with '${env:NOPE,default}'"],
      // In the spelling the user wrote (s6: finding 12).
      ['d2', "environment variable 'NOPE_X' is not set; set it, or give a default with '${oc.env:NOPE_X,default}'"],
      ['e', "unknown resolver 'evn' in '${evn:HOME}'; available: env (${env:NAME} or ${env:NAME,default})"],
      ['f', "unterminated interpolation: '${a' has no closing '}' (write '\\${' for a literal '${')"],
      ['h', "interpolation '${g.h}' refers to 'g.h', which does not exist ('g' is a string)"],
      ['self', 'interpolation cycle: self -> self'],
    ]);
    expect(problems[3]!.suggestions).toEqual(['env']);
  });

  it("says what taskforge does instead of Hydra's own resolvers (now, hydra)", () => {
    const { problems } = resolve({ dir: 'out/${now:%H-%M-%S}', cwd: '${hydra:runtime.cwd}' });
    expect(problems[0]!.message).toContain(
      "unknown resolver 'now' in '${now:%H-%M-%S}'; available: env (${env:NAME} or ${env:NAME,default}); " +
        'taskforge names a run dir outputs/<date>/<time> itself when trainer.run_dir is null',
    );
    expect(problems[1]!.message).toContain('taskforge never changes directory, so relative paths resolve against');
  });
});

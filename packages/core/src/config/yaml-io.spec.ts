import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { loadConfigFile, toYaml } from './yaml-io.js';

const dir = mkdtempSync(join(tmpdir(), 'taskforge-yaml-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function load(text: string) {
  const file = join(dir, 'f.yaml');
  writeFileSync(file, text);
  return loadConfigFile(file, 'conf/f.yaml');
}

describe('loadConfigFile', () => {
  it('splits off the defaults list with line numbers and reads the @package header', () => {
    const loaded = load('# @package _global_\ndefaults:\n  - task: igpt\n  - _self_\nx: 1\n');
    expect(loaded).toEqual({
      body: { x: 1 },
      defaults: [
        { value: { task: 'igpt' }, where: 'conf/f.yaml:3' },
        { value: '_self_', where: 'conf/f.yaml:4' },
      ],
      packageHeader: '_global_',
      problems: [],
    });
  });

  it('ignores a @package comment that is not in the leading comment block', () => {
    expect(load('x: 1\n# @package _global_\n').packageHeader).toBeUndefined();
  });

  it('reports syntax errors, duplicate keys and non-mapping files with file, line and column', () => {
    expect(load('a: 1\na: 2\n').problems).toEqual([
      { path: '', message: 'YAML syntax error: Map keys must be unique', source: 'conf/f.yaml:2:1' },
    ]);
    expect(load('- 1\n').problems[0]!.message).toBe(
      'a config file must contain a mapping at the top level, not a list',
    );
    expect(load('defaults: {a: 1}\n').problems[0]).toMatchObject({ path: 'defaults', source: 'conf/f.yaml:1' });
  });

  it('does not let merging into one YAML alias change another', () => {
    const { body } = load('base: &b {lr: 1}\ncopy: *b\n');
    (body.copy as { lr: number }).lr = 2;
    expect(body.base).toEqual({ lr: 1 });
  });
});

describe('toYaml', () => {
  const config = { model: { width: 8, layers: [1, 2], empty: {}, blocks: [{ a: 1 }] }, seed: 3 };

  it('round-trips the config', () => {
    expect(parse(toYaml(config))).toEqual(config);
  });

  it('adds a "# from" comment to every value when given sources', () => {
    const sources = new Map([
      ['model.width', 'conf/model/small.yaml'],
      ['model.layers', 'command line'],
      ['model.empty', 'conf/config.yaml'],
      ['model.blocks', 'conf/config.yaml'],
      ['seed', 'conf/config.yaml'],
    ]);
    const text = toYaml(config, { sources });
    expect(text).toBe(
      [
        'model:',
        '  width: 8 # from conf/model/small.yaml',
        '  layers: [ 1, 2 ] # from command line',
        '  empty: {} # from conf/config.yaml',
        '  blocks: # from conf/config.yaml',
        '    - a: 1',
        'seed: 3 # from conf/config.yaml',
        '',
      ].join('\n'),
    );
    expect(parse(text)).toEqual(config);
  });
});

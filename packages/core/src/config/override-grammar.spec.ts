/**
 * Hydra's override grammar, table-driven, through the real composition path (composeConfig).
 *
 * Expected values are Hydra's documented behaviour (hydra.cc "Override grammar/Basic" and the
 * input → value facts of Hydra's tests/test_overrides_parser.py), not taskforge's output. Python's
 * int/float distinction has no JS counterpart: `10e0` is 10.0 in Hydra and the number 10 here.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../errors.js';
import { z } from 'zod';
import { ComponentRegistry } from '../registry/registry.js';
import { validateConfig } from '../registry/validate.js';
import { attachEnvSources, composeConfig, overrideHint } from './index.js';

const root = mkdtempSync(join(tmpdir(), 'taskforge-grammar-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const files: Record<string, string> = {
  'config.yaml': 'defaults:\n  - db: mysql\n  - _self_\nk: 0\nfoo:\n  bar: hello\nlst: [1, 2]\nnum: ${env:N,3}\n',
  'db/mysql.yaml': 'driver: mysql\n',
  'db/postgres.yaml': 'driver: postgres\n',
};
for (const [path, text] of Object.entries(files)) {
  mkdirSync(dirname(join(root, path)), { recursive: true });
  writeFileSync(join(root, path), text);
}

const compose = (overrides: string[], env: NodeJS.ProcessEnv = {}) =>
  composeConfig({ searchPath: [root], overrides, env });

function refusal(overrides: string[], env: NodeJS.ProcessEnv = {}): ConfigError {
  try {
    compose(overrides, env);
  } catch (error) {
    if (error instanceof ConfigError) return error;
    throw error;
  }
  throw new Error(`expected ${JSON.stringify(overrides)} to be refused`);
}

/** [value after `k=`, the value Hydra gives]. */
const accepted: [string, unknown][] = [
  // unquoted strings (ids, specials, inner whitespace kept, outer trimmed)
  ['abc', 'abc'],
  ['abc123', 'abc123'],
  ['abc-123', 'abc-123'],
  ['a b c\t-\t1 2 3', 'a b c\t-\t1 2 3'],
  [' abc-123 ', 'abc-123'],
  [' \tvalue \t', 'value'],
  ['value \t 123', 'value \t 123'],
  ['123abc', '123abc'],
  ['10abc', '10abc'],
  ['abc-cde', 'abc-cde'],
  ['a.b.c', 'a.b.c'],
  ['list.0.bar', 'list.0.bar'],
  ['0.foo', '0.foo'],
  ['value-123', 'value-123'],
  ['value-1.0', 'value-1.0'],
  ['value-true', 'value-true'],
  ['.', '.'],
  ['/:-\\+.$%*@', '/:-\\+.$%*@'],
  ['c:\\foo\\a-b.txt', 'c:\\foo\\a-b.txt'],
  ['', ''],
  // escapes in unquoted strings
  ['a\\,b', 'a,b'],
  ['a\\:b', 'a:b'],
  ['a\\=b', 'a=b'],
  ['\\ ab', ' ab'],
  ['ab\\\t', 'ab\t'],
  ['ab\\\\', 'ab\\'],
  ['\\,', ','],
  ['f\\(a\\, b\\)', 'f(a, b)'],
  ['\\[a\\, b\\]', '[a, b]'],
  ['\\{a\\: b\\}', '{a: b}'],
  // interpolations are kept and resolved after composition
  ['$\\{foo.bar\\}', 'hello'],
  ['${foo.bar}', 'hello'],
  ['xyz_${foo.bar}', 'xyz_hello'],
  ['${foo}', { bar: 'hello' }],
  ['${env:USER,root}', 'root'],
  // null, ints, floats, bools
  ['null', null],
  ['NULL', null],
  ['0', 0],
  ['1', 1],
  ['+1', 1],
  ['-1', -1],
  ['10_0', 100],
  ['1___0___', '1___0___'],
  ['0.0', 0],
  ['0.51', 0.51],
  ['1e-05', 1e-5],
  ['-3.14', -3.14],
  ['3.1_4', 3.14],
  ['10e0', 10],
  ['-10e1', -100],
  ['inf', Infinity],
  ['INF', Infinity],
  ['+inf', Infinity],
  ['-inf', -Infinity],
  ['nan', NaN],
  ['NaN', NaN],
  ['true', true],
  ['True', true],
  ['TRUE', true],
  ['trUe', true],
  ['false', false],
  ['False', false],
  ['FALSE', false],
  ['faLse', false],
  // quoted strings
  ["'foo \\'bar'", "foo 'bar"],
  ['"foo \\"bar"', 'foo "bar'],
  ["'\t []{},=+~'", '\t []{},=+~'],
  ['"\t []{},=+~"', '\t []{},=+~'],
  ["'a b c'", 'a b c'],
  ["'a,b'", 'a,b'],
  ["'1,2,3'", '1,2,3'],
  ["'foo , bar'", 'foo , bar'],
  ["'  foo,bar\t'", '  foo,bar\t'],
  ["'[1,2,3]'", '[1,2,3]'],
  ['"[1,2,3]"', '[1,2,3]'],
  ['"[1,\'2\',3]"', "[1,'2',3]"],
  ["'null'", 'null'],
  ["'100'", '100'],
  ["'3.14'", '3.14'],
  ["'nan'", 'nan'],
  ["'inf'", 'inf'],
  ["'true'", 'true'],
  ["'false'", 'false'],
  ["'שלום'", 'שלום'],
  ["'value'", 'value'],
  ['"value"', 'value'],
  // lists
  ['[]', []],
  ['[1]', [1]],
  ['[1,2,3]', [1, 2, 3]],
  ['[1 ]', [1]],
  ['[1, 2, 3]', [1, 2, 3]],
  ['[1  ,\t2\t]', [1, 2]],
  ["['a b']", ['a b']],
  ["['[a,b]']", ['[a,b]']],
  ['[[a]]', [['a']]],
  ['[[[a]]]', [[['a']]]],
  ['[1,[a]]', [1, ['a']]],
  ["['a b', 2, 3]", ['a b', 2, 3]],
  ['[*bias*]', ['*bias*']],
  // dicts
  ['{}', {}],
  ['{a:b}', { a: 'b' }],
  ['{a:10}', { a: 10 }],
  ['{a:[a,10]}', { a: ['a', 10] }],
  ['{a:[true,10]}', { a: [true, 10] }],
  ['{a:10,b:20}', { a: 10, b: 20 }],
  ['{a:10,b:{}}', { a: 10, b: {} }],
  ['{a:10,b:{c:[1,2]}}', { a: 10, b: { c: [1, 2] } }],
  ['{a: 10, b: [1, 2, 3]}', { a: 10, b: [1, 2, 3] }],
  // the examples of docs/configuration.md
  ['.5', 0.5],
  ['1.', 1],
  ['10_000', 10000],
  ['*.png', '*.png'],
  ['vision/igpt', 'vision/igpt'],
  ['"it\'s"', "it's"],
  ["'a b,c'", 'a b,c'],
  ['[1, a, [b]]', [1, 'a', ['b']]],
  [
    '{_target_: callback/early_stopping, monitor: val/loss}',
    { _target_: 'callback/early_stopping', monitor: 'val/loss' },
  ],
];

/** [override, a part of the message (the cause), the 1-based column named]. */
const refused: [string, string, number][] = [
  // sweeps: Hydra runs these only under --multirun
  ['k=1,2,3', 'sweep', 4],
  ['k=1, 2, 3', 'sweep', 4],
  ['k=a,b', 'sweep', 4],
  ['k=[a,b],[c,d]', 'sweep', 8],
  ['k=${foo.bar},${foo.bar}', 'sweep', 13],
  // functions
  ['k=choice(1,2)', 'function call', 9],
  ['k=int(10.0)', 'function call', 6],
  ['k=range(1,3)', 'function call', 8],
  // malformed values
  ['k=[', 'unterminated list', 4],
  ['k=[]aa', "unexpected 'a' after the value", 5],
  ["k=[1,2,3]'", 'unexpected "\'" after the value', 10],
  ['k=a #b', "'#' is not allowed", 5],
  ['k=a#b', "'#' is not allowed", 4],
  ["k='abc", 'unterminated quoted string', 3],
  ['k={null: 1}', 'a dict key cannot be null', 4],
  // keys
  ['k =1', 'whitespace is not allowed in a key', 2],
  ['db@=postgres', 'expected a package', 4],
  ['db@abc:=postgres', 'package renaming', 7],
];

describe('override values by Hydra rules, through composeConfig', () => {
  it.each(accepted)('k=%j gives %j', (text, expected) => {
    const { config, sources } = compose([`k=${text}`]);
    const value = config['k'];
    if (typeof expected === 'number') {
      expect(typeof value).toBe('number');
      expect(Object.is(value, expected) || (Number.isNaN(expected) && Number.isNaN(value))).toBe(true);
    } else {
      expect(value).toStrictEqual(expected);
    }
    if (!isObject(expected) && !text.includes('env:')) expect(sources.get('k')).toBe('command line');
  });

  it.each(refused)('%s is refused (exit 2) naming %j and column %i', (text, cause, column) => {
    const error = refusal([text]);
    expect(error.exitCode).toBe(2);
    expect(error.message).toContain(`'${text}'`);
    expect(error.message).toContain(cause);
    expect(error.message).toContain(`column ${column}:`);
  });

  it('covers at least 80 override strings', () => {
    expect(accepted.length + refused.length).toBeGreaterThanOrEqual(80);
  });
});

function isObject(value: unknown): boolean {
  return typeof value === 'object' && value !== null;
}

describe('override keys by Hydra rules', () => {
  it('sets nested keys, list elements, adds, forces and deletes', () => {
    expect(compose(['foo.bar=x']).config['foo']).toEqual({ bar: 'x' });
    expect(compose(['lst.0=5']).config['lst']).toEqual([5, 2]);
    expect(compose(['+foo.baz=1']).config['foo']).toEqual({ bar: 'hello', baz: 1 });
    expect(compose(['++foo.bar=2', '++foo.new=3']).config['foo']).toEqual({ bar: 2, new: 3 });
    expect(compose(['~foo.bar']).config['foo']).toEqual({});
    expect(compose(['~k=0']).config).not.toHaveProperty('k');
    expect(refusal(['~k=1']).message).toContain('not deleted: the current value is 0, not 1');
    expect(compose(['--k=7']).config['k']).toBe(7);
  });

  it('selects config group options, also with a package, and removes groups', () => {
    expect(compose(['db=postgres']).config['db']).toEqual({ driver: 'postgres' });
    expect(compose(["db='postgres'"]).config['db']).toEqual({ driver: 'postgres' });
    expect(compose(['+db@backup=postgres']).config['backup']).toEqual({ driver: 'postgres' });
    expect(compose(['~db']).config).not.toHaveProperty('db');
  });

  it('refuses keys outside the grammar with the column', () => {
    expect(refusal(['a..b=1']).message).toContain("'a..b' is not a valid key");
    expect(refusal(['k']).message).toContain("missing '=' and a value");
    expect(refusal(['=3']).message).toContain('expected a key');
    expect(refusal(['a#b=1']).message).toMatch(/column 2: 'a#b' is not a valid key/);
  });
});

describe('command-line values never lose characters (issue 10 item 5)', () => {
  it("refuses ' #' and '#' instead of cutting the value or reading null", () => {
    const cut = refusal(['k=/tmp/exp #1']);
    expect(cut.message).toContain("'#' is not allowed in an unquoted value");
    expect(cut.message).toContain(`"k='/tmp/exp #1'"`);
    expect(refusal(['k=#']).message).toContain(`"k='#'"`);
  });

  it('keeps every character of a quoted value with # in it', () => {
    expect(compose(["k='/tmp/exp #1'"]).config['k']).toBe('/tmp/exp #1');
    expect(compose(["k='#'"]).config['k']).toBe('#');
  });
});

describe('${env:NAME,default} is typed like a command-line value (issue 10 item 7)', () => {
  it('types the default and the variable, and records where the value came from', () => {
    const byDefault = compose([]);
    expect(byDefault.config['num']).toBe(3);
    expect(byDefault.sources.get('num')).toMatch(/^the default of \$\{env:N,3\} \(N is not set\), via .*config\.yaml$/);
    const set = compose([], { N: '12' });
    expect(set.config['num']).toBe(12);
    expect(set.sources.get('num')).toMatch(/^environment variable N, via .*config\.yaml$/);
    expect(compose([], { N: 'true' }).config['num']).toBe(true);
    expect(compose([], { N: '[1, 2]' }).config['num']).toEqual([1, 2]);
    expect(compose([], { N: "'12'" }).config['num']).toBe('12');
    expect(compose([], { N: 'null' }).config['num']).toBeNull();
  });

  it('a type error in such a value says it came from the environment', () => {
    const { config, sources } = compose([], { N: 'abc' });
    let error: unknown;
    try {
      validateConfig(config, new ComponentRegistry(), {
        rootSchemas: { num: z.number() },
        allowedRootKeys: ['k', 'foo', 'lst', 'db'],
      });
    } catch (caught) {
      error = attachEnvSources(caught as ConfigError, sources);
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).exitCode).toBe(2);
    expect((error as ConfigError).message).toMatch(
      /num: .*number.*\(got "abc"\) \[from environment variable N, via .*config\.yaml\]/,
    );
  });

  it('keeps any other text exactly as set', () => {
    expect(compose([], { N: ' /tmp/exp #1 ' }).config['num']).toBe(' /tmp/exp #1 ');
    expect(compose([], { N: 'a,b' }).config['num']).toBe('a,b');
    expect(compose([], { N: 'x_${foo.bar}' }).config['num']).toBe('x_${foo.bar}');
  });
});

/** Runs `word` (a shell word as printed in a hint) through sh and returns the argument it gives. */
function shellArgs(words: string): string[] {
  return execFileSync('sh', ['-c', `printf '%s\\0' ${words}`], { encoding: 'utf8' })
    .split('\0')
    .slice(0, -1);
}

/** Every `write <shell word>` hint in `message`, as the arguments a shell would pass. */
function hints(message: string): string[] {
  const words = [...message.matchAll(/write ((?:'[^']*'|"[^"]*"|\\')+)/g)].map((m) => m[1]!);
  return words.flatMap((word) => shellArgs(word));
}

describe('every hint works when followed (issue 10 item 8)', () => {
  /** [refused overrides, the value of `k` (or the check) after applying each hint]. */
  const cases: [string[], (config: Record<string, unknown>, hint: string) => void][] = [
    [['k=/tmp/exp #1'], (c) => expect(c['k']).toBe('/tmp/exp #1')],
    [['k=#'], (c) => expect(c['k']).toBe('#')],
    [['k=a#b'], (c) => expect(c['k']).toBe('a#b')],
    [['k=[a#b, c]'], (c) => expect(c['k']).toEqual(['a#b', 'c'])],
    [["k=[it's]"], (c) => expect(c['k']).toEqual(["it's"])],
    [['k={a: x#y}'], (c) => expect(c['k']).toEqual({ a: 'x#y' })],
    [
      ['k=1,2'],
      (c, hint) =>
        expect(c['k']).toEqual(hint.includes('[') ? [1, 2] : hint.includes(',') ? '1,2' : Number(hint.slice(2))),
    ],
    [['k=a,b'], (c, hint) => expect(c['k']).toEqual(hint.includes('[') ? ['a', 'b'] : 'a,b')],
    [['k=f(a)'], (c) => expect(c['k']).toBe('f(a)')],
    [['k=~/data'], (c) => expect(c['k']).toBe('~/data')],
    [["k='abc"], (c) => expect(c['k']).toBe('abc')],
    [['k=[1,2'], (c) => expect(c['k']).toEqual([1, 2])],
    [['k=[1,,2]'], (c) => expect(c['k']).toEqual([1, 2])],
    [['k=[]aa'], (c) => expect(c['k']).toBe('[]aa')],
    [['k=${foo.bar'], (c) => expect(c['k']).toBe('hello')],
    [['k=cost_${'], (c) => expect(c['k']).toBe('cost_${')],
    [['k =1'], (c) => expect(c['k']).toBe(1)],
    [['k=9007199254740993'], (c) => expect(c['k']).toBe('9007199254740993')],
    [['new.key=1'], (c) => expect(c['new']).toEqual({ key: 1 })],
    [['--new=1'], (c) => expect(c['new']).toBe(1)],
    [['+k=5'], (c) => expect(c['k']).toBe(5)],
    [["++k=it's"], (c) => expect(c['k']).toBe("it's")],
  ];

  it.each(cases)('%j', (overrides, check) => {
    const message = refusal(overrides).message;
    const fixes = hints(message);
    expect(fixes.length, message).toBeGreaterThan(0);
    for (const fix of fixes) {
      const { config } = compose([fix]);
      check(config, fix);
    }
  });

  it('a sweep of numbers leads with one run per value; other sweeps with the list and the quoted text (s5: finding 11)', () => {
    expect(hints(refusal(['k=1e-3,3e-3']).message)).toEqual(['k=1e-3', 'k=3e-3', 'k=[1e-3,3e-3]', "k='1e-3,3e-3'"]);
    expect(refusal(['k=1e-3,3e-3']).message).toContain('run one command per value');
    expect(hints(refusal(['k=a,b']).message)).toEqual(['k=[a,b]', "k='a,b'"]);
  });

  it('overrideHint (used by "resume by adding …") gives back exactly the value when pasted into a shell', () => {
    for (const dir of [
      '/tmp/run-1/checkpoints/last',
      '/tmp/exp #1/last',
      " it's (2)/x,y ",
      '~/runs',
      '10',
      'true',
      'a\\b\\',
    ]) {
      const [arg] = shellArgs(overrideHint('k', dir));
      expect(compose([arg!]).config['k']).toBe(dir);
    }
    expect(overrideHint('k', 3)).toBe("'k=3'");
  });

  it('placeholder hints work once the placeholder is filled in', () => {
    for (const [override, value] of [
      ['k', '4'],
      ['+foo.x', 'y'],
    ] as const) {
      const [fix] = hints(refusal([override]).message);
      expect(fix).toContain('<value>');
      expect(compose([fix!.replace('<value>', value)]).config).toBeDefined();
    }
    const [pick] = hints(refusal(['+db=postgres']).message);
    expect(compose([pick!.replace('<option>', 'postgres')]).config['db']).toEqual({ driver: 'postgres' });
  });
});

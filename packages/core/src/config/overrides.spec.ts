import { describe, expect, it } from 'vitest';
import { ConfigError } from '../errors.js';
import { hydraQuote, parseOverrideValue } from './override-grammar.js';
import { parseOverride } from './overrides.js';

describe('parseOverride', () => {
  it('recognises every form, including the --key=value spelling', () => {
    expect(parseOverride('trainer.max_steps=10')).toEqual({
      kind: 'set',
      key: 'trainer.max_steps',
      value: 10,
      rawValue: '10',
      text: 'trainer.max_steps=10',
    });
    expect(parseOverride('--trainer.max_steps=10')).toMatchObject({ kind: 'set', key: 'trainer.max_steps', value: 10 });
    expect(parseOverride('+a.b=x')).toMatchObject({ kind: 'add', key: 'a.b', value: 'x' });
    expect(parseOverride('++a.b=x')).toMatchObject({ kind: 'force', key: 'a.b', value: 'x' });
    expect(parseOverride('~a.b')).toEqual({ kind: 'delete', key: 'a.b', text: '~a.b' });
    expect(parseOverride('~a.b=3')).toMatchObject({ kind: 'delete', key: 'a.b', value: 3 });
    expect(parseOverride('task=vision/igpt')).toMatchObject({
      kind: 'set',
      key: 'task',
      value: 'vision/igpt',
      rawValue: 'vision/igpt',
    });
    expect(parseOverride('db@backup=mysql')).toMatchObject({ key: 'db@backup', value: 'mysql' });
  });

  it("types values by Hydra's override grammar, not YAML", () => {
    const value = (text: string) => parseOverride(`k=${text}`).value;
    expect(value('3')).toBe(3);
    expect(value('-2')).toBe(-2);
    expect(value('3e-3')).toBe(0.003);
    expect(value('0.5')).toBe(0.5);
    expect(value('10_0')).toBe(100);
    expect(value('TRUE')).toBe(true);
    expect(value('null')).toBeNull();
    expect(value("'3'")).toBe('3');
    expect(value('"true"')).toBe('true');
    expect(value('[1,2,3]')).toEqual([1, 2, 3]);
    expect(value('{a: 1, b: [x, 2.5]}')).toEqual({ a: 1, b: ['x', 2.5] });
    expect(value('{a:b}')).toEqual({ a: 'b' });
    expect(value('')).toBe('');
    expect(value('run_${a.b}')).toBe('run_${a.b}');
    expect(value('a\\=b')).toBe('a=b');
    expect(value('*.png')).toBe('*.png');
    expect(value('@home')).toBe('@home');
  });

  it('quotes values in fixes so that they parse back to the same text', () => {
    for (const text of ["it's", 'a\\', "a\\'b", '#', ' x ', '\\\\']) {
      expect(parseOverrideValue(hydraQuote(text))).toBe(text);
    }
  });

  it('rejects malformed overrides with a ConfigError that explains the fix', () => {
    const message = (text: string) => {
      try {
        parseOverride(text);
      } catch (error) {
        expect(error).toBeInstanceOf(ConfigError);
        return (error as ConfigError).message;
      }
      throw new Error(`'${text}' parsed`);
    };
    expect(message('trainer.max_steps')).toContain("missing '=' and a value; write 'trainer.max_steps=<value>'");
    expect(message('+x')).toContain("write '+x=<value>'");
    expect(message('=3')).toContain('column 1: expected a key');
    expect(message('a..b=1')).toContain("'a..b' is not a valid key");
    // OmegaConf's list index: the element is a key segment here.
    expect(message('optimizer.betas[0]=0.8')).toContain(
      "a list element is a key segment: 'optimizer.betas.0'; write 'optimizer.betas.0=0.8'",
    );
    expect(message('++a[1][2]=3')).toContain("write '++a.1.2=3'");
    expect(message('a=[1,2')).toContain(
      "cannot parse override 'a=[1,2' at column 7: unterminated list: " +
        "expected ',' or ']' (the list opens at column 3); write 'a=[1,2]'",
    );
    expect(message('a=b=c')).toContain(`column 4: '=' is not allowed in an unquoted value; write "a='b=c'"`);
  });
});

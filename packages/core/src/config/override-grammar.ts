/**
 * A hand-written recursive-descent parser for command-line override values and keys, following
 * the rules of Hydra's override grammar (https://hydra.cc/docs/advanced/override_grammar/basic/).
 * It is written from Hydra's documented behaviour (input → value), not from its grammar files.
 *
 * Values:
 * - primitives: `10`, `-1`, `+1`, `10_0` (int 100), `0.5`, `.5`, `1.`, `1e-3`, `3.1_4`, `inf`/`-inf`/`nan`
 *   (any case), `true`/`false` (any case), `null` (any case); anything else is a string;
 * - unquoted strings: letters (Unicode too), digits, `_ - + . / $ % * @ ? | \ :` and inner
 *   whitespace (outer whitespace is trimmed); the escapes `\\ \( \) \[ \] \{ \} \: \= \, \<space>
 *   \<tab>` give the character itself; other backslashes are kept (`c:\foo`);
 * - quoted strings `'…'` / `"…"`: anything; `\'` (`\"`) is a literal quote, backslashes are kept
 *   except an odd/even run right before a quote (`'a\\'` is `a\`);
 * - `${…}` interpolations (nesting allowed) are kept as text and resolved after composition;
 * - lists `[a, 1, [b]]` and dicts `{a: 1, b: [x]}` (keys are unquoted text, never `null`).
 *
 * Refused (each with the column, what was expected and a fix that parses): characters outside the
 * unquoted set (`#`, `=`, `(`, `~`, `!`, `;`, …), sweeps `a,b` (no --multirun), functions `f(…)`,
 * unterminated quotes, lists, dicts and interpolations, empty list elements, duplicate dict keys,
 * and integers beyond ±2^53 (JS numbers would silently round them).
 */

/** A syntax error in one override value or key, located by 0-based offset into the parsed text. */
export class OverrideSyntaxError extends Error {
  constructor(
    /** 0-based offset into the text handed to the parser. */
    readonly offset: number,
    /** What was found and what was expected, e.g. `'#' is not allowed in an unquoted value`. */
    readonly reason: string,
    /** Replacement texts (for the parsed text) that do parse; empty when there is no safe fix. */
    readonly fixes: string[] = [],
    /** Extra advice that is not a replacement text. */
    readonly advice?: string,
  ) {
    super(reason);
    this.name = 'OverrideSyntaxError';
  }
}

/** Characters an unquoted string may contain besides letters, digits and whitespace (Hydra's set). */
const UNQUOTED_SPECIALS = new Set(['_', '-', '+', '.', '/', '$', '%', '*', '@', '?', '|', '\\', ':']);
/** Characters that a backslash escapes in an unquoted string. */
const ESCAPABLE = new Set(['\\', '(', ')', '[', ']', '{', '}', ':', '=', ',', ' ', '\t']);

const DIGITS = '[0-9](?:_?[0-9])*';
const INT = new RegExp(`^[+-]?(?:0|[1-9](?:_?[0-9])*)$`);
const POINT_FLOAT = `(?:(?:${DIGITS})?\\.${DIGITS}|${DIGITS}\\.)`;
const FLOAT = new RegExp(
  `^[+-]?(?:${POINT_FLOAT}|(?:${DIGITS}|${POINT_FLOAT})[eE][+-]?${DIGITS}|[iI][nN][fF]|[nN][aA][nN])$`,
);

const isWs = (c: string | undefined) => c === ' ' || c === '\t';
const isLetter = (c: string) => /^[\p{L}\p{M}\p{N}]$/u.test(c) || c.charCodeAt(0) >= 0x80;
const isUnquotedChar = (c: string) => isLetter(c) || UNQUOTED_SPECIALS.has(c);

/** Types the text of a whole unquoted primitive (no escapes, no interpolation) by Hydra's rules. */
function typePrimitive(text: string, offset: number): unknown {
  if (INT.test(text)) {
    const value = Number(text.replace(/_/g, ''));
    if (!Number.isSafeInteger(value)) {
      throw new OverrideSyntaxError(
        offset,
        `the integer ${text} is too large to be stored exactly (JavaScript numbers are exact only up to ±2^53)`,
        [hydraQuote(text)],
      );
    }
    return value === 0 ? 0 : value;
  }
  if (FLOAT.test(text)) {
    const lower = text.toLowerCase();
    if (lower.endsWith('inf')) return lower.startsWith('-') ? -Infinity : Infinity;
    if (lower.endsWith('nan')) return NaN;
    return Number(text.replace(/_/g, ''));
  }
  const lower = text.toLowerCase();
  if (lower === 'true') return true;
  if (lower === 'false') return false;
  if (lower === 'null') return null;
  return text;
}

/**
 * Quotes `text` as a Hydra single-quoted string that parses back to exactly `text`: a quote becomes
 * `\'`, and a run of backslashes right before a quote or the closing quote is doubled.
 */
export function hydraQuote(text: string): string {
  let out = "'";
  let run = 0;
  for (const c of text) {
    if (c === '\\') {
      run += 1;
      continue;
    }
    if (c === "'") out += '\\'.repeat(run * 2 + 1) + "'";
    else out += '\\'.repeat(run) + c;
    run = 0;
  }
  return out + '\\'.repeat(run * 2) + "'";
}

let checking = 0;

/** Whether a candidate fix parses (checked before it is offered; bounded so fixes of fixes end). */
function parses(text: string): boolean {
  if (checking > 4) return false;
  checking += 1;
  try {
    parseOverrideValue(text);
    return true;
  } catch {
    return false;
  } finally {
    checking -= 1;
  }
}

class ValueParser {
  private pos = 0;
  /** `base`: columns before `text` in the override, for the columns named inside messages. */
  constructor(
    private readonly text: string,
    private readonly base = 0,
  ) {}

  parse(): unknown {
    this.skipWs();
    if (this.pos >= this.text.length) return '';
    const value = this.element(0);
    this.skipWs();
    if (this.pos < this.text.length) {
      const c = this.text[this.pos]!;
      if (c === ',') this.sweep();
      this.fail(
        this.pos,
        `unexpected ${show(c)} after the value`,
        this.quoteWholeFixes(),
        'quote the whole value to pass it as one string',
      );
    }
    return value;
  }

  private fail(offset: number, reason: string, fixes: string[] = [], advice?: string): never {
    throw new OverrideSyntaxError(
      offset,
      reason,
      fixes.filter((f, i) => fixes.indexOf(f) === i && parses(f)),
      advice,
    );
  }

  private skipWs(): void {
    while (isWs(this.text[this.pos])) this.pos += 1;
  }

  /** Fixes that replace the whole value by a quoted string of its trimmed text. */
  private quoteWholeFixes(): string[] {
    return [hydraQuote(this.text.trim())];
  }

  private sweep(): never {
    const trimmed = this.text.trim();
    // A sweep of numbers (`optimizer.lr=1e-3,3e-3`) is almost always meant as separate runs, and a
    // list or string would fail a numeric key's schema: then the runs' values lead the fixes.
    const values = trimmed.split(',').map((v) => v.trim());
    const numeric = values.every((v) => v !== '' && Number.isFinite(Number(v.replace(/_/g, ''))));
    const asOne = [`[${trimmed}]`, hydraQuote(trimmed)];
    this.fail(
      this.pos,
      "',' separates the values of a sweep (Hydra's --multirun), which taskforge does not run",
      numeric ? [...values, ...asOne] : asOne,
      numeric
        ? 'run one command per value; only a key that takes a list or text wants the bracketed or quoted forms'
        : 'give one value per run; for a list put it in brackets, for ' +
            'text containing commas quote it or escape each comma as \\,',
    );
  }

  private element(depth: number): unknown {
    const c = this.text[this.pos];
    if (c === '[') return this.list(depth);
    if (c === '{') return this.dict(depth);
    if (c === "'" || c === '"') return this.quoted();
    return this.primitive(depth);
  }

  private list(depth: number): unknown[] {
    const open = this.pos;
    this.pos += 1;
    const items: unknown[] = [];
    this.skipWs();
    if (this.text[this.pos] === ']') {
      this.pos += 1;
      return items;
    }
    for (;;) {
      this.skipWs();
      const c = this.text[this.pos];
      if (c === ',' || c === ']') {
        const fixed =
          this.text.slice(0, this.pos) + this.text.slice(this.pos + (c === ',' ? 1 : 0)).replace(/^\s*/, '');
        const noComma =
          c === ']' ? this.text.slice(0, this.text.lastIndexOf(',', this.pos)) + this.text.slice(this.pos) : fixed;
        this.fail(
          this.pos,
          "empty list element (two commas in a row, or a comma before ']')",
          [c === ',' ? fixed : noComma],
          "an empty string is '' in a list",
        );
      }
      if (c === undefined)
        this.fail(
          this.pos,
          `unterminated list: expected a value and ']' (the list opens at column ${open + this.base + 1})`,
          [this.text + ']'],
        );
      items.push(this.element(depth + 1));
      this.skipWs();
      const next = this.text[this.pos];
      if (next === ',') {
        this.pos += 1;
        continue;
      }
      if (next === ']') {
        this.pos += 1;
        return items;
      }
      if (next === undefined)
        this.fail(
          this.pos,
          `unterminated list: expected ',' or ']' (the list opens at column ${open + this.base + 1})`,
          [this.text + ']'],
        );
      this.fail(this.pos, `expected ',' or ']' in the list, found ${show(next)}`);
    }
  }

  private dict(depth: number): Record<string, unknown> {
    const open = this.pos;
    this.pos += 1;
    const out: Record<string, unknown> = {};
    this.skipWs();
    if (this.text[this.pos] === '}') {
      this.pos += 1;
      return out;
    }
    for (;;) {
      this.skipWs();
      if (this.pos >= this.text.length)
        this.fail(
          this.pos,
          `unterminated dict: expected 'key: value' and '}' (the dict opens at column ${open + this.base + 1})`,
          [this.text + '}'],
        );
      const keyStart = this.pos;
      const key = this.dictKey();
      if (Object.hasOwn(out, key))
        this.fail(keyStart, `the key '${key}' appears twice in the dict`, [], 'give each key once');
      this.skipWs();
      if (this.text[this.pos] !== ':') {
        const found = this.text[this.pos];
        this.fail(
          this.pos,
          `expected ':' after the dict key '${key}', found ` +
            `${found === undefined ? 'the end of the value' : show(found)}`,
          found === undefined ? [`${this.text}: null}`] : [],
        );
      }
      this.pos += 1;
      this.skipWs();
      const c = this.text[this.pos];
      if (c === ',' || c === '}' || c === undefined)
        this.fail(this.pos, `expected a value for the dict key '${key}'`, [], "use null or '' for an empty value");
      out[key] = this.element(depth + 1);
      this.skipWs();
      const next = this.text[this.pos];
      if (next === ',') {
        this.pos += 1;
        continue;
      }
      if (next === '}') {
        this.pos += 1;
        return out;
      }
      if (next === undefined)
        this.fail(
          this.pos,
          `unterminated dict: expected ',' or '}' (the dict opens at column ${open + this.base + 1})`,
          [this.text + '}'],
        );
      this.fail(this.pos, `expected ',' or '}' in the dict, found ${show(next)}`);
    }
  }

  private dictKey(): string {
    const start = this.pos;
    let key = '';
    for (;;) {
      const c = this.text[this.pos];
      if (c === undefined || c === ':' || c === ',' || c === '}') break;
      if (c === '\\' && ESCAPABLE.has(this.text[this.pos + 1] ?? '')) {
        key += this.text[this.pos + 1];
        this.pos += 2;
        continue;
      }
      if (!isUnquotedChar(c) && !isWs(c)) {
        this.fail(
          this.pos,
          `${show(c)} is not allowed in a dict key (keys are unquoted text: letters, digits and _ - + . / $ % * @ ? |)`,
        );
      }
      key += c;
      this.pos += 1;
    }
    key = key.replace(/^[ \t]+|[ \t]+$/g, '');
    if (key === '') this.fail(start, "expected a dict key before ':'");
    if (key.toLowerCase() === 'null') this.fail(start, 'a dict key cannot be null', [], 'use another key name');
    return key;
  }

  private quoted(): string {
    const open = this.pos;
    const quote = this.text[open]!;
    let out = '';
    let i = open + 1;
    for (;;) {
      if (i >= this.text.length) {
        this.fail(
          open,
          `unterminated quoted string: expected a closing ${quote} for the one at column ${open + this.base + 1}`,
          [this.text + quote],
        );
      }
      const c = this.text[i]!;
      if (c === '\\') {
        let run = 0;
        while (this.text[i + run] === '\\') run += 1;
        if (this.text[i + run] === quote) {
          out += '\\'.repeat(Math.floor(run / 2));
          i += run;
          if (run % 2 === 1) {
            out += quote;
            i += 1;
            continue;
          }
          continue;
        }
        out += '\\'.repeat(run);
        i += run;
        continue;
      }
      if (c === quote) {
        this.pos = i + 1;
        return out;
      }
      out += c;
      i += 1;
    }
  }

  /** An unquoted primitive; `depth` > 0 inside a list or dict, where `,` `]` `}` end it. */
  private primitive(depth: number): unknown {
    const start = this.pos;
    let out = '';
    let plain = true; // no escapes and no interpolations: may be typed as a number/bool/null
    let outAtLastNonWs = 0;
    for (;;) {
      const c = this.text[this.pos];
      if (c === undefined) break;
      if (depth > 0 && (c === ',' || c === ']' || c === '}')) break;
      if (c === ',') break; // a top-level comma is reported as a sweep by parse()
      if (isWs(c)) {
        out += c;
        this.pos += 1;
        continue;
      }
      if (c === '$' && this.text[this.pos + 1] === '{') {
        const end = this.interpolationEnd(this.pos, depth);
        out += this.text.slice(this.pos, end);
        this.pos = end;
        plain = false;
      } else if (c === '\\' && ESCAPABLE.has(this.text[this.pos + 1] ?? '')) {
        out += this.text[this.pos + 1];
        this.pos += 2;
        plain = false;
      } else if (c === '(' && /[\p{L}_][\w-]*[ \t]*$/u.test(out) && out.trim() !== '') {
        const name = /([\p{L}_][\w-]*)[ \t]*$/u.exec(out)![1];
        this.fail(
          this.pos,
          `'${name}(…)' is a Hydra function call (choice, range, int, str, …), which taskforge does not support`,
          this.quotePrimitiveFixes(start, depth),
          'to pass the text, quote it or escape the parentheses as \\( \\)',
        );
      } else if (isUnquotedChar(c)) {
        out += c;
        this.pos += 1;
      } else {
        const why =
          c === '#'
            ? ' (it would start a comment in YAML; taskforge never drops what follows it)'
            : c === "'" || c === '"'
              ? ' (quotes must enclose the whole value or list element)'
              : '';
        this.fail(
          this.pos,
          `${show(c)} is not allowed in an unquoted value${why}`,
          this.quotePrimitiveFixes(start, depth),
          'quote the value to pass it as text',
        );
      }
      outAtLastNonWs = out.length;
    }
    const text = out.slice(0, outAtLastNonWs);
    // Trailing whitespace from an escape (`a\ `) was counted as non-whitespace, so it is kept.
    if (text === '') {
      const c = this.text[this.pos];
      this.fail(this.pos, c === undefined ? 'expected a value' : `expected a value, found ${show(c)}`);
    }
    return plain ? typePrimitive(text, start) : text;
  }

  /** Offset just past the `}` closing the interpolation that starts at `start` (`${`). */
  private interpolationEnd(start: number, nested: number): number {
    let depth = 0;
    let quote: string | undefined;
    for (let i = start; i < this.text.length; i++) {
      const c = this.text[i]!;
      if (quote) {
        if (c === '\\') i += 1;
        else if (c === quote) quote = undefined;
      } else if (c === "'" || c === '"') quote = c;
      else if (c === '{') depth += 1;
      else if (c === '}') {
        depth -= 1;
        if (depth === 0) return i + 1;
      }
    }
    // Closing it helps when there is a reference to close; otherwise a literal '${' was meant,
    // which is '\${' (kept by the grammar inside quotes, read as a literal by the interpolation).
    const literal = hydraQuote(`${this.text.slice(0, start)}\\${this.text.slice(start)}`.trim());
    const closed = this.text + '}'.repeat(Math.max(depth, 1));
    const fix = this.text.slice(start + 2).trim() === '' && nested === 0 ? literal : closed;
    this.fail(
      start,
      `unterminated interpolation: expected '}' to close the '\${' at column ${start + this.base + 1}`,
      [fix],
      "a literal '${' is '\\${' in quotes",
    );
  }

  /** Fixes that quote the unquoted primitive starting at `start` (up to the end of its element). */
  private quotePrimitiveFixes(start: number, depth: number): string[] {
    let end = this.text.length;
    if (depth > 0) {
      // The element ends at the next ',' ']' or '}' of its container (outside quotes and brackets).
      let nest = 0;
      for (let i = this.pos; i < this.text.length; i++) {
        const c = this.text[i]!;
        if (c === '\\') {
          i += 1;
          continue;
        }
        if (c === '(' || c === '[' || c === '{') nest += 1;
        else if ((c === ')' || c === ']' || c === '}') && nest > 0) nest -= 1;
        else if (nest === 0 && (c === ',' || c === ']' || c === '}')) {
          end = i;
          break;
        }
      }
    }
    const element = this.text.slice(start, end).replace(/[ \t]+$/, '');
    const after = this.text.slice(start + element.length);
    return [this.text.slice(0, start) + hydraQuote(element) + after];
  }
}

function show(c: string): string {
  return c === "'" ? `"'"` : c === '\t' ? 'a tab' : `'${c}'`;
}

/**
 * Parses one override value (the text after `=`) by Hydra's rules; see the module comment.
 * Returns numbers, booleans, null, strings, arrays and plain objects; `''` for an empty value.
 * `base` is the number of characters before `text` in its override (for columns named in messages).
 * Throws {@link OverrideSyntaxError} (with the offset, the reason and fixes that parse).
 */
export function parseOverrideValue(text: string, base = 0): unknown {
  return new ValueParser(text, base).parse();
}

/** The parts of an override before its value. */
export interface OverrideKey {
  kind: 'set' | 'add' | 'force' | 'delete';
  /** `trainer.max_steps`, `task`, `model/backbone`, `db@backup`, `/task`. */
  key: string;
  /** Offset of the first character after `=`, or undefined when there is no `=` (`~key`). */
  valueStart?: number;
}

const KEY_SEGMENT = /^(?:[\p{L}_$][\p{L}\p{N}_$-]*|[0-9]+)$/u;

/**
 * Parses the key part of an override (`[--][+|++|~]key[@package]=`). Throws OverrideSyntaxError with
 * the offset into `text`.
 */
export function parseOverrideKey(text: string): OverrideKey {
  let pos = 0;
  if (/^--(?=[^-+~])/.test(text)) pos = 2;
  let kind: OverrideKey['kind'] = 'set';
  if (text.startsWith('++', pos)) [kind, pos] = ['force', pos + 2];
  else if (text.startsWith('+', pos)) [kind, pos] = ['add', pos + 1];
  else if (text.startsWith('~', pos)) [kind, pos] = ['delete', pos + 1];
  const prefix = text.slice(0, pos);
  const eq = text.indexOf('=', pos);
  const keyEnd = eq < 0 ? text.length : eq;
  const key = text.slice(pos, keyEnd);
  const rest = eq < 0 ? '' : text.slice(eq);
  const ws = /[ \t]/.exec(key);
  if (ws) {
    const fixed = prefix + key.replace(/[ \t]+/g, '') + rest;
    throw new OverrideSyntaxError(
      pos + ws.index,
      "whitespace is not allowed in a key or around its '='",
      key.trim() === '' ? [] : [fixed],
    );
  }
  if (key === '') {
    throw new OverrideSyntaxError(
      pos,
      "expected a key, e.g. 'trainer.max_steps=10', '+key=value', '++key=value' or '~key'",
    );
  }
  const at = key.indexOf('@');
  const path = at < 0 ? key : key.slice(0, at);
  const pkg = at < 0 ? undefined : key.slice(at + 1);
  const badPath = checkPath(path.replace(/^\//, ''), /[./]/);
  if (badPath !== undefined) {
    // OmegaConf's `a[0]` for a list element: a key segment here (`a.0`), as in OmegaConf.update.
    const indexed = path.replace(/\[([0-9]+)\]/g, '.$1');
    const fix = indexed !== path && checkPath(indexed.replace(/^\//, ''), /[./]/) === undefined;
    throw new OverrideSyntaxError(
      pos + badPath + (path.startsWith('/') ? 1 : 0),
      `'${key}' is not a valid key: expected names (letters, ` +
        `digits, _ $ -) separated by '.' (keys) or '/' (config groups)` +
        (fix ? `; a list element is a key segment: '${indexed}'` : ''),
      fix ? [prefix + indexed + key.slice(path.length) + rest] : [],
    );
  }
  if (pkg !== undefined) {
    if (pkg.includes(':')) {
      throw new OverrideSyntaxError(
        pos + at + 1 + pkg.indexOf(':'),
        `package renaming '@${pkg}' (Hydra 1.0's '@src:dst') is not supported; ` +
          `select the package directly with '${path}@${pkg.split(':').pop()}=<option>'`,
      );
    }
    const badPkg = pkg === '' ? 0 : checkPath(pkg, /\./);
    if (badPkg !== undefined) {
      throw new OverrideSyntaxError(
        pos + at + 1 + badPkg,
        `expected a package after '@' (a dotted name such as 'backup' or 'db.backup'), found '${pkg}'`,
      );
    }
  }
  return { kind, key, valueStart: eq < 0 ? undefined : eq + 1 };
}

/** Offset of the first bad segment in a `sep`-separated path, or undefined when it is valid. */
function checkPath(path: string, sep: RegExp): number | undefined {
  let offset = 0;
  for (const segment of path.split(sep)) {
    if (!KEY_SEGMENT.test(segment)) {
      const bad = [...segment].findIndex((c) => !/[\p{L}\p{N}_$-]/u.test(c));
      return offset + (bad < 0 ? 0 : bad);
    }
    offset += segment.length + 1;
  }
  return undefined;
}

/**
 * Quotes `arg` as one POSIX shell word, so a hint can be pasted into a terminal as is: `'…'`, or
 * `"…"` when the text holds a single quote (and nothing the shell expands inside double quotes).
 */
export function shellWord(arg: string): string {
  if (!arg.includes("'")) return `'${arg}'`;
  if (!/["$`\\!]/.test(arg)) return `"${arg}"`;
  return `'${arg.replace(/'/g, `'\\''`)}'`;
}

/** `text` (an override as typed) with its `--` and `+`/`++`/`~` prefix replaced by `prefix`. */
export function withPrefix(text: string, prefix: '' | '+' | '++' | '~'): string {
  return prefix + text.replace(/^--(?=[^-+~])/, '').replace(/^(\+\+|\+|~)/, '');
}

/**
 * The override `key=value` as one shell word that, pasted into a terminal, sets `key` to exactly
 * `value` (a string is quoted for the override grammar when it would otherwise be typed or refused,
 * e.g. a path holding `#`, spaces at its ends, `,` or `~`). For hints such as "resume by adding … to the same command".
 */
export function overrideHint(key: string, value: string | number | boolean | null): string {
  let text: string;
  if (typeof value !== 'string') text = String(value);
  else {
    let same: boolean;
    try {
      same = parseOverrideValue(value) === value;
    } catch {
      same = false;
    }
    text = same ? value : hydraQuote(value);
  }
  return shellWord(`${key}=${text}`);
}

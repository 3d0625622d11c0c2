import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import CRC32C from 'crc-32/crc32c.js';
import { PNG } from 'pngjs';
import * as tsyringe from 'tsyringe';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { Tokens } from '../services/tokens.js';
import { CsvLogger } from './csv.js';
import { loggerSpecs } from './specs.js';
import { TensorBoardLogger } from './tensorboard.js';
import { eventsHoldData } from './tfevents.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'taskforge-loggers-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe('CsvLogger', () => {
  it('writes step first, widens the header when new metrics appear, and keeps earlier rows', () => {
    const logger = new CsvLogger({ dir, flushEvery: 1 });
    logger.logMetrics({ loss: 2.5, lr: 0.001 }, 0);
    logger.logMetrics({ loss: 2 }, 1);
    expect(readFileSync(join(dir, 'metrics.csv'), 'utf8')).toBe('step,loss,lr\n0,2.5,0.001\n1,2,\n');
    logger.logMetrics({ 'val/acc': 0.5, 'val,odd': NaN, loss: Infinity }, 1);
    logger.finalize();
    expect(readFileSync(join(dir, 'metrics.csv'), 'utf8')).toBe(
      'step,loss,lr,"val,odd",val/acc\n0,2.5,0.001,,\n1,2,,,\n1,inf,,nan,0.5\n',
    );
    expect(readdirSync(dir)).toEqual(['metrics.csv']);
  });

  it('buffers flush_every rows, flushes the rest on finalize, and writes nothing when nothing was logged', () => {
    const logger = new CsvLogger({ dir, flushEvery: 3 });
    logger.logMetrics({ loss: 1 }, 0);
    logger.logMetrics({ loss: 0.5 }, 1);
    expect(readdirSync(dir)).toEqual([]);
    logger.logMetrics({ loss: 0.25 }, 2);
    logger.logMetrics({ loss: 0.125 }, 3);
    expect(readFileSync(join(dir, 'metrics.csv'), 'utf8').split('\n')).toHaveLength(5);
    logger.finalize();
    expect(readFileSync(join(dir, 'metrics.csv'), 'utf8').trim().split('\n').at(-1)).toBe('3,0.125');
    new CsvLogger({ dir: join(dir, 'empty') }).finalize();
    expect(readdirSync(dir)).toEqual(['metrics.csv']);
  });

  it('extends the metrics.csv of a resumed run instead of replacing it', () => {
    const first = new CsvLogger({ dir, flushEvery: 1 });
    first.logMetrics({ loss: 1, 'a,b': -Infinity }, 0);
    first.finalize();
    const resumed = new CsvLogger({ dir, flushEvery: 1 });
    resumed.logMetrics({ loss: 0.5 }, 1);
    resumed.logMetrics({ acc: 0.9 }, 1);
    expect(readFileSync(join(dir, 'metrics.csv'), 'utf8')).toBe('step,"a,b",loss,acc\n0,-inf,1,\n1,,0.5,0.9\n');
  });

  it('on a resume at step s drops the rows an interrupted run logged after s, rewriting the file', () => {
    const first = new CsvLogger({ dir, flushEvery: 1 });
    for (const step of [1, 2, 3, 4]) first.logMetrics({ loss: 1 / step }, step);
    first.finalize();
    const resumed = new CsvLogger({ dir, flushEvery: 1 });
    expect(resumed.purgeAfter(2)).toBe(2);
    expect(readFileSync(join(dir, 'metrics.csv'), 'utf8')).toBe('step,loss\n1,1\n2,0.5\n');
    resumed.logMetrics({ loss: 0.3 }, 3);
    expect(readFileSync(join(dir, 'metrics.csv'), 'utf8')).toBe('step,loss\n1,1\n2,0.5\n3,0.3\n');
    expect(new CsvLogger({ dir }).purgeAfter(3)).toBe(0);
    expect(new CsvLogger({ dir: join(dir, 'none') }).purgeAfter(0)).toBe(0);
    // Every row after the step: the header stays.
    const all = new CsvLogger({ dir });
    expect(all.purgeAfter(0)).toBe(3);
    expect(readFileSync(join(dir, 'metrics.csv'), 'utf8')).toBe('step,loss\n');
  });

  it('writes one row per logged step: lr and validation logged at the same step join its row, even after a flush', () => {
    const logger = new CsvLogger({ dir, flushEvery: 1 });
    logger.logMetrics({ train_loss: 2, lr: 0.1, epoch: 0 }, 10);
    logger.logMetrics({ 'lr-adamw': 0.1 }, 10);
    logger.logMetrics({ train_loss: 1.5, lr: 0.05, epoch: 0 }, 20);
    logger.logMetrics({ 'lr-adamw': 0.05 }, 20);
    // Validation carries its epoch, as every Lightning row does: the same epoch merges into the row.
    logger.logMetrics({ 'val/loss': 1.25, epoch: 0 }, 20);
    // A second value of a metric already in the row (e.g. validate twice at one step) is a new row, never lost.
    logger.logMetrics({ 'val/loss': 1.2, epoch: 0 }, 20);
    // A validation off the logging interval gets a row of its own, with its epoch (s5: finding 16).
    logger.logMetrics({ 'val/loss': 1.1, epoch: 1 }, 25);
    logger.finalize();
    expect(readFileSync(join(dir, 'metrics.csv'), 'utf8')).toBe(
      'step,epoch,lr,train_loss,lr-adamw,val/loss\n10,0,0.1,2,0.1,\n20,0,0.05,1.5,0.05,1.25\n20,0,,,,1.2\n25,1,,,,1.1\n',
    );
    // A resumed logger merges into the last row it read back.
    const resumed = new CsvLogger({ dir, flushEvery: 1 });
    resumed.logMetrics({ 'lr-adamw': 0.05 }, 25);
    resumed.finalize();
    expect(readFileSync(join(dir, 'metrics.csv'), 'utf8').trim().split('\n').at(-1)).toBe('25,1,,,0.05,1.1');
  });

  it('reads back what it wrote whatever the metric names hold (quotes, line breaks), and CRLF files', () => {
    const first = new CsvLogger({ dir, flushEvery: 1 });
    first.logMetrics({ 'say "hi"': 1, 'two\nlines': 2 }, 0);
    first.finalize();
    const resumed = new CsvLogger({ dir, flushEvery: 1 });
    resumed.logMetrics({ 'two\nlines': 3 }, 1);
    resumed.finalize();
    expect(readFileSync(join(dir, 'metrics.csv'), 'utf8')).toBe('step,"say ""hi""","two\nlines"\n0,1,2\n1,,3\n');
    // A metrics.csv saved with Windows line ends (e.g. re-saved by a spreadsheet) resumes too.
    writeFileSync(join(dir, 'metrics.csv'), 'step,loss\r\n0,nan\r\n1,inf\r\n');
    const again = new CsvLogger({ dir, flushEvery: 1 });
    again.logMetrics({ acc: 0.5 }, 1);
    again.finalize();
    expect(readFileSync(join(dir, 'metrics.csv'), 'utf8')).toBe('step,loss,acc\n0,nan,\n1,inf,0.5\n');
  });

  it('refuses a metrics.csv that is not valid CSV, naming the file', () => {
    writeFileSync(join(dir, 'metrics.csv'), 'step,"loss\n0,1\n');
    expect(() => new CsvLogger({ dir }).logMetrics({ loss: 1 }, 0)).toThrow(/metrics\.csv' is not valid CSV/);
  });

  it('refuses to take over a CSV it did not write', () => {
    writeFileSync(join(dir, 'metrics.csv'), 'name,score\nx,1\n');
    expect(() => new CsvLogger({ dir }).logMetrics({ loss: 1 }, 0)).toThrow(
      /is not a taskforge metrics file .* first column is 'name'/,
    );
  });

  it('writes hparams.yaml', () => {
    new CsvLogger({ dir }).logHyperparams({ optimizer: { _target_: 'optimizer/adamw', lr: 0.001 }, seed: 1 });
    expect(YAML.parse(readFileSync(join(dir, 'hparams.yaml'), 'utf8'))).toEqual({
      optimizer: { _target_: 'optimizer/adamw', lr: 0.001 },
      seed: 1,
    });
  });
});

// An independent reader of the TFRecord framing and of the protobuf wire format.
function readRecords(path: string): Buffer[] {
  const mask = (crc: number) => ((((crc >>> 15) | (crc << 17)) >>> 0) + 0xa282ead8) >>> 0;
  const crc = (b: Buffer) => mask(CRC32C.buf(b) >>> 0);
  const file = readFileSync(path);
  const records: Buffer[] = [];
  for (let at = 0; at < file.length;) {
    const length = Number(file.readBigUInt64LE(at));
    expect(file.readUInt32LE(at + 8)).toBe(crc(file.subarray(at, at + 8)));
    const data = file.subarray(at + 12, at + 12 + length);
    expect(file.readUInt32LE(at + 12 + length)).toBe(crc(data));
    records.push(data);
    at += 16 + length;
  }
  return records;
}

type Fields = Map<number, (number | bigint | Buffer)[]>;
function decode(b: Buffer): Fields {
  const fields: Fields = new Map();
  let at = 0;
  const varint = () => {
    let value = 0n;
    for (let shift = 0n; ; shift += 7n) {
      const byte = b[at++]!;
      value |= BigInt(byte & 0x7f) << shift;
      if (byte < 0x80) return value;
    }
  };
  while (at < b.length) {
    const key = Number(varint());
    const [field, wire] = [key >> 3, key & 7];
    let value: number | bigint | Buffer;
    if (wire === 0) value = varint();
    else if (wire === 1) {
      value = b.readDoubleLE(at);
      at += 8;
    } else if (wire === 5) {
      value = b.readFloatLE(at);
      at += 4;
    } else if (wire === 2) {
      const n = Number(varint());
      value = b.subarray(at, at + n);
      at += n;
    } else throw new Error(`unexpected wire type ${wire}`);
    fields.set(field, [...(fields.get(field) ?? []), value]);
  }
  return fields;
}
const one = (f: Fields, n: number) => f.get(n)?.[0];
const msg = (f: Fields, n: number) => decode(one(f, n) as Buffer);
const str = (f: Fields, n: number) => (one(f, n) as Buffer).toString('utf8');

interface DecodedEvent {
  wallTime: number;
  step: bigint;
  fileVersion?: string;
  values: Fields[];
}
function readEvents(path: string): DecodedEvent[] {
  return readRecords(path).map((r) => {
    const f = decode(r);
    return {
      wallTime: one(f, 1) as number,
      step: (one(f, 2) as bigint | undefined) ?? 0n,
      ...(f.has(3) ? { fileVersion: str(f, 3) } : {}),
      values: f.has(5) ? (msg(f, 5).get(1) ?? []).map((v) => decode(v as Buffer)) : [],
    };
  });
}

describe('TensorBoardLogger', () => {
  const now = () => 1_700_000_000_500;

  it('writes a version record, then scalars, an image and the hparams text, with valid CRCs', () => {
    const logger = new TensorBoardLogger({ dir, flushEvery: 100, now, host: 'box 1' });
    expect(logger.eventsPath).toBe(join(dir, 'events.out.tfevents.1700000000.box_1'));
    logger.logHyperparams({ lr: 0.001 });
    logger.logMetrics({ 'train/loss': 2.5, lr: 1e-3 }, 7);
    logger.logMetrics({ 'val/loss': 1.25 }, 300_000_000_000);
    const image = new PNG({ width: 3, height: 2 });
    image.data.fill(255);
    const png = PNG.sync.write(image);
    logger.logImage('samples', png, 8);
    expect(readdirSync(dir)).toEqual(['hparams.yaml']);
    logger.finalize();

    const events = readEvents(logger.eventsPath);
    expect(events).toHaveLength(5);
    expect(events[0]).toMatchObject({ fileVersion: 'brain.Event:2', step: 0n, wallTime: 1_700_000_000.5, values: [] });

    const text = events[1]!.values[0]!;
    expect(str(text, 1)).toBe('hparams');
    expect(str(msg(msg(text, 9), 1), 1)).toBe('text');
    const tensor = msg(text, 8);
    expect(one(tensor, 1)).toBe(7n);
    expect(str(tensor, 8)).toBe('    lr: 0.001');

    expect(events[2]!.step).toBe(7n);
    expect(events[2]!.values.map((v) => [str(v, 1), one(v, 2)])).toEqual([
      ['train/loss', 2.5],
      ['lr', Math.fround(1e-3)],
    ]);
    expect(events[3]!.step).toBe(300_000_000_000n);
    expect(str(events[3]!.values[0]!, 1)).toBe('val/loss');

    const img = msg(events[4]!.values[0]!, 4);
    expect([one(img, 1), one(img, 2), one(img, 3)]).toEqual([2n, 3n, 4n]);
    expect(Buffer.compare(one(img, 4) as Buffer, png)).toBe(0);
    expect(str(events[4]!.values[0]!, 1)).toBe('samples');
  });

  it('on a resume at step s writes a session START at s + 1, which TensorBoard purges later events by, and no data', () => {
    const logger = new TensorBoardLogger({ dir, flushEvery: 100, now });
    logger.purgeAfter(41);
    logger.finalize();
    const records = readRecords(logger.eventsPath);
    expect(records).toHaveLength(2);
    const start = decode(records[1]!);
    expect(one(start, 2)).toBe(42n);
    expect(one(msg(start, 7), 1)).toBe(1n); // SessionLog.status = START
    expect(eventsHoldData(readFileSync(logger.eventsPath))).toBe(false);
  });

  it('flushes every flush_every events and refuses bad input', () => {
    const logger = new TensorBoardLogger({ dir, flushEvery: 2, now });
    logger.logMetrics({ loss: 1 }, 1);
    expect(readEvents(logger.eventsPath)).toHaveLength(2);
    expect(() => logger.logImage('x', new Uint8Array([1, 2, 3]), 1)).toThrow(/expects PNG bytes/);
    expect(() => logger.logMetrics({ loss: 1 }, -1)).toThrow(/step must be a non-negative integer, got -1/);
    logger.finalize();
    // fit, then test: the Trainer finalizes between them; later events append to the same file.
    logger.logMetrics({ 'test/loss': 0.5 }, 2);
    logger.finalize();
    const events = readEvents(logger.eventsPath);
    expect(events).toHaveLength(3);
    expect(events[2]!.step).toBe(2n);
  });
});

describe('loggerSpecs', () => {
  it('puts each logger under <run>/logs/<name> and uses the container clock', () => {
    const container = tsyringe.container.createChildContainer();
    container.registerInstance(Tokens.Clock, { now: () => 42_000 });
    const [csv, tb] = [loggerSpecs.find((s) => s.name === 'csv')!, loggerSpecs.find((s) => s.name === 'tensorboard')!];
    const csvLogger = csv.create(csv.schema.parse({}), { container, runDir: dir }) as CsvLogger;
    expect(csvLogger.metricsPath).toBe(join(dir, 'logs', 'csv', 'metrics.csv'));
    const tbLogger = tb.create(tb.schema.parse({ name: 'tb' }), { container, runDir: dir }) as TensorBoardLogger;
    expect(tbLogger.eventsPath).toMatch(new RegExp(`^${join(dir, 'logs', 'tb', 'events.out.tfevents.42.')}`));
    expect(csv.schema.safeParse({ name: '../x' }).success).toBe(false);
    expect(tb.schema.safeParse({ flush_every: 0 }).success).toBe(false);
    expect(tb.schema.safeParse({ flush: 1 }).success).toBe(false);
  });
});

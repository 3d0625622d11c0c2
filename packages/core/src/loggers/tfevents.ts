/**
 * The TensorBoard event-file format, written by hand: no maintained npm package writes it
 * without TensorFlow's native library. A file is a sequence of TFRecords, each holding one
 * serialized `tensorflow.Event` protobuf; only the handful of fields TensorBoard needs for
 * scalars, images and text are encoded here.
 */
import CRC32C from 'crc-32/crc32c.js';
import { TaskforgeError } from '../errors.js';

/** TFRecord's CRC mask, so a CRC of data that embeds CRCs is not itself a trivial CRC. */
export function maskedCrc32c(data: Uint8Array): number {
  const crc = CRC32C.buf(data) >>> 0;
  return (((crc >>> 15) | (crc << 17)) + 0xa282ead8) >>> 0;
}

/** Frames `data` as a TFRecord: uint64 length, masked CRC of the length, data, masked CRC of data (all LE). */
export function frameRecord(data: Uint8Array): Buffer {
  const header = Buffer.alloc(12);
  header.writeBigUInt64LE(BigInt(data.length), 0);
  header.writeUInt32LE(maskedCrc32c(header.subarray(0, 8)), 8);
  const footer = Buffer.alloc(4);
  footer.writeUInt32LE(maskedCrc32c(data), 0);
  return Buffer.concat([header, data, footer]);
}

const Wire = { Varint: 0, Fixed64: 1, Bytes: 2, Fixed32: 5 } as const;
type Wire = (typeof Wire)[keyof typeof Wire];

/** A minimal protobuf message writer: fields are appended in call order. */
export class ProtoWriter {
  private readonly parts: Uint8Array[] = [];

  private tag(field: number, wire: Wire): void {
    this.rawVarint(field * 8 + wire);
  }

  private rawVarint(value: number): void {
    if (!Number.isSafeInteger(value) || value < 0)
      throw new RangeError(`protobuf varint must be a non-negative safe integer, got ${value}`);
    const bytes: number[] = [];
    let rest = value;
    while (rest >= 0x80) {
      bytes.push((rest % 0x80) | 0x80);
      rest = Math.floor(rest / 0x80);
    }
    bytes.push(rest);
    this.parts.push(Uint8Array.from(bytes));
  }

  varint(field: number, value: number): this {
    this.tag(field, Wire.Varint);
    this.rawVarint(value);
    return this;
  }

  double(field: number, value: number): this {
    const b = Buffer.alloc(8);
    b.writeDoubleLE(value, 0);
    this.tag(field, Wire.Fixed64);
    this.parts.push(b);
    return this;
  }

  float(field: number, value: number): this {
    const b = Buffer.alloc(4);
    b.writeFloatLE(value, 0);
    this.tag(field, Wire.Fixed32);
    this.parts.push(b);
    return this;
  }

  bytes(field: number, value: Uint8Array | string): this {
    const data = typeof value === 'string' ? Buffer.from(value, 'utf8') : value;
    this.tag(field, Wire.Bytes);
    this.rawVarint(data.length);
    this.parts.push(data);
    return this;
  }

  message(field: number, build: (w: ProtoWriter) => void): this {
    const inner = new ProtoWriter();
    build(inner);
    return this.bytes(field, inner.finish());
  }

  finish(): Buffer {
    return Buffer.concat(this.parts);
  }
}

/** One `Summary.Value`; exactly one payload. */
export type SummaryValue =
  { tag: string; simpleValue: number } | { tag: string; image: { png: Uint8Array } } | { tag: string; text: string };

const DT_STRING = 7;

/** Height, width and TensorBoard colorspace (1 grey, 2 grey+alpha, 3 RGB, 4 RGBA) from a PNG's IHDR. */
export function pngInfo(png: Uint8Array): { width: number; height: number; colorspace: number } {
  const signature = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
  const b = Buffer.from(png.buffer, png.byteOffset, png.byteLength);
  if (b.length < 29 || signature.some((x, i) => b[i] !== x) || b.toString('latin1', 12, 16) !== 'IHDR') {
    throw new TaskforgeError(
      `TensorBoard logger: logImage expects PNG bytes, got ${b.length} bytes that are not a PNG.`,
    );
  }
  const colorType = b[25]!;
  const colorspace = ({ 0: 1, 4: 2, 2: 3, 3: 3, 6: 4 } as Record<number, number>)[colorType] ?? 3;
  return { width: b.readUInt32BE(16), height: b.readUInt32BE(20), colorspace };
}

/**
 * Serializes a `tensorflow.Event`: wall_time = 1, step = 2, file_version = 3, summary = 5,
 * session_log = 7. `sessionStart` writes `session_log { status: START }`: TensorBoard then drops
 * every event at this step or later that it read before (a restart's orphans; PyTorch's
 * `SummaryWriter(purge_step=…)` writes the same).
 */
export function encodeEvent(event: {
  wallTime: number;
  step: number;
  fileVersion?: string;
  values?: readonly SummaryValue[];
  sessionStart?: boolean;
}): Buffer {
  const w = new ProtoWriter().double(1, event.wallTime).varint(2, event.step);
  if (event.fileVersion !== undefined) w.bytes(3, event.fileVersion);
  if (event.sessionStart) w.message(7, (log) => log.varint(1, 1)); // SessionLog.START
  if (event.values && event.values.length > 0) {
    w.message(5, (summary) => {
      for (const value of event.values!) summary.message(1, (v) => encodeValue(v, value));
    });
  }
  return w.finish();
}

function encodeValue(w: ProtoWriter, value: SummaryValue): void {
  w.bytes(1, value.tag);
  if ('simpleValue' in value) {
    w.float(2, value.simpleValue);
  } else if ('image' in value) {
    const { width, height, colorspace } = pngInfo(value.image.png);
    w.message(4, (img) => img.varint(1, height).varint(2, width).varint(3, colorspace).bytes(4, value.image.png));
  } else {
    // Text plugin: metadata.plugin_data.plugin_name = "text" (9.1.1); a scalar DT_STRING tensor (8).
    w.message(9, (meta) => meta.message(1, (plugin) => plugin.bytes(1, 'text')));
    w.message(8, (tensor) =>
      tensor
        .varint(1, DT_STRING)
        .message(2, () => {})
        .bytes(8, value.text),
    );
  }
}

/** Reads one varint at `at`; returns [value, next offset], or undefined past the end. */
function readVarint(b: Uint8Array, at: number): [number, number] | undefined {
  let value = 0;
  let scale = 1;
  for (let i = at; i < b.length && i < at + 10; i++) {
    value += (b[i]! & 0x7f) * scale;
    scale *= 0x80;
    if (b[i]! < 0x80) return [value, i + 1];
  }
  return undefined;
}

/**
 * The fields of one protobuf message as (field number, wire type, payload) triples; a payload is
 * the bytes of a length-delimited field and empty otherwise. Returns undefined for malformed data.
 */
function readFields(b: Uint8Array): Array<{ field: number; wire: number; value: Uint8Array }> | undefined {
  const fields: Array<{ field: number; wire: number; value: Uint8Array }> = [];
  let at = 0;
  while (at < b.length) {
    const key = readVarint(b, at);
    if (!key) return undefined;
    const [tag, next] = key;
    const field = Math.floor(tag / 8);
    const wire = tag % 8;
    at = next;
    let value: Uint8Array = new Uint8Array(0);
    if (wire === Wire.Varint) {
      const v = readVarint(b, at);
      if (!v) return undefined;
      at = v[1];
    } else if (wire === Wire.Fixed64) at += 8;
    else if (wire === Wire.Fixed32) at += 4;
    else if (wire === Wire.Bytes) {
      const len = readVarint(b, at);
      if (!len || len[1] + len[0] > b.length) return undefined;
      value = b.subarray(len[1], len[1] + len[0]);
      at = len[1] + len[0];
    } else return undefined;
    if (at > b.length) return undefined;
    fields.push({ field, wire, value });
  }
  return fields;
}

/**
 * Whether the bytes of an events file (as {@link TensorBoardLogger} writes them) hold any data: an
 * event other than the file-version record, a session-start marker and the `hparams` text summary
 * every run writes first.
 * A file with only those is the empty log of a run that stopped before logging anything. Malformed
 * or truncated data counts as data (so a caller deciding what to delete keeps it).
 */
export function eventsHoldData(bytes: Uint8Array): boolean {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let at = 0;
  while (at < b.length) {
    if (at + 12 > b.length) return true;
    const length = Number(b.readBigUInt64LE(at));
    const end = at + 12 + length + 4;
    if (end > b.length) return true;
    const event = readFields(b.subarray(at + 12, at + 12 + length));
    if (!event) return true;
    for (const { field, value } of event) {
      // wall_time, step, file_version, and a session_log (a resume's START marker) record no data.
      if (field === 1 || field === 2 || field === 3 || field === 7) continue;
      if (field !== 5) return true; // anything but a summary (graph, log message...)
      const summary = readFields(value);
      if (!summary) return true;
      for (const entry of summary) {
        if (entry.field !== 1) return true;
        const tag = readFields(entry.value)?.find((f) => f.field === 1);
        if (!tag || Buffer.from(tag.value).toString('utf8') !== 'hparams') return true;
      }
    }
    at = end;
  }
  return false;
}

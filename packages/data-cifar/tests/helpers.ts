/** Tiny CIFAR-format archives and in-memory services for tests. */
import 'reflect-metadata';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { Header } from 'tar';
import { container as root, type DependencyContainer } from 'tsyringe';
import { Tokens, type Output, type Paths, type ProgressHandle } from '@taskforge/core';
import { RECORD_BYTES } from '../src/format.js';

/** Four well-separated colours: a 4-colour palette recovers them exactly. */
export const COLORS = [
  [250, 10, 10],
  [10, 250, 10],
  [10, 10, 250],
  [240, 240, 240],
] as const;
export const CLASS_NAMES = ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck'];

/** Colour id of pixel `p` of global image `i` (a pattern that differs per image and position). */
export function colorOf(i: number, p: number): number {
  return (i * 3 + p + (p >> 5) * 2) % 4;
}

/** `count` records whose global image ids start at `first`; label = id % 10 unless overridden. */
export function makeRecords(first: number, count: number, label: (i: number) => number = (i) => i % 10): Uint8Array {
  const out = new Uint8Array(count * RECORD_BYTES);
  for (let r = 0; r < count; r++) {
    const i = first + r,
      base = r * RECORD_BYTES;
    out[base] = label(i);
    for (let p = 0; p < 1024; p++) {
      const c = COLORS[colorOf(i, p)]!;
      out[base + 1 + p] = c[0];
      out[base + 1 + 1024 + p] = c[1];
      out[base + 1 + 2048 + p] = c[2];
    }
  }
  return out;
}

export interface Entry {
  path: string;
  data?: Uint8Array;
  type?: 'File' | 'Directory' | 'SymbolicLink' | 'Link';
  linkpath?: string;
}

/** A gzipped tar built header by header, so tests can craft entries `tar.c` would never write. */
export function tarGz(entries: Entry[]): Buffer {
  const blocks: Buffer[] = [];
  for (const e of entries) {
    const data = Buffer.from(e.data ?? new Uint8Array(0));
    const type = e.type ?? 'File';
    const header = new Header({
      path: e.path,
      type,
      linkpath: e.linkpath,
      mode: type === 'Directory' ? 0o755 : 0o644,
      size: type === 'File' ? data.length : 0,
      mtime: new Date(1230768000000),
      uid: 0,
      gid: 0,
    });
    const block = Buffer.alloc(512);
    header.encode(block, 0);
    blocks.push(block);
    if (type === 'File') blocks.push(data, Buffer.alloc((512 - (data.length % 512)) % 512));
  }
  blocks.push(Buffer.alloc(1024));
  return gzipSync(Buffer.concat(blocks));
}

/** Train files of `perFile` records each (ids 0..5·perFile-1) and a test file of `testCount`. */
export function cifarEntries(perFile = 6, testCount = 8, overrides: Record<string, Uint8Array | null> = {}): Entry[] {
  const files: Record<string, Uint8Array | null> = {
    'data_batch_1.bin': makeRecords(0, perFile),
    'data_batch_2.bin': makeRecords(perFile, perFile),
    'data_batch_3.bin': makeRecords(2 * perFile, perFile),
    'data_batch_4.bin': makeRecords(3 * perFile, perFile),
    'data_batch_5.bin': makeRecords(4 * perFile, perFile),
    'test_batch.bin': makeRecords(1000, testCount),
    'batches.meta.txt': new TextEncoder().encode(`${CLASS_NAMES.join('\n')}\n\n`),
    ...overrides,
  };
  const entries: Entry[] = [{ path: 'cifar-10-batches-bin/', type: 'Directory' }];
  for (const [name, data] of Object.entries(files))
    if (data) entries.push({ path: `cifar-10-batches-bin/${name}`, data });
  return entries;
}

/** An Output that records what it was asked to show. */
export class RecordingOutput implements Output {
  infos: string[] = [];
  warnings: string[] = [];
  bars: { label: string; unit?: string; total?: number; last: number; stopped: boolean }[] = [];
  info(message: string): void {
    this.infos.push(message);
  }
  warn(message: string): void {
    this.warnings.push(message);
  }
  progress(options: { label: string; total?: number; unit?: 'items' | 'bytes' | 'steps' }): ProgressHandle {
    const bar = { label: options.label, unit: options.unit, total: options.total, last: 0, stopped: false };
    this.bars.push(bar);
    return {
      update: (current) => {
        bar.last = current;
      },
      setTotal: (total) => {
        bar.total = total;
      },
      stop: () => {
        bar.stopped = true;
      },
    };
  }
}

export function testContainer(paths: Paths, output: Output): DependencyContainer {
  const c = root.createChildContainer();
  c.register(Tokens.Paths, { useValue: paths });
  c.register(Tokens.Output, { useValue: output });
  return c;
}

export async function tempDir(): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'taskforge-cifar-'));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

export async function writeArchive(path: string, entries: Entry[]): Promise<string> {
  await writeFile(path, tarGz(entries));
  return path;
}

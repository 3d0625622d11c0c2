import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { statSync, watch } from 'node:fs';
import { access, mkdir, readdir, readFile, stat, utimes, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TaskforgeError } from '@taskforge/core';
import {
  cifar10Schema,
  cifar10Spec,
  RECORD_BYTES,
  type Cifar10ConfigInput,
  type Cifar10DataModule,
} from '../src/index.js';
import {
  cifarEntries,
  makeRecords,
  RecordingOutput,
  tarGz,
  tempDir,
  testContainer,
  writeArchive,
  type Entry,
} from './helpers.js';

const good = tarGz(cifarEntries(3, 4));
const goodMd5 = createHash('md5').update(good).digest('hex');
let tmp: Awaited<ReturnType<typeof tempDir>>;
let server: Server;
let base: string;
const served = new Map<
  string,
  (req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse) => void
>();
let counter = 0;

beforeAll(async () => {
  tmp = await tempDir();
  server = createServer((req, res) => {
    const handler = served.get(req.url ?? '');
    if (handler) handler(req, res);
    else res.writeHead(404).end('not found');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await new Promise((r) => server.close(r));
  await tmp.cleanup();
});

function make(overrides: Partial<Cifar10ConfigInput>, output = new RecordingOutput()): Cifar10DataModule {
  const config = cifar10Schema.parse({
    data_dir: join(tmp.dir, `cache-${++counter}`),
    val_size: 2,
    palette_size: 4,
    palette_sample_pixels: 500,
    palette_iterations: 2,
    ...overrides,
  });
  return cifar10Spec.create(config, {
    container: testContainer({ projectRoot: tmp.dir, cacheDir: join(tmp.dir, 'c') }, output),
  }) as Cifar10DataModule;
}

async function localArchive(name: string, bytes: Uint8Array): Promise<string> {
  const path = join(tmp.dir, name);
  await writeFile(path, bytes);
  return path;
}

/** Everything left in the cache dir, recursively (hidden temp files included). */
async function leftovers(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true }).catch(() => [] as string[]);
  return entries.sort();
}

/**
 * Calls `then` once `dir/name` holds at least `bytes` bytes: driven by fs.watch events (plus one
 * check right away, in case the write landed first), not by a timer.
 */
function whenOnDisk(dir: string, name: string, bytes: number, then: () => void): void {
  let done = false;
  const check = () => {
    if (done || (statSync(join(dir, name), { throwIfNoEntry: false })?.size ?? 0) < bytes) return;
    done = true;
    watcher.close();
    then();
  };
  const watcher = watch(dir, check);
  check();
}

async function expectFailure(dm: Cifar10DataModule, pattern: RegExp): Promise<TaskforgeError> {
  const err = await dm.prepareData().then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(TaskforgeError);
  expect((err as Error).message).toMatch(pattern);
  expect((err as Error).message).not.toContain('\n');
  expect(await leftovers(dm.dataDir)).toEqual([]);
  return err as TaskforgeError;
}

describe('bad input', () => {
  it('wrong md5: names both sums, deletes the download', async () => {
    served.set('/good.tar.gz', (_q, res) => res.writeHead(200, { 'content-length': good.length }).end(good));
    const dm = make({ url: `${base}/good.tar.gz`, md5: 'f'.repeat(32) });
    await expectFailure(
      dm,
      new RegExp(
        `from ${base}/good\\.tar\\.gz has md5 ${goodMd5}, but dataset\\.md5 expects f{32}.*set dataset\\.md5 to ${goodMd5}`,
      ),
    );
  });

  it('truncated archive (md5 null): refuses to extract and deletes the cached download', async () => {
    const cut = good.subarray(0, Math.floor(good.length / 2));
    served.set('/cut.tar.gz', (_q, res) => res.writeHead(200, { 'content-length': cut.length }).end(cut));
    const out = new RecordingOutput();
    const dm = make({ url: `${base}/cut.tar.gz`, md5: null }, out);
    await expectFailure(
      dm,
      /Cannot extract the CIFAR-10 archive .*cifar-10-binary\.tar\.gz .*truncated or not a \.tar\.gz file\. The cached copy .* was deleted/,
    );
    expect(out.warnings.join()).toMatch(
      /dataset\.md5 is null, so .*cut\.tar\.gz was not verified \(its md5 is [0-9a-f]{32}\)/,
    );
  });

  it('a file that is not a tar.gz', async () => {
    const path = await localArchive('notes.tar.gz', new TextEncoder().encode('this is not an archive\n'.repeat(100)));
    await expectFailure(
      make({ url: path, md5: null }),
      new RegExp(`Cannot extract the CIFAR-10 archive ${path} .*Replace ${path} with a good copy`),
    );
    expect(await readFile(path, 'utf8')).toContain('not an archive'); // the user's file is left alone
  });

  it('missing batch file', async () => {
    const path = await localArchive('missing.tar.gz', tarGz(cifarEntries(3, 4, { 'data_batch_3.bin': null })));
    await expectFailure(
      make({ url: `file://${path}`, md5: null }),
      /archive .*missing\.tar\.gz has no cifar-10-batches-bin\/data_batch_3\.bin/,
    );
  });

  it('truncated batch file', async () => {
    const short = makeRecords(0, 3).subarray(0, 3 * RECORD_BYTES - 100);
    const path = await localArchive('short.tar.gz', tarGz(cifarEntries(3, 4, { 'data_batch_2.bin': short })));
    await expectFailure(
      make({ url: path, md5: null }),
      /cifar-10-batches-bin\/data_batch_2\.bin in .*short\.tar\.gz is 9119 bytes, which is not a positive multiple of the 3073-byte record/,
    );
  });

  it('label byte above 9', async () => {
    const path = await localArchive(
      'label.tar.gz',
      tarGz(cifarEntries(3, 4, { 'data_batch_4.bin': makeRecords(9, 3, (i) => (i === 11 ? 12 : 0)) })),
    );
    await expectFailure(
      make({ url: path, md5: null }),
      /data_batch_4\.bin in .*label\.tar\.gz: record 2 \(byte offset 6146\) has label 12, but labels must be 0\.\.9/,
    );
  });

  it('unreachable URL', async () => {
    const idle = createServer();
    await new Promise<void>((r) => idle.listen(0, '127.0.0.1', r));
    const port = (idle.address() as AddressInfo).port;
    await new Promise((r) => idle.close(r));
    await expectFailure(
      make({ url: `http://127.0.0.1:${port}/cifar.tar.gz` }),
      new RegExp(`Cannot download CIFAR-10 from http://127\\.0\\.0\\.1:${port}/cifar\\.tar\\.gz \\(ECONNREFUSED\\)`),
    );
  });

  it('HTTP error status', async () => {
    await expectFailure(make({ url: `${base}/nothing-here.tar.gz` }), /server answered HTTP 404 Not Found/);
  });

  it('unwritable data dir', async () => {
    const file = await localArchive('plain-file', new Uint8Array(1));
    const dm = make({ data_dir: join(file, 'cifar'), url: `${base}/good.tar.gz`, md5: goodMd5 });
    await expect(dm.prepareData()).rejects.toThrow(
      new RegExp(
        `Cannot write to the CIFAR-10 data directory ${file}/cifar \\(ENOTDIR\\).*Set dataset\\.data_dir to a writable folder`,
      ),
    );
  });

  it('a missing local archive is refused when the config is validated, before anything is written', () => {
    const parsed = cifar10Schema.safeParse({ url: 'nope/cifar.tar.gz' });
    expect(parsed.success).toBe(false);
    expect(parsed.error!.issues[0]!.message).toMatch(
      /the path does not exist \(.*nope\/cifar\.tar\.gz\); point it at a cifar-10-binary\.tar\.gz archive/,
    );
  });

  it.each<[string, Entry, RegExp]>([
    [
      'a .. path',
      { path: 'cifar-10-batches-bin/../../escaped.bin', data: new Uint8Array(3) },
      /entry 'cifar-10-batches-bin\/\.\.\/\.\.\/escaped\.bin' contains '\.\.'/,
    ],
    [
      'an absolute path',
      { path: '/tmp/taskforge-escaped.bin', data: new Uint8Array(3) },
      /entry '\/tmp\/taskforge-escaped\.bin' has an absolute path/,
    ],
    [
      'a symlink',
      { path: 'cifar-10-batches-bin/link', type: 'SymbolicLink', linkpath: '/etc/passwd' },
      /entry 'cifar-10-batches-bin\/link' is a SymbolicLink/,
    ],
    [
      'a hard link',
      { path: 'cifar-10-batches-bin/hard', type: 'Link', linkpath: 'cifar-10-batches-bin/test_batch.bin' },
      /entry 'cifar-10-batches-bin\/hard' is a Link/,
    ],
  ])('refuses a tar entry with %s', async (_name, entry, pattern) => {
    const path = await writeArchive(join(tmp.dir, `evil-${counter}.tar.gz`), [...cifarEntries(3, 4), entry]);
    await expectFailure(
      make({ url: path, md5: null }),
      new RegExp(`Refusing to extract the CIFAR-10 archive .*evil-\\d+\\.tar\\.gz: ${pattern.source}`),
    );
    await expect(access(join(tmp.dir, 'escaped.bin'))).rejects.toMatchObject({ code: 'ENOENT' });
    await expect(access('/tmp/taskforge-escaped.bin')).rejects.toMatchObject({ code: 'ENOENT' });
  });
});

describe('interrupted download', () => {
  it('keeps the partial file and resumes it with a Range request', async () => {
    const ranges: (string | undefined)[] = [];
    let first = true;
    const half = Math.floor(good.length / 2);
    served.set('/flaky.tar.gz', (req, res) => {
      ranges.push(req.headers.range);
      if (first) {
        first = false;
        res.writeHead(200, { 'content-length': good.length });
        // The connection drops once the client has the first half on disk.
        res.write(good.subarray(0, half));
        whenOnDisk(dm.dataDir, 'cifar-10-binary.tar.gz.part', half, () => res.destroy());
        return;
      }
      const from = Number(/bytes=(\d+)-/.exec(req.headers.range ?? '')?.[1] ?? 0);
      res
        .writeHead(206, {
          'content-length': good.length - from,
          'content-range': `bytes ${from}-${good.length - 1}/${good.length}`,
        })
        .end(good.subarray(from));
    });
    const dm = make({ url: `${base}/flaky.tar.gz`, md5: goodMd5 });
    await expect(dm.prepareData()).rejects.toThrow(
      new RegExp(
        `download of .*flaky\\.tar\\.gz was interrupted after \\d+ of ${good.length} bytes.*partial file .*\\.part is kept`,
      ),
    );
    expect(await leftovers(dm.dataDir)).toEqual(['cifar-10-binary.tar.gz.part']);
    const kept = (await stat(join(dm.dataDir, 'cifar-10-binary.tar.gz.part'))).size;
    expect(kept).toBe(half);
    await dm.setup('fit');
    expect(ranges).toEqual([undefined, `bytes=${kept}-`]);
    expect(dm.modelDataArgs.num_vocab).toBe(4);
    // The whole folder, by any name: the archive, what it extracted, the palette and the token
    // stores, and no partial download or temporary extraction folder.
    expect((await leftovers(dm.dataDir)).map((f) => f.replace(/[0-9a-f]{16}/, '<key>'))).toEqual([
      'cifar-10-batches-bin',
      ...[
        'batches.meta.txt',
        'data_batch_1.bin',
        'data_batch_2.bin',
        'data_batch_3.bin',
        'data_batch_4.bin',
        'data_batch_5.bin',
        'test_batch.bin',
      ].map((f) => `cifar-10-batches-bin/${f}`),
      'cifar-10-binary.tar.gz',
      'extracted.json',
      'palettes',
      'palettes/palette-4-<key>.json',
      'tokens',
      'tokens/<key>-test.bin',
      'tokens/<key>-train.bin',
    ]);
  });

  it('restarts from scratch when the server ignores the Range request', async () => {
    const ranges: (string | undefined)[] = [];
    served.set('/norange.tar.gz', (req, res) => {
      ranges.push(req.headers.range);
      res.writeHead(200, { 'content-length': good.length }).end(good);
    });
    const dm = make({ url: `${base}/norange.tar.gz`, md5: goodMd5 });
    await mkdir(dm.dataDir, { recursive: true });
    await writeFile(join(dm.dataDir, 'cifar-10-binary.tar.gz.part'), 'stale bytes from another file');
    await dm.prepareData();
    expect(ranges).toEqual(['bytes=29-']);
    expect(
      createHash('md5')
        .update(await readFile(join(dm.dataDir, 'cifar-10-binary.tar.gz')))
        .digest('hex'),
    ).toBe(goodMd5);
  });
});

describe('temp files of an interrupted run', () => {
  it("are collected on the next run when their process is gone, even if the cache is complete; a live run's are kept", async () => {
    const path = await localArchive('good-stale.tar.gz', good);
    const first = make({ url: path, md5: goodMd5 });
    await first.prepareData();
    const dir = first.dataDir;
    // A pid that surely ended: a child that has already exited.
    const dead = spawnSync(process.execPath, ['-e', '']).pid;
    await mkdir(join(dir, `.extract-${dead}-AbC123`, 'cifar-10-batches-bin'), { recursive: true });
    await writeFile(
      join(dir, `.extract-${dead}-AbC123`, 'cifar-10-batches-bin', 'data_batch_1.bin'),
      new Uint8Array(1000),
    );
    await writeFile(join(dir, `extracted.json.tmp-${dead}-0a1b2c3d`), '{');
    // From versions without the pid in the name: removed once older than an hour.
    await mkdir(join(dir, '.extract-Xy12Zw'));
    await utimes(
      join(dir, '.extract-Xy12Zw'),
      new Date(Date.now() - 2 * 3600_000),
      new Date(Date.now() - 2 * 3600_000),
    );
    await mkdir(join(dir, '.extract-Fresh1'));
    await mkdir(join(dir, `.extract-${process.pid}-live01`));
    const before = (await readdir(dir)).filter((n) => n.includes('.extract-') || n.includes('.tmp-')).sort();
    expect(before).toHaveLength(5);

    const again = make({ url: path, md5: goodMd5, data_dir: dir });
    await again.prepareData();
    const after = (await readdir(dir)).filter((n) => n.includes('.extract-') || n.includes('.tmp-')).sort();
    expect(after).toEqual(['.extract-Fresh1', `.extract-${process.pid}-live01`].sort());
    expect(await readdir(join(dir, 'cifar-10-batches-bin'))).toContain('data_batch_1.bin');
  });
});

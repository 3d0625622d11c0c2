import { mkdtempSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PNG } from 'pngjs';
import { describe, expect, it } from 'vitest';
import { curvesSpec, plotCommand, readCurves, renderPng } from './plot.js';

const CSV = [
  'step,epoch,train/loss,train/bpp,lr-AdamW,val/loss,val/acc',
  '10,0,2.5,3.6,0.001,,',
  '20,0,2.1,3.0,0.002,2.2,0.25',
  '30,0,1.9,2.7,0.002,,',
  '40,1,1.7,,0.0015,1.8,0.375',
].join('\n');

function runDir(csv = CSV): string {
  const dir = mkdtempSync(join(tmpdir(), 'tf-plot-'));
  mkdirSync(join(dir, 'logs', 'csv'), { recursive: true });
  writeFileSync(join(dir, 'logs', 'csv', 'metrics.csv'), `${csv}\n`);
  return dir;
}

function decode(file: string): PNG {
  return PNG.sync.read(readFileSync(file));
}

describe('taskforge plot', () => {
  it('reads every non-empty metric cell as one point, grouped into panels by metric name', () => {
    const points = readCurves(join(runDir(), 'logs', 'csv', 'metrics.csv'));
    // 4 + 3 + 4 train/lr cells, 2 + 2 val cells.
    expect(points).toHaveLength(15);
    expect(points.filter((p) => p.panel === 'loss').map((p) => `${p.series}@${p.step}=${p.value}`)).toEqual([
      'train@10=2.5',
      'train@20=2.1',
      'val@20=2.2',
      'train@30=1.9',
      'train@40=1.7',
      'val@40=1.8',
    ]);
    expect(points.find((p) => p.panel === 'lr-AdamW' && p.step === 40)).toEqual({
      step: 40,
      panel: 'lr-AdamW',
      series: 'value',
      value: 0.0015,
    });
  });

  it('draws one dot per point read, in one panel per metric', async () => {
    const points = readCurves(join(runDir(), 'logs', 'csv', 'metrics.csv'));
    const { svg, png } = await renderPng(curvesSpec(points, 'run'));
    // Vega draws each point mark as one path inside the symbol mark group.
    const symbols = [...svg.matchAll(/<g class="mark-symbol role-mark[^"]*"[^>]*>(.*?)<\/g>/gs)].map(
      (m) => (m[1]!.match(/<path/g) ?? []).length,
    );
    expect(symbols.reduce((a, b) => a + b, 0)).toBe(points.length);
    for (const panel of ['loss', 'bpp', 'acc', 'lr-AdamW']) expect(svg).toContain(`>${panel}<`);
    expect(PNG.sync.read(Buffer.from(png)).width).toBeGreaterThan(500);
  });

  it('writes curves and a confusion heat map for a run dir, and never overwrites an earlier plot', async () => {
    const dir = runDir();
    writeFileSync(
      join(dir, 'test_results.json'),
      JSON.stringify({
        metrics: { 'test/acc': 0.5 },
        extras: {
          confusion_matrix: {
            class_names: ['cat', 'dog'],
            matrix: [
              [3, 1],
              [1, 3],
            ],
          },
        },
      }),
    );
    const first = await plotCommand(dir);
    expect(first.files.map((f) => f.slice(dir.length))).toEqual([
      '/plots/curves.png',
      '/plots/test_results_confusion.png',
    ]);
    expect(first.points).toBe(15);
    const curves = decode(first.files[0]!);
    const confusion = decode(first.files[1]!);
    // Not blank: the lines and the heat map put coloured (non-grey) pixels on the white background.
    const coloured = (png: PNG) => {
      let n = 0;
      for (let i = 0; i < png.data.length; i += 4)
        if (
          Math.max(png.data[i]!, png.data[i + 1]!, png.data[i + 2]!) -
            Math.min(png.data[i]!, png.data[i + 1]!, png.data[i + 2]!) >
          60
        )
          n++;
      return n;
    };
    expect(coloured(curves)).toBeGreaterThan(500);
    expect(coloured(confusion)).toBeGreaterThan(500);
    const before = readFileSync(first.files[0]!);
    const second = await plotCommand(dir);
    expect(second.files.map((f) => f.slice(dir.length))).toEqual([
      '/plots/curves-2.png',
      '/plots/test_results_confusion-2.png',
    ]);
    expect(readFileSync(first.files[0]!).equals(before)).toBe(true);
    expect(readdirSync(join(dir, 'plots')).sort()).toEqual([
      'curves-2.png',
      'curves.png',
      'test_results_confusion-2.png',
      'test_results_confusion.png',
    ]);
  });

  it('refuses a missing target and a run without metrics, naming the fix (exit 2)', async () => {
    await expect(plotCommand('/nonexistent/run')).rejects.toMatchObject({
      exitCode: 2,
      message: expect.stringMatching(/'\/nonexistent\/run' does not exist/),
    });
    const empty = mkdtempSync(join(tmpdir(), 'tf-plot-'));
    await expect(plotCommand(empty)).rejects.toMatchObject({
      exitCode: 2,
      message: expect.stringMatching(/Nothing to plot.*logger\/csv/),
    });
    await expect(plotCommand(runDir('step,epoch\n'))).rejects.toMatchObject({
      exitCode: 2,
      message: expect.stringMatching(/no metric values yet/),
    });
  });
});

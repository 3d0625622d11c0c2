import { mkdtempSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PNG } from 'pngjs';
import { describe, expect, it } from 'vitest';
import { bytesToMiB, curvesSpec, dropAliasPanels, plotCommand, readCurves, renderPng } from './plot.js';

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

  it("draws the confusion matrix of each evaluation under a training run's evaluations/, named by it", async () => {
    const dir = runDir();
    const results = (matrix: number[][]) =>
      JSON.stringify({
        metrics: { 'test/acc': 0.5 },
        extras: { confusion_matrix: { class_names: ['a', 'b'], matrix } },
      });
    for (const name of ['test-step=000002', 'test-last-step000003']) {
      mkdirSync(join(dir, 'evaluations', name), { recursive: true });
      writeFileSync(
        join(dir, 'evaluations', name, 'test_results.json'),
        results([
          [2, 0],
          [1, 1],
        ]),
      );
    }
    // A validate run has metrics only: nothing to draw for it, and no error.
    mkdirSync(join(dir, 'evaluations', 'validate-step=000002'));
    writeFileSync(join(dir, 'evaluations', 'validate-step=000002', 'validate_results.json'), '{"metrics":{}}');
    const plotted = await plotCommand(dir);
    expect(plotted.files.map((f) => f.slice(dir.length))).toEqual([
      '/plots/curves.png',
      '/plots/test-last-step000003_confusion.png',
      '/plots/test-step=000002_confusion.png',
    ]);
    for (const file of plotted.files.slice(1)) expect(decode(file).width).toBeGreaterThan(100);
  });

  // What a run with the lr_monitor and device_stats callbacks logs: the trainer's own train_loss
  // and lr repeat the task's train/loss and the monitor's lr-adam.
  const LOGGED = [
    'step,epoch,lr,train/loss,train_loss,grad_norm,lr-adam,memory/bytes,memory/tensors,val/loss',
    '1,0,0,4.363903045654297,4.363903045654297,4.363903045654297,0,35896,61,',
    '2,0,0.000006,4.35183048248291,4.35183048248291,4.35183048248291,0.000006,2131696,61,4.3573',
    '3,0,0.000012,4.30,4.30,4.31,0.000012,2131856,62,',
  ].join('\n');

  it('draws one panel per distinct series: exact aliases (same values at the same steps) are left out', async () => {
    const dir = runDir(LOGGED);
    const read = readCurves(join(dir, 'logs', 'csv', 'metrics.csv'));
    const { points, aliases } = dropAliasPanels(read);
    expect(aliases).toEqual(['train_loss = train/loss', 'lr-adam = lr']);
    // grad_norm equals the loss at two steps but not at the third: a different series, kept.
    expect([...new Set(points.map((p) => p.panel))]).toEqual([
      'lr',
      'loss',
      'grad_norm',
      'memory/bytes',
      'memory/tensors',
    ]);
    expect(points).toHaveLength(read.length - 6);
    const result = await plotCommand(dir);
    expect(result.panels).toEqual(['lr', 'loss', 'grad_norm', 'memory/bytes (MiB)', 'memory/tensors']);
    expect(result.aliases).toEqual(['train_loss = train/loss', 'lr-adam = lr']);
    expect(result.points).toBe(points.length);
    // Without the aliases, every panel of the CSV is drawn.
    const distinctCsv = LOGGED.replace(/,train_loss|,lr-adam/g, '')
      .split('\n')
      .map((line, i) =>
        i === 0
          ? line
          : line
              .split(',')
              .filter((_, j) => j !== 4 && j !== 6)
              .join(','),
      )
      .join('\n');
    expect((await plotCommand(runDir(distinctCsv))).aliases).toEqual([]);
  });

  it('draws bytes in MiB and labels y ticks with a few significant digits, not long digit runs', async () => {
    const read = readCurves(join(runDir(LOGGED), 'logs', 'csv', 'metrics.csv'));
    const points = bytesToMiB(dropAliasPanels(read).points);
    const memory = points.filter((p) => p.panel === 'memory/bytes (MiB)').map((p) => p.value);
    expect(memory).toEqual([35896 / 2 ** 20, 2131696 / 2 ** 20, 2131856 / 2 ** 20]);
    expect(points.filter((p) => p.panel === 'memory/tensors').map((p) => p.value)).toEqual([61, 61, 62]);
    const { svg } = await renderPng(curvesSpec(points, 'run'));
    const labels = [...svg.matchAll(/<text[^>]*>([^<]*)<\/text>/g)].map((m) => m[1]!);
    expect(labels).toContain('memory/bytes (MiB)');
    expect(labels).toContain('2'); // a MiB tick
    expect(labels).toContain('6e-6'); // an lr tick
    // No thousands separators or runs of decimals (e.g. 156,312.000000) on any tick.
    for (const label of labels) expect(label).not.toMatch(/\d,\d{3}|\.\d{5,}/);
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

// Mutation testing of core's config and trainer code (`npm run mutate` at the root; not in CI:
// minutes on a 2-core machine). Results and how to read them: docs/mutation.md.
/** @type {import('@stryker-mutator/api/core').PartialStrykerOptions} */
export default {
  testRunner: 'vitest',
  vitest: { configFile: 'vitest.mutate.config.ts' },
  // Small modules whose specs run in milliseconds: ~140 mutants, ~15 min on a loaded 2-core
  // machine (each mutant costs a vitest start). interpolate.ts alone adds ~350 mutants (hours
  // there); trainer.ts and compose.ts are covered by slower tests. Pass them with --mutate.
  mutate: ['src/config/merge.ts', 'src/config/suggest.ts', 'src/trainer/config.ts', 'src/trainer/data-setup.ts'],
  coverageAnalysis: 'perTest',
  concurrency: 1,
  // Added to each mutant's measured test time: an infinite loop is cut off after this.
  timeoutMS: 10_000,
  reporters: ['clear-text', 'progress', 'json'],
  jsonReporter: { fileName: 'reports/mutation/mutation.json' },
  tempDirName: '.stryker-tmp',
  cleanTempDir: 'always',
  thresholds: { high: 90, low: 75, break: null },
};

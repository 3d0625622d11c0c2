import { defineConfig, mergeConfig } from 'vitest/config';
import shared from '../vitest.shared.js';

export default mergeConfig(
  shared,
  defineConfig({
    root: import.meta.dirname,
    test: {
      name: 'e2e',
      include: ['**/*.spec.ts'],
      exclude: ['**/node_modules/**', 'fixtures/**'],
      testTimeout: 300_000,
      // End-to-end runs spawn node processes; running them one at a time keeps the 2-core CI honest.
      fileParallelism: false,
    },
  }),
);

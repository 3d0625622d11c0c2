import { defineConfig, mergeConfig } from 'vitest/config';
import shared from '../../vitest.shared.js';

export default mergeConfig(
  shared,
  defineConfig({
    test: { name: 'data-cifar', include: ['src/**/*.spec.ts', 'tests/**/*.spec.ts'] },
  }),
);

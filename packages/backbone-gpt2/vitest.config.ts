import { defineConfig, mergeConfig } from 'vitest/config';
import shared from '../../vitest.shared.js';

export default mergeConfig(
  shared,
  defineConfig({
    test: { name: 'backbone-gpt2', include: ['src/**/*.spec.ts', 'tests/**/*.spec.ts'] },
  }),
);

import { defineConfig, mergeConfig } from 'vitest/config';
import shared from '../../vitest.shared.js';

// .mts: this package is CommonJS (see README), and the config must load as ESM.
export default mergeConfig(
  shared,
  defineConfig({
    test: { name: 'nx-plugin', include: ['src/**/*.spec.ts', 'tests/**/*.spec.ts'] },
  }),
);

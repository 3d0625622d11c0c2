import { defineConfig } from 'vitest/config';

// Tests run against each package's TypeScript source: the "@taskforge/source" export
// condition points workspace imports at src/ instead of dist/, so no build is needed.
export default defineConfig({
  resolve: { conditions: ['@taskforge/source'] },
  ssr: { resolve: { conditions: ['@taskforge/source'] } },
  test: {
    environment: 'node',
    globals: false,
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    setupFiles: [new URL('./vitest.setup.ts', import.meta.url).pathname],
  },
});

/**
 * The unit specs `npm run mutate` runs against each mutant of core's config and trainer code:
 * only the fast, source-level specs next to the mutated files (not tests/, whose end-to-end
 * trainer runs would make every mutant cost seconds on a 2-core machine).
 *
 * Standalone on purpose: Stryker runs it from a sandbox copy of packages/core
 * (.stryker-tmp/sandbox-*), where the repository's ../../vitest.shared.ts is not beside it.
 * It repeats what the shared config sets that these specs need.
 */
import { defineConfig } from 'vitest/config';

export default defineConfig({
  resolve: { conditions: ['@taskforge/source'] },
  ssr: { resolve: { conditions: ['@taskforge/source'] } },
  test: {
    name: 'core-mutate',
    include: ['src/config/**/*.spec.ts', 'src/trainer/**/*.spec.ts'],
    environment: 'node',
    globals: false,
    testTimeout: 60_000,
    pool: 'forks',
    setupFiles: ['./vitest.mutate.setup.ts'],
  },
});

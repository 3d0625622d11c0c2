// Workspace lint config. Its main job is the dependency rule the architecture rests on:
// plugins import only core's public index, core imports no plugin, nothing imports the CLI.
import nx from '@nx/eslint-plugin';

// Patterns are relative to each project's own eslint.config.mjs (ESLint 10 looks the config up
// from the linted file), so they are written to match from any project root.
const PLUGIN_TESTS = ['**/tests/**', '**/*.spec.ts', '**/bench/**'];

const boundaries = (depConstraints) => [
  'error',
  {
    enforceBuildableLibDependency: true,
    // Tests and tooling configs may import workspace-level files (the shared vitest config, scripts/).
    allow: ['^\\.\\./.*(vitest\\.shared|eslint\\.config|scripts/).*$'],
    depConstraints,
  },
];

/** Which project kinds each kind may import; `pluginMayUse` widens it for plugins' own tests. */
const constraints = (pluginMayUse) => [
  { sourceTag: 'type:core', onlyDependOnLibsWithTags: [] },
  { sourceTag: 'type:plugin', onlyDependOnLibsWithTags: pluginMayUse },
  { sourceTag: 'type:app', onlyDependOnLibsWithTags: ['type:core'] },
  { sourceTag: 'type:tool', onlyDependOnLibsWithTags: [] },
  { sourceTag: 'type:e2e', onlyDependOnLibsWithTags: ['type:core', 'type:plugin', 'type:app', 'type:tool'] },
];

const sharedRules = {
  // Null objects (no-op loggers, progress bars) are deliberate.
  '@typescript-eslint/no-empty-function': 'off',
  // With noUncheckedIndexedAccess, `!` after a bounds-checked index is the idiom.
  '@typescript-eslint/no-non-null-assertion': 'off',
  '@typescript-eslint/no-unused-vars': [
    'warn',
    { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrorsIgnorePattern: '^_' },
  ],
};

export default [
  ...nx.configs['flat/base'],
  ...nx.configs['flat/typescript'],
  ...nx.configs['flat/javascript'],
  {
    ignores: [
      '**/dist',
      '**/node_modules',
      '**/out-tsc',
      '**/coverage',
      '**/*.timestamp-*',
      'tools/nx-plugin/src/generators/*/files/**',
      '**/.stryker-tmp',
      '**/reports/mutation',
    ],
  },
  {
    files: ['**/*.ts', '**/*.mts', '**/*.js', '**/*.mjs'],
    ignores: PLUGIN_TESTS,
    rules: { ...sharedRules, '@nx/enforce-module-boundaries': boundaries(constraints(['type:core'])) },
  },
  {
    // A plugin's own tests may use the plugins it declares as dependencies (integration tests),
    // but still only through their public index.
    files: PLUGIN_TESTS,
    rules: { ...sharedRules, '@nx/enforce-module-boundaries': boundaries(constraints(['type:core', 'type:plugin'])) },
  },
];

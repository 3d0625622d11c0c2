#!/usr/bin/env node
/**
 * The `taskforge` executable npm links. It is committed (not built) so that `npm ci` can link it
 * before `dist/` exists, and so its executable bit never depends on a build output (restoring
 * the cli build from Nx's cache drops the mode bits of dist files). It runs the built CLI, or
 * says how to build it. Exit codes are the CLI's (0, 1 runtime, 2 usage); 1 when unbuilt.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const entry = new URL('../dist/bin.js', import.meta.url);
if (!existsSync(entry)) {
  process.stderr.write(
    `error: taskforge is not built yet (${fileURLToPath(entry)} does not exist). ` +
      'Build it from the repository root with `npx nx run-many -t build` (or `npx nx build cli`), then run the command again.\n',
  );
  process.exitCode = 1;
} else {
  await import(entry.href);
}

/**
 * Real signals to a real process: core's SignalWatcher turns the first SIGINT/SIGTERM into a
 * flag (the Trainer then saves and stops), and a second one restores the default action and
 * re-raises it, so the process dies of that signal at once. The CLI's 130/143 exit codes and
 * the resume are in cli.spec.ts. Needs packages/core built.
 */
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it, onTestFinished } from 'vitest';
import { REPO, start } from './fixtures/cli.js';

const SIGNALS = pathToFileURL(join(REPO, 'packages/core/dist/trainer/signals.js')).href;

/** A process that installs a SignalWatcher, reports each first signal, and otherwise idles until killed. */
const SCRIPT = `
const { SignalWatcher } = await import(${JSON.stringify(SIGNALS)});
const watcher = new SignalWatcher(
  (signal) => console.log('first ' + signal),
  (signal) => console.log('second ' + signal),
);
watcher.install();
setInterval(() => {}, 60_000);
console.log('ready');
`;

describe('SignalWatcher in a real process', () => {
  it.each(['SIGINT', 'SIGTERM'] as const)(
    'the first %s is only reported; a second one is reported, then ends the process by that signal',
    async (signal) => {
      const child = start(process.execPath, ['--input-type=module', '-e', SCRIPT]);
      onTestFinished(() => child.signal('SIGKILL')); // never leave it idling when an assertion fails
      await child.waitFor(/^ready$/m);
      child.signal(signal);
      await child.waitFor(new RegExp(`^first ${signal}$`, 'm')); // handled, and the process is still running
      child.signal(signal);
      const ended = await child.exit;
      expect(ended).toMatchObject({ code: null, signal });
      expect(ended.stdout.match(/^first /gm)).toHaveLength(1);
      // Said before dying (the Trainer prints that no checkpoint is saved), exactly once.
      expect(ended.stdout.match(new RegExp(`^second ${signal}$`, 'gm'))).toHaveLength(1);
      expect(ended.stderr).toBe('');
    },
  );
});

#!/usr/bin/env node
import { main } from './main.js';

// A reader that stops early (`taskforge config | head`) closes the pipe: the rest of the output has
// nowhere to go, which is not an error (as for any Unix tool), so exit quietly instead of throwing.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code !== 'EPIPE') throw error;
    process.exit(process.exitCode ?? 0);
  });
}

process.exitCode = await main(process.argv.slice(2));

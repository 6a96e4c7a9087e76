// Entry point of `trainyard` (bin/trainyard.mjs imports this through tsx).
import { run } from './cli';
import { flushed } from './io';

// `trainyard ls | head`: a closed stdout is not an error.
process.stdout.on('error', (e: NodeJS.ErrnoException) => {
  if (e.code === 'EPIPE') process.exit(0);
});

const code = await run(process.argv.slice(2));
await flushed();
// Exit now: keep-alive sockets and subscriptions would otherwise hold the process a while.
process.exit(code);

// `npm run rebuild`: fold the log into read models and compare them with the live ones.
// Prints every difference and exits 1 if there is any; `--apply` replaces the live read models
// with the rebuilt ones (stop the service first when it uses PGlite: one process at a time).
//
// package.json runs it with `--optimize-for-size`: the check streams the log, so its live heap
// stays flat (about 13 MB after a collection at 10k events and at 1M), but over a long run V8's
// default heuristics grow the young generation and the old one around it, which made the peak
// RSS at 1M events 1.3 times that at 10k; the flag keeps both small for some 5-10 % more time
// (docs/BENCHMARKS.md, "Rebuild memory").

import { parseArgs } from 'node:util';
import { storageFromEnv } from './config';
import { openDatabase } from './database';
import { compareWithLog, replaceReadModels } from './rebuild';

const { values } = parseArgs({
  options: { apply: { type: 'boolean', default: false }, json: { type: 'boolean', default: false }, help: { type: 'boolean', short: 'h' } },
});
if (values.help) {
  console.log(
    'usage: npm run rebuild [-- --apply] [-- --json]\n  compares the read models with a fold of the event log; exit 1 on any difference',
  );
  process.exit(0);
}

const storage = storageFromEnv();
const database = await openDatabase(storage);
try {
  const started = performance.now();
  const { differences, events, tasks } = await compareWithLog(database.db);
  const ms = Math.round(performance.now() - started);
  if (values.json) console.log(JSON.stringify({ storage: database.kind, events, tasks, ms, differences }));
  else {
    console.log(`${database.kind} (${database.location}): folded ${events} events into ${tasks} tasks in ${ms} ms`);
    for (const d of differences)
      console.log(
        `DIFF ${d.kind} ${d.id}${d.fields ? ` fields=${d.fields.join(',')}` : ''}\n  live:    ${JSON.stringify(d.live)}\n  rebuilt: ${JSON.stringify(d.rebuilt)}`,
      );
    console.log(
      differences.length ? `${differences.length} difference(s) between the read models and the log` : 'read models match the log',
    );
  }
  if (differences.length && values.apply) {
    const r = await replaceReadModels(database);
    console.log(`replaced the read models with the fold of ${r.events} events (${r.tasks} tasks)`);
  } else if (differences.length) {
    process.exitCode = 1;
  }
} finally {
  await database.close();
}

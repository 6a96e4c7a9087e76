// restart cost vs history size: with 10k, 100k, 1M events in the log (bulk-generated, see
// lib/history.ts), the time from spawning the service to its first answered request, its RSS
// then, and the rebuild (`npm run rebuild`: fold the whole log and compare with the read models),
// which must find no difference. On Postgres and on PGlite. And what the service's CPU does once
// started and idle, with that history (its periodic work: the GPU refresh and the accounts).
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openDatabase } from '@trainyard/store';
import {
  dropSchema,
  freshSchemaName,
  onCleanup,
  printTable,
  processCpuMs,
  ratio,
  removeDir,
  summarize,
  target,
  type BenchContext,
  type Benchmark,
  type BenchOutput,
  type Target,
} from '../lib/common';
import { EVENTS_PER_TASK, generateHistory } from '../lib/history';
import { baseEnv, runRebuild, type RebuildResult } from '../lib/rebuild';
import { startServer, type Backend } from '../lib/server';

interface Row {
  system: 'trainyard';
  backend: 'postgres' | 'pglite';
  events: number;
  tasks: number;
  generateMs: number;
  starts: number;
  /** Median over the starts. */
  firstResponseMs: number;
  listeningMs: number;
  firstResponseAllMs: number[];
  rssMiB: number | null;
  peakRssMiB: number | null;
  /** The service's CPU while idle after its last start, in ms per second over idleMs. */
  idleCpuMsPerS: number;
  rebuild: RebuildResult;
}

export const restart: Benchmark = {
  name: 'restart',
  description: 'start-up time (spawn to first answered request), RSS and rebuild time vs event-log size',
  async run(ctx: BenchContext): Promise<BenchOutput> {
    const sizes = ctx.sizes ?? (ctx.quick ? [0, 800, 4000] : [0, 10_000, 100_000, 1_000_000]);
    const starts = ctx.n ?? (ctx.quick ? 2 : 3);
    // Four GPU refreshes (every 5 s by default) after the last start.
    const idleMs = ctx.quick ? 1_000 : 20_000;
    const rows: Row[] = [];
    const backends: Row['backend'][] = ctx.skipPglite ? ['postgres'] : ['postgres', 'pglite'];
    for (const kind of backends) {
      for (const size of sizes) {
        const tasks = Math.ceil(size / EVENTS_PER_TASK);
        const dataDir = mkdtempSync(join(tmpdir(), 'trainyard-bench-restart-'));
        const schema = freshSchemaName('restart');
        const drop = onCleanup(async () => {
          if (kind === 'postgres') await dropSchema(ctx.url, schema);
          removeDir(dataDir);
        });
        try {
          // The history, written straight into the database the service will open.
          const db = await openDatabase(kind === 'postgres' ? { url: ctx.url, schema } : { dataDir: join(dataDir, 'pglite') });
          const gen = await generateHistory(db.db, tasks).finally(() => db.close());
          ctx.log(`${kind}: generated ${gen.events} events (${gen.tasks} tasks) in ${gen.ms} ms`);
          const backend: Backend = kind === 'postgres' ? { kind, url: ctx.url, schema } : { kind };
          const firsts: number[] = [];
          const listenings: number[] = [];
          let memory: { rssMiB: number; peakMiB: number } | null = null;
          let idleCpuMsPerS = NaN;
          for (let i = 0; i < starts; i++) {
            const server = await startServer({ backend, dataDir, ownData: false });
            memory = server.memory();
            firsts.push(Math.round(server.startup.firstResponseMs));
            listenings.push(Math.round(server.startup.listeningMs));
            if (i === starts - 1) {
              const before = processCpuMs(server.pid);
              await new Promise((r) => setTimeout(r, idleMs));
              idleCpuMsPerS = Math.round(((processCpuMs(server.pid) - before) / (idleMs / 1000)) * 10) / 10;
            }
            await server.stop();
            await server.dispose();
          }
          const env = { ...baseEnv(), TRAINYARD_DATA_DIR: dataDir };
          if (kind === 'postgres') Object.assign(env, { DATABASE_URL: ctx.url, TRAINYARD_DB_SCHEMA: schema });
          const rebuild = await runRebuild(env);
          if (!rebuild.ok) throw new Error(`rebuild check failed at ${size} events (${kind}): ${JSON.stringify(rebuild)}`);
          const row: Row = {
            system: 'trainyard',
            backend: kind,
            events: gen.events,
            tasks: gen.tasks,
            generateMs: gen.ms,
            starts,
            firstResponseMs: summarize(firsts).p50,
            listeningMs: summarize(listenings).p50,
            firstResponseAllMs: firsts,
            rssMiB: memory?.rssMiB ?? null,
            peakRssMiB: memory?.peakMiB ?? null,
            idleCpuMsPerS,
            rebuild,
          };
          rows.push(row);
          ctx.log(
            `${kind} ${gen.events} events: first response ${row.firstResponseMs} ms, RSS ${row.rssMiB} MiB, idle CPU ${idleCpuMsPerS} ms/s, rebuild ${rebuild.ms} ms`,
          );
        } finally {
          await drop();
        }
      }
    }

    printTable(
      `restart: spawn to first answered system.health (median of ${starts}), RSS then, and npm run rebuild`,
      [
        'backend',
        'events',
        'tasks',
        'first resp ms',
        'listening ms',
        'RSS MiB',
        'idle CPU ms/s',
        'rebuild ms',
        'rebuild peak MiB',
        'diffs',
      ],
      rows.map((r) => [
        r.backend,
        r.events,
        r.tasks,
        r.firstResponseMs,
        r.listeningMs,
        r.rssMiB,
        r.idleCpuMsPerS,
        r.rebuild.ms,
        r.rebuild.peakMiB,
        r.rebuild.differences,
      ]),
    );
    const ratios: Record<string, number | null> = {};
    const targets: Target[] = [];
    for (const kind of backends) {
      const mine = rows.filter((r) => r.backend === kind).sort((a, b) => a.events - b.events);
      const small = mine[0];
      const large = mine[mine.length - 1];
      if (!small || !large || small === large) continue;
      const key = `${kind} start-up ${large.events}/${small.events} events`;
      ratios[key] = ratio(large.firstResponseMs, small.firstResponseMs);
      ratios[`${kind} RSS ${large.events}/${small.events} events`] = ratio(large.rssMiB, small.rssMiB);
      ratios[`${kind} idle CPU ${large.events}/${small.events} events`] = ratio(large.idleCpuMsPerS, small.idleCpuMsPerS);
      if (kind === 'postgres') {
        targets.push(target(`start-up flat: ${key}`, '≤ 1.2', ratios[key]!, (v) => v <= 1.2));
        targets.push(
          target(`start-up at ${large.events} events (ms, machine-dependent)`, '≤ 1000', large.firstResponseMs, (v) => v <= 1000),
        );
        // Issue 19: the rebuild's peak memory at the largest size against 10k events (Postgres
        // only: PGlite's own memory, in the same process, grows with the database).
        const at10k = mine.find((r) => r.events === 10_000);
        if (at10k && at10k !== large && at10k.rebuild.peakMiB && large.rebuild.peakMiB) {
          const peakKey = `${kind} rebuild peak RSS ${large.events}/${at10k.events} events`;
          ratios[peakKey] = ratio(large.rebuild.peakMiB, at10k.rebuild.peakMiB);
          targets.push(target(`rebuild peak memory: ${peakKey}`, '≤ 1.2', ratios[peakKey]!, (v) => v <= 1.2));
        }
      }
    }
    printTable('restart ratios', ['ratio', 'value'], Object.entries(ratios));
    return {
      params: { sizes, starts, eventsPerTask: EVENTS_PER_TASK, idleMs },
      rows: rows as unknown as Record<string, unknown>[],
      ratios,
      targets,
      notes: [
        'History: finished tasks of 8 events each, written by INSERT … SELECT generate_series with the projection rows the fold gives (then ANALYZE); every size passes the rebuild check (0 differences).',
        'Start-up: from spawn (node --import tsx services/server/src/main.ts, as npm start) to the first answered system.health over HTTP, polled every 5 ms; it includes Node and tsx start-up, the same at every size (the 0-event row is that baseline).',
        'Rebuild: `npm run rebuild -- --json` (compareWithLog): its own figure (fold + compare) and its peak RSS sampled from /proc.',
        `Idle CPU: the service's user + system CPU (/proc, 10 ms ticks) over ${idleMs / 1000} s right after its last start, nothing submitted: its periodic work (the GPU refresh every 5 s, with the users' accounts) on that history.`,
      ],
    };
  },
};

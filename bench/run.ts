// `npm run bench [-- options]`: Trainyard's performance benchmarks against real Postgres
// (BENCH_DATABASE_URL, default postgres://postgres@127.0.0.1:5432/test), each in fresh schemas
// that are dropped afterwards. Each benchmark prints its tables and writes
// <out>/<name>.json (default bench/results/). See docs/BENCHMARKS.md.
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { loadavg } from 'node:os';
import { benchmarks } from './benchmarks';
import { setServerNodeArgs, setServerRoot } from './lib/server';
import {
  adminSql,
  benchDatabaseUrl,
  machineInfo,
  printTargets,
  REPO_ROOT,
  round,
  runAllCleanups,
  writeResult,
  type BenchContext,
  type BenchResult,
} from './lib/common';

const USAGE = `usage: npm run bench -- [options]
  --only a,b        run only these benchmarks (${benchmarks.map((b) => b.name).join(', ')})
  --quick           small sizes: a smoke run that checks the harness, not the figures
  --sizes a,b,...   restart: event-log sizes (default 0,10000,100000,1000000; quick 0,800,4000)
  --n N             override the main count: submit tasks per row (2000), lifecycle and idle-gap
                    tasks (200), restart starts per size (3), reads tasks in history (100000)
  --skip-pglite     leave out the PGlite measurements
  --out DIR         where the JSON goes (default bench/results)
  --cpu-prof DIR    write a V8 CPU profile of every server started into DIR (for profiling)
  --server-root DIR start the service and run the rebuild check from another checkout (e.g. the
                    previous commit, for a before/after comparison); the bench and the store row
                    stay this one
  --list            list the benchmarks
  -h, --help
environment: BENCH_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/test)`;

function parseList(s: string | undefined, what: string): number[] | null {
  if (!s) return null;
  const out = s.split(',').map((x) => Number(x.trim().replace(/_/g, '')));
  if (out.some((x) => !Number.isInteger(x) || x < 0)) throw new Error(`${what}: expected whole numbers, got ${s}`);
  return out;
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      only: { type: 'string' },
      quick: { type: 'boolean', default: false },
      sizes: { type: 'string' },
      n: { type: 'string' },
      'skip-pglite': { type: 'boolean', default: false },
      out: { type: 'string' },
      'cpu-prof': { type: 'string' },
      'server-root': { type: 'string' },
      list: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  if (values.list) {
    for (const b of benchmarks) console.log(`${b.name.padEnd(10)} ${b.description}`);
    return 0;
  }
  const names = values.only
    ? values.only
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean)
    : benchmarks.map((b) => b.name);
  const unknown = names.filter((n) => !benchmarks.some((b) => b.name === n));
  if (unknown.length) {
    console.error(`unknown benchmark(s): ${unknown.join(', ')}\n${USAGE}`);
    return 2;
  }
  const n = parseList(values.n, '--n')?.[0] ?? null;
  const ctx: BenchContext = {
    quick: values.quick,
    url: benchDatabaseUrl(),
    sizes: parseList(values.sizes, '--sizes'),
    skipPglite: values['skip-pglite'],
    n,
    log: (m) => console.log(`[bench] ${m}`),
  };
  const outDir = resolve(values.out ?? resolve(REPO_ROOT, 'bench/results'));
  if (values['server-root']) setServerRoot(resolve(values['server-root']));
  if (values['cpu-prof']) setServerNodeArgs(['--cpu-prof', '--cpu-prof-dir', resolve(values['cpu-prof'])]);

  // Fail early and clearly when there is no Postgres (unless none of those chosen needs one).
  const selected = benchmarks.filter((x) => names.includes(x.name));
  const needsDatabase = selected.some((b) => b.needsDatabase !== false);
  const probe = needsDatabase ? adminSql(ctx.url) : null;
  try {
    if (probe) await probe`SELECT 1`;
  } catch (err) {
    console.error(
      `[bench] Postgres at ${ctx.url} is not reachable (${(err as Error).message}); set BENCH_DATABASE_URL or start one (bash infra/postgres-up.sh).`,
    );
    return 1;
  } finally {
    await probe?.end({ timeout: 2 }).catch(() => {});
  }

  let failed = 0;
  for (const b of selected) {
    console.log(`\n=== ${b.name}${ctx.quick ? ' (quick)' : ''}: ${b.description}`);
    const machine = await machineInfo(b.needsDatabase === false ? null : ctx.url);
    const startedAt = new Date();
    const t0 = performance.now();
    try {
      const out = await b.run(ctx);
      const result: BenchResult = {
        name: b.name,
        schemaVersion: 1,
        quick: ctx.quick,
        startedAt: startedAt.toISOString(),
        finishedAt: new Date().toISOString(),
        durationMs: Math.round(performance.now() - t0),
        machine: { ...machine, loadavgAtEnd: loadavg().map((x) => round(x, 2)) },
        ...out,
      };
      printTargets(result.targets);
      for (const note of result.notes) console.log(`note: ${note}`);
      console.log(`[bench] ${b.name}: ${Math.round(result.durationMs / 100) / 10} s, wrote ${writeResult(outDir, result)}`);
    } catch (err) {
      failed++;
      console.error(`[bench] ${b.name} failed: ${(err as Error).stack ?? err}`);
    } finally {
      await runAllCleanups();
    }
  }
  return failed ? 1 : 0;
}

let interrupted = false;
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    if (interrupted) process.exit(130);
    interrupted = true;
    console.error(`[bench] ${sig}: stopping servers and dropping schemas…`);
    void runAllCleanups().finally(() => process.exit(130));
  });
}

main().then(
  (code) => process.exit(code),
  async (err) => {
    console.error(err);
    await runAllCleanups();
    process.exit(1);
  },
);

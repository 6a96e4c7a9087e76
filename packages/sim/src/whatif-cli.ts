// `npm run whatif -- --policy fifo,backfill (--trace FILE | --from-log) [--gpus N | --load ρ]
// [--timeout-factor 2] [--json]`: replays job submissions through the real scheduling policies in
// virtual time and prints GPU utilisation, queue waits and makespan side by side. See
// docs/SCHEDULING.md ("What-if replay").
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { Command, InvalidArgumentError, Option } from 'commander';
import { POLICY_NAMES, policyByName, type PolicyName } from '@trainyard/domain';
import { jobsFromLog } from './log-jobs';
import { DEFAULT_GPU_MEMORY_MB, replay, type ReplayJob, type ReplayResult } from './replay';
import { DEFAULT_TIMEOUT_FACTOR, offeredLoad, parseTrace, poolForLoad, TraceFormatError } from './trace';

const DEFAULT_TRACE_LOAD = 0.9;

interface Options {
  policy: PolicyName[];
  trace?: string;
  fromLog?: boolean;
  gpus?: number;
  load?: number;
  timeoutFactor?: number;
  gpuMemoryGb: number;
  json?: boolean;
}

/** A usage problem: the message names the flag; exit 2. */
class UsageError extends Error {}

function policies(raw: string): PolicyName[] {
  const names = raw
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  const unknown = names.filter((n) => !(POLICY_NAMES as readonly string[]).includes(n));
  if (!names.length || unknown.length)
    throw new InvalidArgumentError(`expected one or more of ${POLICY_NAMES.join(', ')}, comma-separated`);
  return [...new Set(names)] as PolicyName[];
}
const wholeAtLeastOne = (raw: string) => {
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('expected a whole number ≥ 1');
  return n;
};
const positive = (raw: string) => {
  const x = Number(raw);
  if (!Number.isFinite(x) || x <= 0) throw new InvalidArgumentError('expected a number > 0');
  return x;
};
const atLeastOne = (raw: string) => {
  const x = Number(raw);
  if (!Number.isFinite(x) || x < 1) throw new InvalidArgumentError('expected a number ≥ 1 (a job may not be told less than it runs)');
  return x;
};

interface Loaded {
  source: string;
  jobs: ReplayJob[];
  /** Said under the table: how the timeouts were set, what was left out of the log. */
  notes: string[];
  /** Pool size when neither --gpus nor --load is given. */
  defaultGpus: (jobs: ReplayJob[]) => number;
}

function loadTrace(file: string, timeoutFactor: number): Loaded {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new UsageError(`--trace: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  let jobs: ReplayJob[];
  try {
    jobs = parseTrace(text, { timeoutFactor });
  } catch (err) {
    if (err instanceof TraceFormatError) throw new UsageError(`--trace ${file}: ${err.message}`);
    throw err;
  }
  return {
    source: basename(file),
    jobs,
    notes: [`each job's timeout: ${timeoutFactor} × its real duration (the policy sees only the timeout)`],
    defaultGpus: (all) => poolForLoad(all, DEFAULT_TRACE_LOAD),
  };
}

async function loadLog(): Promise<Loaded> {
  // Imported here: a trace replay needs no database.
  const { openDatabase, readAll, storageFromEnv } = await import('@trainyard/store');
  const database = await openDatabase(storageFromEnv());
  try {
    const events = [];
    for await (const e of readAll(database.db)) events.push(e);
    const log = jobsFromLog(events);
    const notes = ['timeouts, requests and run times (last assignment to end) as recorded'];
    if (log.neverRan) notes.push(`${log.neverRan} task(s) ended without running: left out`);
    if (log.unfinished) notes.push(`${log.unfinished} task(s) not finished yet: left out`);
    return {
      source: `the event log (${database.kind}, ${database.location})`,
      jobs: log.jobs,
      notes,
      defaultGpus: () => {
        if (log.gpusSeen === 0)
          throw new UsageError('--gpus: the log shows no assignment to size the pool from; give --gpus N or --load ρ');
        return log.gpusSeen;
      },
    };
  } finally {
    await database.close();
  }
}

const r1 = (x: number) => Math.round(x * 10) / 10;
const r3 = (x: number) => Math.round(x * 1000) / 1000;

function jsonLine(r: ReplayResult): string {
  const m = r.metrics;
  return JSON.stringify({
    policy: r.policy,
    gpus: r.gpus,
    jobs: r.jobs,
    utilisation: Math.round(m.utilisation * 10_000) / 10_000,
    waitMeanS: r3(m.waitMeanS),
    waitP50S: r3(m.waitP50S),
    waitP99S: r3(m.waitP99S),
    waitMaxS: r3(m.waitMaxS),
    makespanS: r3(m.makespanS),
  });
}

const human = (s: number) =>
  s >= 86_400 ? `${r1(s / 86_400)} d` : s >= 3600 ? `${r1(s / 3600)} h` : s >= 60 ? `${r1(s / 60)} min` : `${r1(s)} s`;

function table(results: ReplayResult[]): string {
  const rows: [string, (r: ReplayResult) => string][] = [
    ['GPU utilisation', (r) => `${(r.metrics.utilisation * 100).toFixed(1)} %`],
    ['queue wait mean', (r) => human(r.metrics.waitMeanS)],
    ['queue wait p50', (r) => human(r.metrics.waitP50S)],
    ['queue wait p99', (r) => human(r.metrics.waitP99S)],
    ['queue wait max', (r) => human(r.metrics.waitMaxS)],
    ['makespan', (r) => human(r.metrics.makespanS)],
    ['started by backfill', (r) => String(r.backfilled)],
  ];
  const head = ['', ...results.map((r) => r.policy)];
  const cells = rows.map(([name, f]) => [name, ...results.map(f)]);
  const widths = head.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  const line = (c: string[]) =>
    c
      .map((x, i) => (i === 0 ? x.padEnd(widths[i]!) : x.padStart(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(head), widths.map((w) => '-'.repeat(w)).join('  '), ...cells.map(line)].join('\n');
}

async function main(opts: Options): Promise<void> {
  if (Boolean(opts.trace) === Boolean(opts.fromLog)) throw new UsageError('give one source: --trace FILE or --from-log');
  if (opts.fromLog && opts.timeoutFactor !== undefined)
    throw new UsageError('--timeout-factor: applies to --trace only; a logged task carries its own timeout');
  const loaded = opts.trace ? loadTrace(opts.trace, opts.timeoutFactor ?? DEFAULT_TIMEOUT_FACTOR) : await loadLog();
  const { jobs } = loaded;
  let gpus: number;
  try {
    gpus = opts.gpus ?? (opts.load !== undefined ? poolForLoad(jobs, opts.load) : loaded.defaultGpus(jobs));
  } catch (err) {
    if (err instanceof RangeError) throw new UsageError(`--load: ${err.message.replace(/^load: /, '')}`);
    throw err;
  }
  const pool = { gpus, gpuMemoryMb: Math.round(opts.gpuMemoryGb * 1024) };
  const results = opts.policy.map((name) => replay(jobs, policyByName(name), pool));
  const left = results[0]!.skipped.length;
  const rho = offeredLoad(jobs, gpus);
  const leftNote = left ? `${left} job(s) can never fit ${gpus} GPUs (e.g. more GPUs than the pool): left out and counted` : null;
  if (opts.json) {
    for (const r of results) console.log(jsonLine(r));
    if (leftNote) console.error(`whatif: ${leftNote}`);
    return;
  }
  console.log(
    `what-if replay of ${loaded.source}: ${jobs.length - left} jobs on ${gpus} GPUs` +
      `${Number.isFinite(rho) ? ` (offered load ${rho.toFixed(2)})` : ''}, in virtual time\n`,
  );
  console.log(table(results));
  console.log('');
  for (const note of [...loaded.notes, ...(leftNote ? [leftNote] : [])]) console.log(`note: ${note}`);
}

const program = new Command('whatif')
  .description('Replay job submissions through the real scheduling policies in virtual time and compare them side by side.')
  .addOption(
    new Option('--policy <names>', `policies to compare, comma-separated (${POLICY_NAMES.join(', ')})`)
      .argParser(policies)
      .default(['fifo', 'backfill'], 'fifo,backfill'),
  )
  .addOption(
    new Option(
      '--trace <file>',
      'a job trace CSV: job_id,submission_time,duration,num_gpu (seconds), e.g. bench/traces/elasticflow-itp/cluster04.csv',
    ),
  )
  .addOption(
    new Option(
      '--from-log',
      'the submissions of the recorded event log: DATABASE_URL, else PGlite under TRAINYARD_DATA_DIR (default .trainyard); stop a service on PGlite first',
    ),
  )
  .addOption(
    new Option('--gpus <n>', 'pool size (default: --load 0.9 for a trace, the GPUs the log used for --from-log)')
      .argParser(wholeAtLeastOne)
      .conflicts('load'),
  )
  .addOption(new Option('--load <rho>', 'size the pool for this offered load: N = GPU-seconds / (span × ρ), rounded').argParser(positive))
  .addOption(
    new Option(
      '--timeout-factor <k>',
      `each trace job's timeout as a multiple of its duration (default ${DEFAULT_TIMEOUT_FACTOR})`,
    ).argParser(atLeastOne),
  )
  .addOption(
    new Option('--gpu-memory-gb <gb>', 'memory of each GPU (matters only for requests with a memory figure)')
      .argParser(positive)
      .default(DEFAULT_GPU_MEMORY_MB / 1024),
  )
  .addOption(
    new Option(
      '--json',
      'one JSON object per policy per line: policy, gpus, jobs, utilisation, waitMeanS, waitP50S, waitP99S, waitMaxS, makespanS',
    ),
  )
  .showHelpAfterError('(add --help to see the flags)')
  .exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : 2))
  .action(async (opts: Options) => {
    try {
      await main(opts);
    } catch (err) {
      if (!(err instanceof UsageError)) throw err;
      console.error(`error: ${err.message}`);
      process.exit(2);
    }
  });

await program.parseAsync();

// The real-process torture harness. Real servers (child processes, as `npm start` runs them) on
// real Postgres (a private cluster the harness owns, so it can restart it) or PGlite, a fast
// simulated trainer, and a seeded schedule of actions: submissions with idempotency keys (a
// submission whose answer was lost is retried with the same key), cancels, SIGKILLs of the
// service at random moments, SIGKILLs of trainers' process groups, and restarts of Postgres.
// After each step and when the run has settled, the invariants of invariants.ts are checked.
//
// Scenarios:
//   chaos     one service on Postgres, everything above
//   pglite    one service on PGlite (no database restarts: it is embedded)
//   two       two services (own data folders) on one Postgres schema, commands sent to either
//
// Same seed → same schedule of actions (what happens in between is real time, so outcomes may
// differ; the schedule, the task specs and the choices of targets do not).
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import postgres from 'postgres';
import { OPEN_STATUSES, type StoredTaskEvent, type TaskRecord } from '@trainyard/domain';
import { compareWithLog, openDatabase, type Database, type Difference } from '@trainyard/store';
import { createPgCluster, type PgCluster } from './pg-cluster';
import { callApi, DATASET, killAllUnder, REPO_ROOT, scanProcesses, ServerProc, stillAlive } from './procs';
import { Prng } from './prng';
import {
  checkAcknowledged,
  checkCleanStop,
  checkFifo,
  checkNoneLeft,
  checkOutageHealth,
  checkOutageRefusal,
  checkOutcomes,
  checkSettled,
  checkSubmissions,
  checkTailDelivered,
  checkTaskStreams,
  LiveChecker,
  listAllTasks,
  LogTracker,
  PostgresLog,
  readLogViaApi,
  reportDifferences,
  Violations,
  type Violation,
} from './invariants';

const execFileP = promisify(execFile);
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------------------------
// Profiles

export interface Profile {
  name: string;
  /** Single-service scenarios (chaos on Postgres, pglite). */
  tasks: number;
  serverKills: number;
  trainerKills: number;
  dbRestarts: number;
  cancels: number;
  /** Re-submissions of an acknowledged key (must return the same task). */
  dupSubmits: number;
  /** Actions are spread over this long. */
  scheduleMs: number;
  /** After the schedule, how long everything may take to end. */
  settleMs: number;
  slots: number;
  /** Compare read models with the log every N steps (Postgres; PGlite compares at the end). */
  compareEvery: number;
  /** PGlite scenario size (a fraction of the above). */
  pglite: { tasks: number; serverKills: number; trainerKills: number; cancels: number; scheduleMs: number };
  two: { creates: number; cancels: number; scheduleMs: number; kills: number };
  /** Free slot with a non-empty queue for longer than this = stall. */
  stallMs: number;
}

export const PROFILES: Record<string, Profile> = {
  smoke: {
    name: 'smoke',
    tasks: 12,
    serverKills: 2,
    trainerKills: 1,
    dbRestarts: 1,
    cancels: 2,
    dupSubmits: 2,
    scheduleMs: 15_000,
    settleMs: 60_000,
    slots: 1,
    compareEvery: 1,
    pglite: { tasks: 6, serverKills: 1, trainerKills: 1, cancels: 1, scheduleMs: 8_000 },
    two: { creates: 10, cancels: 3, scheduleMs: 8_000, kills: 0 },
    stallMs: 5_000,
  },
  ci: {
    name: 'ci',
    tasks: 40,
    serverKills: 7,
    trainerKills: 4,
    dbRestarts: 1,
    cancels: 8,
    dupSubmits: 6,
    scheduleMs: 45_000,
    settleMs: 90_000,
    slots: 1,
    compareEvery: 1,
    pglite: { tasks: 16, serverKills: 3, trainerKills: 1, cancels: 3, scheduleMs: 20_000 },
    // At least one kill (planTwo plans exactly `kills`): CI sees two instances survive a SIGKILL, not only share a schema.
    two: { creates: 30, cancels: 8, scheduleMs: 20_000, kills: 2 },
    stallMs: 5_000,
  },
  medium: {
    name: 'medium',
    tasks: 160,
    serverKills: 30,
    trainerKills: 12,
    dbRestarts: 4,
    cancels: 25,
    dupSubmits: 20,
    scheduleMs: 240_000,
    settleMs: 240_000,
    slots: 1,
    compareEvery: 2,
    pglite: { tasks: 60, serverKills: 12, trainerKills: 4, cancels: 8, scheduleMs: 90_000 },
    two: { creates: 120, cancels: 30, scheduleMs: 90_000, kills: 4 },
    stallMs: 5_000,
  },
  // Over a hundred service kills in about 25 minutes: the longest run that fits a working session.
  long: {
    name: 'long',
    tasks: 500,
    serverKills: 120,
    trainerKills: 40,
    dbRestarts: 10,
    cancels: 80,
    dupSubmits: 60,
    scheduleMs: 14 * 60_000,
    settleMs: 5 * 60_000,
    slots: 1,
    compareEvery: 4,
    pglite: { tasks: 100, serverKills: 30, trainerKills: 8, cancels: 15, scheduleMs: 4 * 60_000 },
    two: { creates: 200, cancels: 40, scheduleMs: 3 * 60_000, kills: 8 },
    stallMs: 5_000,
  },
  full: {
    name: 'full',
    tasks: 1200,
    serverKills: 300,
    trainerKills: 100,
    dbRestarts: 25,
    cancels: 200,
    dupSubmits: 150,
    scheduleMs: 40 * 60_000,
    settleMs: 15 * 60_000,
    slots: 1,
    compareEvery: 5,
    pglite: { tasks: 300, serverKills: 80, trainerKills: 20, cancels: 40, scheduleMs: 10 * 60_000 },
    two: { creates: 600, cancels: 120, scheduleMs: 8 * 60_000, kills: 20 },
    stallMs: 5_000,
  },
};

// ---------------------------------------------------------------------------------------------
// Tasks and actions

type Expect = 'complete' | 'exit' | 'signal';

interface Sub {
  i: number;
  key: string;
  input: Record<string, unknown>;
  expect: Expect;
  id: string | null;
  acked: boolean;
  attempts: number;
  /** The answer of at least one attempt was lost (network error, service down). */
  ambiguous: boolean;
  trainerKilled: boolean;
  cancel: 'acked' | 'conflict' | 'unknown' | null;
  /** Instance that acknowledged it (two-instance scenario). */
  via: string | null;
}

function taskSpecs(prng: Prng, n: number, keyPrefix: string): Sub[] {
  const subs: Sub[] = [];
  for (let i = 0; i < n; i++) {
    const r = prng.next();
    const long = prng.chance(0.2);
    const steps = long ? prng.int(10, 25) : prng.int(2, 5);
    const sim: Record<string, unknown> = { steps, stepMs: prng.int(10, 50), startupMs: prng.int(0, 30) };
    let expect: Expect = 'complete';
    if (r < 0.15) {
      sim.failAtStep = prng.int(1, steps);
      sim.exitCode = prng.int(1, 9);
      expect = 'exit';
    } else if (r < 0.25) {
      sim.crashSignal = prng.pick(['SIGSEGV', 'SIGABRT', 'SIGKILL']);
      expect = 'signal';
    }
    if (prng.chance(0.1)) sim.logLinesPerStep = prng.int(1, 5);
    // NUL-laden and other hostile output (a NUL last line once left its task TRAINING for good).
    if (prng.chance(0.15)) sim.hostileOutput = true;
    const key = `${keyPrefix}-${i}`;
    subs.push({
      i,
      key,
      input: {
        model: 'Qwen/Qwen2.5-Coder-0.5B-Instruct',
        datasetPath: DATASET,
        name: `chaos ${i}`,
        config: { epochs: 1, simulate: sim },
        idempotencyKey: key,
      },
      expect,
      id: null,
      acked: false,
      attempts: 0,
      ambiguous: false,
      trainerKilled: false,
      cancel: null,
      via: null,
    });
  }
  return subs;
}

type KillVariant = 'plain' | 'during-submit' | 'after-start' | 'during-cancel';

export type Action =
  | { at: number; kind: 'submit'; i: number; both?: boolean; burst?: number }
  | { at: number; kind: 'dup'; u: number }
  | { at: number; kind: 'cancel'; u: number; server: number }
  | { at: number; kind: 'kill-server'; variant: KillVariant; delayMs: number; downMs: number; server: number }
  | { at: number; kind: 'kill-trainer'; u: number }
  | { at: number; kind: 'restart-db'; mode: 'fast' | 'immediate'; outageMs: number; killServer: boolean };

function spread(prng: Prng, n: number, span: number, from = 0.03, to = 0.9): number[] {
  return Array.from({ length: n }, () => Math.round(span * (from + (to - from) * prng.next())));
}

function planChaos(
  seed: number,
  p: {
    tasks: number;
    serverKills: number;
    trainerKills: number;
    dbRestarts: number;
    cancels: number;
    dupSubmits: number;
    scheduleMs: number;
  },
): Action[] {
  const prng = new Prng(seed).fork('schedule');
  const actions: Action[] = [];
  // Submissions arrive in bursts and lulls: exponential gaps around the mean.
  const mean = (p.scheduleMs * 0.85) / Math.max(1, p.tasks);
  let t = 0;
  for (let i = 0; i < p.tasks;) {
    // Now and then a burst: several submissions at once (concurrent transactions racing for the queue).
    const burst = prng.chance(0.2) ? Math.min(prng.int(2, 4), p.tasks - i) : 1;
    actions.push({ at: Math.round(t), kind: 'submit', i, burst });
    i += burst;
    t += prng.exp(mean) * burst;
  }
  for (const at of spread(prng, p.dupSubmits, p.scheduleMs, 0.1, 0.95)) actions.push({ at, kind: 'dup', u: prng.next() });
  for (const at of spread(prng, p.cancels, p.scheduleMs, 0.05, 0.95)) actions.push({ at, kind: 'cancel', u: prng.next(), server: 0 });
  for (const at of spread(prng, p.serverKills, p.scheduleMs, 0.05, 0.92)) {
    const variant = prng.pick<KillVariant>(['plain', 'during-submit', 'after-start', 'during-cancel']);
    actions.push({
      at,
      kind: 'kill-server',
      variant,
      delayMs: prng.int(0, variant === 'after-start' ? 300 : 40),
      downMs: prng.int(0, 1500),
      server: 0,
    });
  }
  for (const at of spread(prng, p.trainerKills, p.scheduleMs)) actions.push({ at, kind: 'kill-trainer', u: prng.next() });
  for (const at of spread(prng, p.dbRestarts, p.scheduleMs, 0.15, 0.85))
    actions.push({
      at,
      kind: 'restart-db',
      mode: prng.pick(['fast', 'immediate'] as const),
      outageMs: prng.int(500, 3000),
      killServer: prng.chance(0.3),
    });
  return actions.sort((a, b) => a.at - b.at || kindOrder(a) - kindOrder(b));
}

function kindOrder(a: Action): number {
  return ['submit', 'dup', 'cancel', 'kill-trainer', 'kill-server', 'restart-db'].indexOf(a.kind);
}

/** The two-instance schedule: `p.creates` submissions, `p.cancels` cancels and exactly `p.kills` SIGKILLs of an instance. */
export function planTwo(seed: number, p: Profile['two'], servers: number): Action[] {
  const prng = new Prng(seed).fork('two');
  const actions: Action[] = [];
  const mean = (p.scheduleMs * 0.85) / Math.max(1, p.creates);
  let t = 0;
  for (let i = 0; i < p.creates;) {
    // Now and then the same key goes to both instances at once; now and then a burst of several
    // submissions spread over both.
    const both = prng.chance(0.2);
    const burst = !both && prng.chance(0.25) ? Math.min(prng.int(2, 4), p.creates - i) : 1;
    actions.push({ at: Math.round(t), kind: 'submit', i, both, burst });
    i += burst;
    t += prng.exp(mean) * burst;
  }
  for (const at of spread(prng, p.cancels, p.scheduleMs, 0.05, 0.95))
    actions.push({ at, kind: 'cancel', u: prng.next(), server: prng.int(0, servers - 1) });
  for (const at of spread(prng, p.kills, p.scheduleMs, 0.1, 0.85))
    actions.push({ at, kind: 'kill-server', variant: 'plain', delayMs: 0, downMs: prng.int(0, 1500), server: prng.int(0, servers - 1) });
  return actions.sort((a, b) => a.at - b.at || kindOrder(a) - kindOrder(b));
}

// ---------------------------------------------------------------------------------------------
// Runs

interface PgControl {
  stop(mode: 'fast' | 'immediate'): Promise<void>;
  start(): Promise<void>;
}

export interface PostgresTarget {
  url: string;
  /** How to stop and start the database (our own cluster, or the shared one when allowed); null = never. */
  control: PgControl | null;
  /** Our own cluster, to destroy at the end. */
  cluster: PgCluster | null;
}

export interface ScenarioReport {
  scenario: string;
  backend: 'postgres' | 'pglite';
  seed: number;
  profile: string;
  slots: number;
  servers: number;
  durationMs: number;
  tasks: {
    planned: number;
    acknowledged: number;
    byStatus: Record<string, number>;
    retriedSubmissions: number;
    ambiguousSubmissions: number;
    duplicateChecks: number;
  };
  serverKills: number;
  serverStarts: number;
  startsRefusedWhileDbDown: number;
  trainerKills: number;
  dbRestarts: number;
  dbRestartsSkipped: string | null;
  cancels: { acked: number; conflict: number; unknown: number };
  checks: { live: number; compares: number; events: number; fifoPairs: number };
  violations: Violation[];
  kept: string | null;
}

export interface RunOptions {
  seed: number;
  profile: Profile;
  postgres?: PostgresTarget;
  log?: (m: string) => void;
  /** Keep data folders (and the schema) when there are violations, for a post-mortem. */
  keepOnFailure?: boolean;
}

const SERVER_ENV = {
  TRAINYARD_POLL_MS: '100',
  TRAINYARD_KILL_GRACE_MS: '1000',
  TRAINYARD_QUEUE_WARN: '1000',
};

class Scenario {
  readonly t0 = Date.now();
  readonly v: Violations;
  readonly tracker = new LogTracker();
  readonly servers: ServerProc[] = [];
  readonly dataDirs: string[] = [];
  readonly live: LiveChecker;
  readonly restarting = new Map<number, Promise<void>>();
  pgLog: PostgresLog | null = null;
  direct: Database | null = null;
  schema: string | null = null;
  dbDown = false;
  dbBackAt = 0;
  subs: Sub[] = [];
  counters = { trainerKills: 0, dbRestarts: 0, startsRefused: 0, dupChecks: 0, compares: 0, retried: 0 };
  prng: Prng;

  constructor(
    readonly name: string,
    readonly backend: 'postgres' | 'pglite',
    readonly opts: RunOptions,
    readonly slots: number,
    nServers: number,
  ) {
    const log = opts.log ?? ((m: string) => console.error(m));
    this.log = (m: string) => log(`[${name} +${((Date.now() - this.t0) / 1000).toFixed(1)}s] ${m}`);
    this.v = new Violations(this.t0, this.log);
    this.prng = new Prng(opts.seed).fork(`${name}-runtime`);
    for (let i = 0; i < nServers; i++) this.dataDirs.push(mkdtempSync(join(tmpdir(), `trainyard-torture-${name}-`)));
    this.live = new LiveChecker(this.v, slots, this.dataDirs, { stallMs: opts.profile.stallMs, stuckPreparingMs: 30_000 });
  }

  readonly log: (m: string) => void;

  async setup(): Promise<void> {
    const env: Record<string, string> = { ...SERVER_ENV, TRAINYARD_GPU_SLOTS: String(this.slots) };
    if (this.backend === 'postgres') {
      const pg = this.opts.postgres!;
      this.schema = `torture_${this.name}_${this.opts.seed}_${Date.now().toString(36)}`.toLowerCase().replace(/[^a-z0-9_]/g, '_');
      env.DATABASE_URL = pg.url;
      env.TRAINYARD_DB_SCHEMA = this.schema;
      this.direct = await openDatabase({ url: pg.url, schema: this.schema, maxConnections: 2 });
      this.pgLog = new PostgresLog(this.direct);
    }
    this.dataDirs.forEach((dataDir, i) => {
      const s = new ServerProc({
        name: `server ${String.fromCharCode(65 + i)}`,
        dataDir,
        env: { ...env, ...(this.dataDirs.length > 1 ? { TRAINYARD_INSTANCE: `torture-${String.fromCharCode(65 + i)}` } : {}) },
        onUnexpectedExit: ({ code, signal, output }) =>
          this.v.add('crash', 'run', `${s.opts.name} exited on its own (code ${code}, signal ${signal}); last output:\n${output}`),
      });
      this.servers.push(s);
    });
    await Promise.all(this.servers.map((s) => s.start()));
    this.log(
      `${this.servers.length} server(s) up on ${this.backend}${this.schema ? ` (schema ${this.schema})` : ''}; ${this.slots} slot(s); data ${this.dataDirs.join(' ')}`,
    );
  }

  url(i = 0): string {
    return this.servers[i]!.url;
  }

  up(i = 0): boolean {
    return this.servers[i]!.alive && !this.restarting.has(i);
  }

  upServers(): number[] {
    return this.servers.map((_, i) => i).filter((i) => this.up(i));
  }

  // -- actions ---------------------------------------------------------------------------------

  /** Submit (or re-submit with the same key); records the acknowledgement or that the answer was lost. */
  async submit(sub: Sub, step: string, server = 0, concurrent = false): Promise<void> {
    sub.attempts++;
    if (sub.attempts > 1) this.counters.retried++;
    const r = await callApi<TaskRecord & { created: boolean }>(this.url(server), 'tasks.create', sub.input, { timeoutMs: 30_000 });
    if (r.ok) {
      if (sub.id && r.data.id !== sub.id)
        this.v.add('3', step, `submission ${sub.key} was acknowledged as ${sub.id} and again as ${r.data.id}: one submission, two tasks`);
      if (sub.acked && r.data.created && !concurrent)
        this.v.add('3', step, `re-submitting ${sub.key} created a new task (${r.data.id}) instead of returning ${sub.id}`);
      sub.id ??= r.data.id;
      sub.acked = true;
      sub.via ??= this.servers[server]!.opts.name;
      return;
    }
    sub.ambiguous = true;
    if (!['NETWORK_ERROR', 'SERVICE_UNAVAILABLE'].includes(r.error.code)) {
      this.v.add('api', step, `tasks.create ${sub.key} → ${r.error.code}: ${r.error.message.slice(0, 300)}`, `create-${r.error.code}`);
    }
  }

  async retryPending(step: string): Promise<void> {
    for (const sub of this.subs) {
      if (sub.acked || sub.attempts === 0) continue;
      const up = this.upServers();
      if (!up.length || this.dbDown) return;
      await this.submit(sub, `${step} (retry)`, this.prng.pick(up));
    }
  }

  async cancel(u: number, step: string, server = 0): Promise<Sub | null> {
    const acked = this.subs.filter((s) => s.acked);
    if (!acked.length) return null;
    // Aim at a task that has not ended (most end within a second), else at any.
    const open = this.up(server) ? await listAllTasks(this.url(server), [...OPEN_STATUSES]) : null;
    const openIds = new Set((open ?? []).map((t) => t.id));
    const targets = acked.filter((s) => openIds.has(s.id!));
    const pool = targets.length ? targets : acked;
    const sub = pool[Math.floor(u * pool.length)]!;
    const r = await callApi<TaskRecord>(this.url(server), 'tasks.cancel', { id: sub.id, reason: 'torture' }, { timeoutMs: 30_000 });
    if (r.ok) sub.cancel = 'acked';
    else if (r.error.code === 'CONFLICT') sub.cancel ??= 'conflict';
    else if (['NETWORK_ERROR', 'SERVICE_UNAVAILABLE'].includes(r.error.code)) sub.cancel ??= 'unknown';
    else this.v.add('api', step, `tasks.cancel ${sub.id} → ${r.error.code}: ${r.error.message.slice(0, 300)}`, `cancel-${r.error.code}`);
    return sub;
  }

  async dup(u: number, step: string): Promise<void> {
    const acked = this.subs.filter((s) => s.acked);
    if (!acked.length) return;
    const sub = acked[Math.floor(u * acked.length)]!;
    this.counters.dupChecks++;
    const r = await callApi<TaskRecord & { created: boolean }>(this.url(0), 'tasks.create', sub.input, { timeoutMs: 30_000 });
    if (r.ok) {
      if (r.data.id !== sub.id || r.data.created)
        this.v.add('3', step, `re-submitting ${sub.key} returned ${r.data.id} (created ${r.data.created}), not ${sub.id}`);
    } else if (!['NETWORK_ERROR', 'SERVICE_UNAVAILABLE'].includes(r.error.code)) {
      this.v.add('api', step, `re-submitting ${sub.key} → ${r.error.code}: ${r.error.message.slice(0, 300)}`, `dup-${r.error.code}`);
    }
  }

  async killTrainer(u: number, step: string): Promise<void> {
    // Wait a little for one to be running (tasks are short).
    let trainers = scanProcesses(this.dataDirs).filter((p) => p.kind === 'trainer');
    for (let i = 0; i < 100 && !trainers.length; i++) {
      await sleep(50);
      trainers = scanProcesses(this.dataDirs).filter((p) => p.kind === 'trainer');
    }
    if (!trainers.length) return;
    const p = trainers[Math.floor(u * trainers.length)]!;
    try {
      process.kill(-p.pid, 'SIGKILL'); // the trainer leads its own process group
      this.counters.trainerKills++;
      const sub = this.subs.find((s) => s.id === p.taskId);
      if (sub) sub.trainerKilled = true;
      this.log(`${step}: SIGKILL to trainer group ${p.pid} (task ${p.taskId})`);
    } catch {
      /* it ended meanwhile */
    }
  }

  /** SIGKILL a server now and start it again in the background after `downMs`. */
  async killServer(i: number, downMs: number, step: string): Promise<void> {
    await this.restarting.get(i);
    const s = this.servers[i]!;
    await s.kill('SIGKILL');
    this.log(`${step}: SIGKILLed ${s.opts.name} (kill #${s.kills})`);
    this.live.resetClocks();
    const p = (async () => {
      // PGlite: with the service down (one process at a time), fold the log it left after the
      // SIGKILL and compare with its read models.
      if (this.backend === 'pglite') await this.comparePglite(`${step} (service down)`, this.dataDirs[i]!);
      await sleep(downMs);
      await s.startEventually(120_000, (err) => {
        this.counters.startsRefused++;
        this.log(
          `${s.opts.name} refused to start (${this.dbDown ? 'database down' : 'database up'}): ${
            err.output
              .split('\n')
              .filter((l) => /cannot start|error/i.test(l))
              .slice(-1)[0] ?? err.message
          }`,
        );
        // Refusing to start while the database is away is right; with it back for a while, not.
        if (!this.dbDown && Date.now() - this.dbBackAt > 10_000)
          this.v.add('start', step, `${s.opts.name} could not start with the database up: ${err.output.slice(-600)}`, `start-${s.starts}`);
      });
      this.live.resetClocks();
    })().finally(() => this.restarting.delete(i));
    this.restarting.set(i, p);
  }

  async comparePglite(step: string, dataDir: string): Promise<void> {
    const db = await openDatabase({ dataDir: join(dataDir, 'pglite') });
    try {
      const r = await compareWithLog(db.db);
      this.counters.compares++;
      reportDifferences(r.differences, this.v, step);
    } catch (err) {
      this.v.add('4', step, `could not fold the PGlite log after a SIGKILL: ${(err as Error).message}`);
    } finally {
      await db.close();
    }
  }

  async restartDb(a: Extract<Action, { kind: 'restart-db' }>, step: string): Promise<void> {
    const pg = this.opts.postgres!;
    for (const p of this.restarting.values()) await p;
    const control = pg.control!;
    this.log(`${step}: stopping Postgres (${a.mode}) for ${a.outageMs} ms${a.killServer ? ', and SIGKILLing the service meanwhile' : ''}`);
    await control.stop(a.mode);
    this.dbDown = true;
    this.counters.dbRestarts++;
    try {
      await sleep(300);
      // While the database is away: health says so, procedures say SERVICE_UNAVAILABLE, nobody crashes.
      for (const i of this.upServers()) {
        const probeAt = Date.now();
        const h = await callApi<{ ok: boolean; database: string; error: string | null }>(this.url(i), 'system.health', undefined, {
          timeoutMs: 15_000,
        });
        this.log(
          `${step}: health during the outage after ${Date.now() - probeAt} ms: ${h.ok ? JSON.stringify(h.data).slice(0, 200) : h.error.code}`,
        );
        checkOutageHealth(h, this.v, step);
        for (const [proc, input] of [
          ['tasks.list', { limit: 1 }],
          ['queue.get', undefined],
          ['tasks.get', { id: this.subs.find((s) => s.id)?.id ?? 'tnone' }],
          ['tasks.logs', { id: this.subs.find((s) => s.id)?.id ?? 'tnone' }],
          ['events.list', { limit: 5 }],
          ['tasks.cancel', { id: this.subs.find((s) => s.id)?.id ?? 'tnone' }],
        ] as const) {
          const r = await callApi(this.url(i), proc, input, { timeoutMs: 15_000 });
          this.log(
            `${step}: ${proc} during the outage after ${Date.now() - probeAt} ms: ${r.ok ? 'ok' : `${r.error.code} ${r.error.message.slice(0, 120)}`}`,
          );
          checkOutageRefusal(proc, r, this.v, step);
        }
      }
      // A submission during the outage: refused as unavailable, retried later with its key.
      const next = this.subs.find((s) => s.attempts === 0);
      if (next && this.up(0)) {
        const r = await callApi(this.url(0), 'tasks.create', next.input, { timeoutMs: 15_000 });
        next.attempts++;
        next.ambiguous = true;
        checkOutageRefusal('tasks.create', r, this.v, step, false);
      }
      if (a.killServer && this.up(0)) await this.killServer(0, 200, `${step} (service killed during the outage)`);
      await sleep(a.outageMs);
    } finally {
      await control.start();
      this.dbDown = false;
      this.dbBackAt = Date.now();
      this.live.resetClocks();
    }
    for (const p of this.restarting.values()) await p;
    // Back: every instance must answer healthily soon, having not crashed.
    const backAt = Date.now();
    for (const i of this.servers.keys()) {
      const until = Date.now() + 30_000;
      for (;;) {
        const h = await callApi<{ ok: boolean; error: string | null }>(this.url(i), 'system.health', undefined, { timeoutMs: 10_000 });
        if (h.ok && h.data.ok) break;
        if (Date.now() > until) {
          this.v.add(
            'db-outage',
            step,
            `${this.servers[i]!.opts.name} not healthy 30 s after Postgres came back: ${h.ok ? h.data.error : h.error.message}`,
          );
          break;
        }
        await sleep(200);
      }
    }
    this.log(`${step}: Postgres back, service healthy after ${Date.now() - backAt} ms`);
  }

  // -- checks ----------------------------------------------------------------------------------

  private stepNo = 0;

  async check(step: string, opts: { compare?: boolean } = {}): Promise<void> {
    if (this.dbDown) return;
    this.stepNo++;
    const up = this.upServers();
    if (up.length)
      await this.live.check(
        up.map((i) => this.url(i)),
        step,
      );
    if (this.pgLog) {
      try {
        this.tracker.add(await this.pgLog.readNew(), this.v, step);
        this.tracker.checkStreams(this.v, step);
        if (opts.compare ?? this.stepNo % this.opts.profile.compareEvery === 0) {
          const r = await this.pgLog.compare();
          this.counters.compares++;
          reportDifferences(r.differences, this.v, step);
        }
      } catch (err) {
        if (!this.dbDown) this.log(`check at ${step} could not read the database: ${(err as Error).message}`);
      }
    }
  }

  // -- settling and the final verdict ----------------------------------------------------------

  async settle(): Promise<void> {
    for (const p of this.restarting.values()) await p;
    const until = Date.now() + this.opts.profile.settleMs;
    // Every submission gets acknowledged in the end (retried with its key).
    while (this.subs.some((s) => s.attempts > 0 && !s.acked) && Date.now() < until) {
      await this.retryPending('settle');
      await sleep(200);
    }
    checkAcknowledged(this.subs, this.v, 'settle');
    let last: TaskRecord[] = [];
    while (Date.now() < until) {
      const open = await listAllTasks(this.url(this.upServers()[0] ?? 0), [...OPEN_STATUSES]);
      if (open && open.length === 0) {
        last = [];
        break;
      }
      if (open) last = open;
      await this.check('settle');
      await sleep(500);
    }
    checkSettled(last, this.opts.profile.settleMs, this.v, 'settle');
    this.log(`settled: ${last.length} task(s) still open`);
  }

  async verdict(): Promise<void> {
    const step = 'final';
    await this.check(step, { compare: true });
    const url = this.url(this.upServers()[0] ?? 0);
    const tasks = (await listAllTasks(url)) ?? [];
    const byId = checkSubmissions(tasks, this.subs, this.v, step);

    // The log: what the tail delivered == the whole log; streams; terminal events; FIFO.
    let all: StoredTaskEvent[] | null;
    if (this.pgLog) {
      all = await this.pgLog.readAll();
      this.tracker.add(await this.pgLog.readNew(), this.v, step);
      checkTailDelivered(all, this.tracker.all(), this.v, step);
    } else {
      all = await readLogViaApi(url);
      this.tracker.reset();
      if (all) this.tracker.add(all, this.v, step);
    }
    this.tracker.checkStreams(this.v, step, true);
    const fifoPairs = checkFifo(this.tracker, this.v, step);
    this.fifoPairs = fifoPairs;
    checkTaskStreams(tasks, this.tracker, this.v, step);

    checkOutcomes(this.subs, byId, this.v, step);

    // No trainer or shepherd outlives its ended task.
    const until = Date.now() + 8_000;
    let left = scanProcesses(this.dataDirs);
    while (left.length && Date.now() < until) {
      await sleep(250);
      left = scanProcesses(this.dataDirs).filter(stillAlive);
    }
    checkNoneLeft(left, this.v, step);

    // Stop gracefully, then fold the log with nobody writing.
    for (const s of this.servers) {
      await s.stop();
      checkCleanStop(s.opts.name, { code: s.proc?.exitCode ?? null, signal: s.proc?.signalCode ?? null }, this.v, step);
    }
    if (this.pgLog) {
      const r = await this.pgLog.compare();
      this.counters.compares++;
      reportDifferences(r.differences, this.v, step, 'after stop: ');
    } else {
      const env: Record<string, string> = { ...(process.env as Record<string, string>), TRAINYARD_DATA_DIR: this.dataDirs[0]! };
      delete env.DATABASE_URL;
      const out = await execFileP('npm', ['run', '--silent', 'rebuild', '--', '--json'], { cwd: REPO_ROOT, env }).catch(
        (e: { stdout?: string; stderr?: string }) => e,
      );
      this.counters.compares++;
      try {
        const report = JSON.parse((out.stdout ?? '').trim().split('\n').pop()!);
        reportDifferences(report.differences as Difference[], this.v, step, 'rebuild: ');
        if (report.tasks !== tasks.length) this.v.add('4', step, `rebuild folded ${report.tasks} tasks, the API listed ${tasks.length}`);
      } catch {
        this.v.add('4', step, `npm run rebuild -- --json failed: ${(out.stderr ?? '').slice(-500)}`);
      }
    }
    this.byStatus = {};
    for (const t of tasks) this.byStatus[t.status] = (this.byStatus[t.status] ?? 0) + 1;
  }

  fifoPairs = 0;
  byStatus: Record<string, number> = {};

  async cleanup(keep: boolean): Promise<string | null> {
    for (const s of this.servers) await s.kill('SIGKILL').catch(() => {});
    killAllUnder(this.dataDirs);
    await this.direct?.close().catch(() => {});
    if (keep) return [...this.dataDirs, this.schema ? `schema ${this.schema}` : ''].filter(Boolean).join(' ');
    for (const d of this.dataDirs) rmSync(d, { recursive: true, force: true });
    if (this.schema && this.opts.postgres) {
      const sql = postgres(this.opts.postgres.url, { max: 1, onnotice: () => {} });
      await sql.unsafe(`DROP SCHEMA IF EXISTS ${this.schema} CASCADE`).catch(() => {});
      await sql.end({ timeout: 2 }).catch(() => {});
    }
    return null;
  }

  report(extra: { planned: number; serverKills: number; dbRestartsSkipped: string | null }): ScenarioReport {
    const acked = this.subs.filter((s) => s.acked);
    const cancels = { acked: 0, conflict: 0, unknown: 0 };
    for (const s of this.subs) if (s.cancel) cancels[s.cancel]++;
    return {
      scenario: this.name,
      backend: this.backend,
      seed: this.opts.seed,
      profile: this.opts.profile.name,
      slots: this.slots,
      servers: this.servers.length,
      durationMs: Date.now() - this.t0,
      tasks: {
        planned: extra.planned,
        acknowledged: acked.length,
        byStatus: this.byStatus,
        retriedSubmissions: this.counters.retried,
        ambiguousSubmissions: this.subs.filter((s) => s.ambiguous).length,
        duplicateChecks: this.counters.dupChecks,
      },
      serverKills: extra.serverKills,
      serverStarts: this.servers.reduce((n, s) => n + s.starts, 0),
      startsRefusedWhileDbDown: this.counters.startsRefused,
      trainerKills: this.counters.trainerKills,
      dbRestarts: this.counters.dbRestarts,
      dbRestartsSkipped: extra.dbRestartsSkipped,
      cancels,
      checks: { live: this.live.checks, compares: this.counters.compares, events: this.tracker.events, fifoPairs: this.fifoPairs },
      violations: this.v.list,
      kept: null,
    };
  }

  async sleepUntil(at: number): Promise<void> {
    const ms = this.t0 + at - Date.now();
    if (ms > 0) await sleep(ms);
  }
}

/** One service, real processes, the full menu of failures. `backend` pglite skips database restarts. */
export async function runChaos(opts: RunOptions & { backend: 'postgres' | 'pglite' }): Promise<ScenarioReport> {
  const p = opts.profile;
  const isPg = opts.backend === 'postgres';
  const size = isPg ? p : { ...p, ...p.pglite, dbRestarts: 0, dupSubmits: Math.ceil(p.dupSubmits / 3) };
  const canRestartDb = isPg && !!opts.postgres?.control;
  const dbRestartsSkipped =
    isPg && !canRestartDb && size.dbRestarts > 0
      ? 'no private Postgres cluster could be created and restarting the shared one was not allowed'
      : null;
  const plan = planChaos(opts.seed, { ...size, dbRestarts: canRestartDb ? size.dbRestarts : 0 });
  const sc = new Scenario(isPg ? 'chaos' : 'pglite', opts.backend, opts, p.slots, 1);
  sc.subs = taskSpecs(new Prng(opts.seed).fork(`${sc.name}-tasks`), size.tasks, `chaos-${opts.seed}-${sc.name}`);
  sc.log(
    `seed ${opts.seed}, profile ${p.name}: ${size.tasks} tasks, ${size.serverKills} service kills, ${size.trainerKills} trainer kills, ${canRestartDb ? size.dbRestarts : 0} database restarts, ${size.cancels} cancels over ${Math.round(size.scheduleMs / 1000)} s`,
  );
  if (dbRestartsSkipped) sc.log(`!!! DATABASE RESTARTS SKIPPED: ${dbRestartsSkipped}`);
  let kept: string | null = null;
  try {
    await sc.setup();
    for (const [n, a] of plan.entries()) {
      await sc.sleepUntil(a.at);
      const step = `#${n} ${a.kind}`;
      if (sc.up(0) && !sc.dbDown) await sc.retryPending(step);
      switch (a.kind) {
        case 'submit':
          await Promise.all(sc.subs.slice(a.i, a.i + (a.burst ?? 1)).map((sub) => sc.submit(sub, step)));
          break;
        case 'dup':
          if (sc.up(0)) await sc.dup(a.u, step);
          break;
        case 'cancel':
          await sc.cancel(a.u, step);
          break;
        case 'kill-trainer':
          await sc.killTrainer(a.u, step);
          break;
        case 'kill-server': {
          await sc.restarting.get(0);
          if (a.variant === 'during-submit') {
            const next = sc.subs.find((s) => s.attempts === 0);
            const pending = next ? sc.submit(next, `${step} (in flight)`) : Promise.resolve();
            await sleep(a.delayMs);
            await sc.killServer(0, a.downMs, `${step} ${a.variant}`);
            await pending;
          } else if (a.variant === 'after-start') {
            // Kill while a trainer is being launched: submit onto a free slot, then kill.
            const next = sc.subs.find((s) => s.attempts === 0);
            if (next) await sc.submit(next, `${step} (to start)`);
            await sleep(a.delayMs);
            await sc.killServer(0, a.downMs, `${step} ${a.variant} +${a.delayMs}ms`);
          } else if (a.variant === 'during-cancel') {
            const running = sc.subs.filter((s) => s.acked && !s.cancel);
            const pending = running.length ? sc.cancel(sc.prng.next(), `${step} (cancel in flight)`) : Promise.resolve(null);
            await sleep(a.delayMs);
            await sc.killServer(0, a.downMs, `${step} ${a.variant}`);
            await pending;
          } else {
            await sc.killServer(0, a.downMs, `${step} plain`);
          }
          break;
        }
        case 'restart-db':
          await sc.restartDb(a, step);
          break;
      }
      await sc.check(step);
    }
    await sc.settle();
    await sc.verdict();
  } finally {
    kept = await sc.cleanup(!!opts.keepOnFailure && sc.v.list.length > 0);
  }
  const r = sc.report({ planned: size.tasks, serverKills: sc.servers[0]?.kills ?? 0, dbRestartsSkipped });
  r.kept = kept;
  return r;
}

/**
 * Two services (own data folders, own runner ids) on one Postgres schema; creates and cancels
 * go to either at random, sometimes the same key to both at once. No double start, no lost
 * command.
 */
export async function runTwoInstances(opts: RunOptions & { slots?: number }): Promise<ScenarioReport> {
  const p = opts.profile;
  const slots = opts.slots ?? new Prng(opts.seed).fork('two-slots').int(1, 2);
  const plan = planTwo(opts.seed, p.two, 2);
  const sc = new Scenario('two', 'postgres', opts, slots, 2);
  sc.subs = taskSpecs(new Prng(opts.seed).fork('two-tasks'), p.two.creates, `two-${opts.seed}`);
  sc.log(
    `seed ${opts.seed}, profile ${p.name}: 2 instances, ${slots} slot(s), ${p.two.creates} creates, ${p.two.cancels} cancels, ${p.two.kills} kills over ${Math.round(p.two.scheduleMs / 1000)} s`,
  );
  let kept: string | null = null;
  let kills = 0;
  try {
    await sc.setup();
    for (const [n, a] of plan.entries()) {
      await sc.sleepUntil(a.at);
      const step = `#${n} ${a.kind}`;
      // Both instances can be down at once (the second kill lands while the first restarts):
      // the action waits for one to come back rather than being dropped.
      if (!sc.upServers().length && sc.restarting.size) await Promise.race(sc.restarting.values());
      const up = sc.upServers();
      if (!up.length) continue;
      switch (a.kind) {
        case 'submit': {
          const sub = sc.subs[a.i]!;
          if (a.both && up.length > 1) {
            sc.counters.dupChecks++;
            await Promise.all(up.map((i) => sc.submit(sub, `${step} (same key to both)`, i, true)));
          } else {
            const burst = sc.subs.slice(a.i, a.i + (a.burst ?? 1));
            const servers = burst.map(() => sc.prng.pick(up));
            await Promise.all(burst.map((b, k) => sc.submit(b, step, servers[k])));
          }
          break;
        }
        case 'cancel': {
          const server = up.includes(a.server) ? a.server : up[0]!;
          // Now and then the same cancel to both at once.
          if (sc.prng.chance(0.25) && up.length > 1) await Promise.all(up.map((i) => sc.cancel(a.u, step, i)));
          else await sc.cancel(a.u, step, server);
          break;
        }
        case 'kill-server':
          kills++;
          await sc.killServer(a.server, a.downMs, step);
          break;
        default:
          break;
      }
      await sc.check(step);
    }
    await sc.settle();
    await sc.verdict();
  } finally {
    kept = await sc.cleanup(!!opts.keepOnFailure && sc.v.list.length > 0);
  }
  const r = sc.report({ planned: p.two.creates, serverKills: kills, dbRestartsSkipped: null });
  r.kept = kept;
  return r;
}

// ---------------------------------------------------------------------------------------------
// Postgres for the runs

/**
 * A private cluster when one can be made here; else the shared one at `sharedUrl` without
 * database restarts (or with them, restarting the shared cluster, when `restartShared`).
 */
export async function postgresTarget(opts: {
  sharedUrl: string | null;
  restartShared?: boolean;
  log: (m: string) => void;
}): Promise<{ target: PostgresTarget | null; note: string | null }> {
  try {
    const cluster = await createPgCluster({ log: opts.log });
    return { target: { url: cluster.url, cluster, control: cluster }, note: null };
  } catch (err) {
    const why = (err as Error).message;
    if (!opts.sharedUrl) return { target: null, note: `no Postgres: ${why}` };
    if (opts.restartShared) {
      const version = await execFileP('ls', ['/etc/postgresql']).then((r) => r.stdout.trim().split('\n').pop()!);
      const ctl = (...args: string[]) => execFileP('pg_ctlcluster', ['--skip-systemctl-redirect', version, 'main', ...args]).then(() => {});
      return {
        target: {
          url: opts.sharedUrl,
          cluster: null,
          control: { stop: (mode) => ctl('stop', '-m', mode), start: () => ctl('start') },
        },
        note: `private cluster impossible (${why}); restarting the SHARED cluster ${version}/main`,
      };
    }
    return {
      target: { url: opts.sharedUrl, cluster: null, control: null },
      note: `private cluster impossible (${why}); shared Postgres used WITHOUT database restarts`,
    };
  }
}

export function summarize(reports: ScenarioReport[]): string {
  const lines: string[] = [];
  for (const r of reports) {
    lines.push(
      `${r.scenario.padEnd(6)} ${r.backend.padEnd(8)} seed ${r.seed} profile ${r.profile}: ` +
        `${r.tasks.acknowledged}/${r.tasks.planned} tasks ${JSON.stringify(r.tasks.byStatus)}, ` +
        `${r.serverKills} service kills survived (${r.serverStarts} starts, ${r.startsRefusedWhileDbDown} refused while db down), ` +
        `${r.trainerKills} trainer kills, ${r.dbRestarts} db restarts${r.dbRestartsSkipped ? ` (SKIPPED: ${r.dbRestartsSkipped})` : ''}, ` +
        `cancels ${JSON.stringify(r.cancels)}, ${r.tasks.retriedSubmissions} retried / ${r.tasks.ambiguousSubmissions} ambiguous submissions, ${r.tasks.duplicateChecks} duplicate checks, ` +
        `checks ${r.checks.live} live / ${r.checks.compares} compares / ${r.checks.events} events / ${r.checks.fifoPairs} fifo pairs, ` +
        `${Math.round(r.durationMs / 1000)} s → ${r.violations.length} violation(s)`,
    );
    for (const v of r.violations) lines.push(`   [${v.invariant}] ${v.step}: ${v.message.split('\n')[0]}`);
    if (r.kept) lines.push(`   kept for inspection: ${r.kept}`);
  }
  return lines.join('\n');
}

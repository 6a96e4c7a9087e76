// A deterministic simulation of the service: the real lifecycle machine, the real command and
// scheduling logic (TaskCommands), the real recovery decision, over an in-memory log with real
// transaction semantics, a simulated clock, a simulated process table and run folders, and the
// runner's decisions (the domain's run decider, as the real runner uses it). A seeded PRNG drives submits, cancels, trainer exits (success, failure,
// signal), timeouts and crashes anywhere: between "decided" and "committed" (inside a
// transaction) and between "process spawned" and "event appended". After every step the
// invariants are checked; a failing seed replays exactly.
import {
  accountsFrom,
  runsOf,
  backfillPolicy,
  DEFAULT_FAIR_SHARE_HALF_LIFE_MS,
  DEFAULT_PRIORITY,
  decideLostDevices,
  decideRecovery,
  decideRun,
  evolve,
  fifoOrder,
  migDeviceId,
  uniformInventory,
  type Device,
  type DeviceHolderRow,
  IllegalCommandError,
  initialState,
  isActive,
  isTerminal,
  linesMayHaveFailed,
  rebuildReadModels,
  statusOf,
  startRun,
  toRecord,
  withLastOutput,
  type RunFacts,
  type RunObservation,
  type RunState,
  type StoredTaskEvent,
  type TaskCommand,
  type TaskRecord,
  type TaskSpec,
  type TaskState,
  type UserLimits,
  type Account,
  type TrainingConfig,
  type SchedulingPolicy,
  queueFor,
  visibleTask,
  type WaitReason,
} from '@trainyard/domain';
import { queuedView, TaskCommands, toDeviceViews, type LogLine, type TransactionRunner } from '@trainyard/store';
import { MemoryDb, SimulatedCrash } from './memory-repo';
import { Prng } from './prng';

/** The training knobs of every simulated task: small and fixed (the trainer is simulated). */
export const SIM_TRAINING_CONFIG: TrainingConfig = {
  epochs: 1,
  batchSize: 1,
  gradientAccumulation: 1,
  learningRate: 1e-4,
  maxLength: 64,
  load8bit: false,
  load4bit: false,
  loraRank: 8,
  loraAlpha: 16,
};

const RUNNER = 'sim';
const GRACE_MS = 5000;
/** How long a preempted trainer has to checkpoint after SIGUSR1. */
const PREEMPT_GRACE_MS = 2000;
const T0 = Date.parse('2026-01-01T00:00:00.000Z');

interface Proc {
  pid: number;
  startTime: string;
  taskId: string;
  runDir: string;
  alive: boolean;
  trainingAt: number;
  endAt: number;
  outcome: { code: number | null; signal: string | null };
  ignoreSigterm: boolean;
  termAt: number | null;
  /** Checkpoints: whether it answers SIGUSR1, the step it started from, when it prints the checkpoint asked for. */
  checkpoints: boolean;
  startStep: number;
  checkpointAt: number | null;
  /** What the trainer printed last: the runner stores it with the exit. Sometimes NUL-laden. */
  lastLines: string[];
}

/** A trainer's last output, as the runner hands it to the exit's transaction. */
const LAST_OUTPUTS: readonly string[][] = [
  ['saved adapter'],
  ['loss 0.12', 'last\u0000line'],
  ['\u0000\u0000', 'lone \uD800 surrogate', 'low \uDC00 half'],
  [],
];
const UNSAFE_TEXT = /\u0000|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

interface RunFiles {
  trainer?: { pid: number; startTime: string };
  exit?: { code: number | null; signal: string | null; error?: string };
}

interface Run {
  /** The run decider's state of the run. */
  state: RunState;
  /** When the kill grace ends (the runner's kill timer). */
  killAt: number | null;
  /** When the preempt grace after SIGUSR1 is over. */
  preemptAt: number | null;
  /** The trainer's training phase line was read since this run was taken in charge. */
  phaseRead: boolean;
}

/** What a caller of observe() continues with: a recovery look again, a launch, a wait. */
interface Next {
  recover?: TaskRecord;
  launch?: boolean;
  awaitShepherd?: boolean;
}

/** The service's in-memory state: all of it is lost in a crash. */
class Service {
  runs = new Map<string, Run>();
  toLaunch: string[] = [];
  toStop: string[] = [];
  crashAfterSpawn = false;
}

export interface SimOptions {
  seed: number;
  steps: number;
  /** Whole GPUs (80 GB each). */
  slots: number;
  /** Add a GPU in MIG mode (a 3g.40gb and two 1g.10gb instances) after the whole ones. */
  mig?: boolean;
  /** Keep a trace of every action (for replaying a failing seed). */
  trace?: boolean;
  /** Planted bugs, to prove the invariants catch them (specs only). */
  policy?: SchedulingPolicy;
  recovery?: typeof decideRecovery;
  /** The run decider (replaced only to plant a bug). */
  runDecider?: typeof decideRun;
  /** A run decider that gives up on an exit whose last lines the database refused. */
  exitLostWithRefusedLines?: boolean;
  /** A store that never finds a task by its idempotency key. */
  forgetIdempotencyKeys?: boolean;
  /** A service that does not stop tasks on devices that left the inventory. */
  ignoreLostDevices?: boolean;
  /** Users' quotas and fair-share weights (alice and bob submit). */
  limits?: UserLimits[];
  /** A launcher that starts a preempted task from zero instead of its checkpoint. */
  forgetCheckpoints?: boolean;
  /** Preempt by fair share too (TRAINYARD_PREEMPTION=fair-share), not only by priority. */
  fairSharePreemption?: boolean;
  /** What a user may read (the service's visibility.ts is the domain's; replaced only to plant a bug). */
  visibility?: { visibleTask: typeof visibleTask; queueFor: typeof queueFor };
}

/**
 * The invariants, each by a stable name a planted-bug spec can assert (the numbers are those of
 * docs/RELIABILITY.md). Checked after every step (check) unless marked "at the end" (checkEnd).
 */
export type SimInvariant =
  /** A retried idempotency key made a second task, or a fresh key none (submit, submitMany). */
  | 'idempotency'
  /** Service work threw something other than a simulated crash: a constraint the database would refuse, an illegal command. */
  | 'unexpected-error'
  /** 5: a stream's versions are not 1..n contiguous. */
  | 'stream-version'
  /** 2: a task was assigned while one queued before it still waited. */
  | 'fifo'
  /** 3: the machine refuses an event of the log (a state the lifecycle does not allow). */
  | 'log-not-foldable'
  /** 4: a task's read model is not the fold of its stream. */
  | 'read-model'
  /** 1: a device is held by a task that is not running on it. */
  | 'device-holder'
  /** 1: a task records a device it does not hold. */
  | 'phantom-device'
  /** 1: a device holds more memory than it has, or an exclusive holder shares its device. */
  | 'device-overcommit'
  /** 1: a task holds some but not all of the devices it asked for (gangs are all or nothing). */
  | 'partial-gang'
  /** 2: a task started on a device reserved for the blocked head and could outlive the reservation. */
  | 'backfill-delays-head'
  /** A preempted task's next attempt starts before its checkpoint. */
  | 'resume'
  /** 1: a user holds more devices than their quota allows. */
  | 'quota'
  /** A user reads another user's task: by its id, or in the queue (a record, or its id in a reason). */
  | 'isolation'
  /** 1: with the service up, a task runs on a device that left the inventory and nobody stopped it. */
  | 'lost-device'
  /** 1: a live trainer for a task that holds no device. */
  | 'orphan-trainer'
  /** 1: two live trainers for one task. */
  | 'double-trainer'
  /** 6: with the service up, the policy would start a queued task that waits. */
  | 'stall'
  /** At the end: a task that never ended. */
  | 'stuck'
  /** At the end: a trainer still running after every task ended. */
  | 'trainer-at-end'
  /** At the end: a stored log line with NUL or a lone surrogate. */
  | 'unsafe-text'
  /** At the end (4): the task read models differ from a full rebuild of the log. */
  | 'rebuild-tasks'
  /** At the end (1, 4): the device holders differ from a full rebuild of the log. */
  | 'rebuild-holders';

export interface SimViolation {
  invariant: SimInvariant;
  step: number;
  message: string;
}

/** One line for a report: `step 12 [fifo]: …`. */
export function describeViolation(v: SimViolation): string {
  return `step ${v.step} [${v.invariant}]: ${v.message}`;
}

export interface SimResult {
  seed: number;
  steps: number;
  tasks: number;
  events: number;
  crashes: number;
  crashesInTransaction: number;
  crashesAfterSpawn: number;
  restarts: number;
  trainerKills: number;
  vanished: number;
  outcomes: Record<string, number>;
  violations: SimViolation[];
  trace: string[];
}

export class World {
  readonly rng: Prng;
  clock = T0;
  readonly db: MemoryDb;
  readonly commands: TaskCommands;
  svc: Service | null = null;
  private procs = new Map<number, Proc>();
  private files = new Map<string, RunFiles>();
  private nextPid = 100;
  private nextTask = 1;
  private shadow = new Map<string, TaskState>();
  private checkedEvents = 0;
  readonly result: SimResult;

  constructor(readonly opts: SimOptions) {
    this.rng = new Prng(opts.seed);
    this.db = new MemoryDb(simInventory(opts), () => this.clock);
    const transaction: TransactionRunner = opts.forgetIdempotencyKeys
      ? (fn) => this.db.transaction((repo) => fn({ ...repo, findByIdempotencyKey: async () => null }))
      : this.db.transaction;
    this.commands = new TaskCommands(transaction, {
      runnerId: RUNNER,
      maxAttempts: 1,
      now: () => this.clock,
      releaseGraceMs: GRACE_MS,
      accounts: () => (this.lastAccounts = this.accounts()),
      preemption: { maxPreemptions: 3, fairShare: opts.fairSharePreemption === true },
      ...(opts.policy ? { policy: opts.policy } : {}),
      onCommit: (events) => this.onCommit(events),
    });
    this.result = {
      seed: opts.seed,
      steps: 0,
      tasks: 0,
      events: 0,
      crashes: 0,
      crashesInTransaction: 0,
      crashesAfterSpawn: 0,
      restarts: 0,
      trainerKills: 0,
      vanished: 0,
      outcomes: {},
      violations: [],
      trace: [],
    };
  }

  private log(line: string): void {
    if (this.opts.trace) this.result.trace.push(`[${this.clock - T0}ms] ${line}`);
  }

  private violation(invariant: SimInvariant, message: string): void {
    if (this.result.violations.length < 20) this.result.violations.push({ invariant, step: this.result.steps, message });
  }

  // -------------------------------------------------------------------------------------------
  // The run

  async run(): Promise<SimResult> {
    await this.restart();
    for (let i = 0; i < this.opts.steps && this.result.violations.length === 0; i++) {
      this.result.steps++;
      await this.guard(() => this.step());
      this.check();
    }
    await this.drain();
    this.result.events = this.db.events.length;
    for (const t of this.db.tasks.values()) this.result.outcomes[t.status] = (this.result.outcomes[t.status] ?? 0) + 1;
    return this.result;
  }

  /** Run service work; a simulated crash takes the service down, anything else is a bug. */
  private async guard(fn: () => Promise<void>): Promise<void> {
    try {
      await fn();
    } catch (err) {
      if (err instanceof SimulatedCrash) {
        this.log(`CRASH ${err.message}`);
        this.result.crashes++;
        this.result.crashesInTransaction++;
        this.svc = null;
        return;
      }
      if (err instanceof ServiceCrashAfterSpawn) {
        this.log('CRASH between spawn and TrainerSpawned');
        this.result.crashes++;
        this.result.crashesAfterSpawn++;
        this.svc = null;
        return;
      }
      this.violation('unexpected-error', `unexpected error: ${(err as Error).stack ?? err}`);
    }
  }

  private async step(): Promise<void> {
    const up = this.svc !== null;
    const action = this.rng.weighted({
      submit: up ? 28 : 0,
      burst: up ? 5 : 0,
      cancel: up ? 10 : 0,
      delete: up ? 3 : 0,
      advance: 30,
      killTrainer: 4,
      vanish: 1.5,
      crash: up ? 3 : 0,
      armCrash: up ? 4 : 0,
      armSpawnCrash: up ? 2 : 0,
      refuseLogLines: up ? 3 : 0,
      inventory: 1.5,
      restart: up ? 0 : 25,
    });
    switch (action) {
      case 'submit':
        return this.submit();
      case 'burst':
        return this.submitBurst();
      case 'cancel': {
        const t = this.rng.pick([...this.db.tasks.values()].filter((x) => !isTerminal(x.status)));
        if (t) {
          this.log(`cancel ${t.id} (${t.status})`);
          await this.command(t.id, { type: 'cancel', reason: 'sim' }, 'user');
          await this.work();
        }
        return;
      }
      case 'delete': {
        const t = this.rng.pick([...this.db.tasks.values()].filter((x) => isTerminal(x.status) && !x.deleted));
        if (t) await this.command(t.id, { type: 'delete' }, 'user');
        return;
      }
      case 'advance':
        return this.advance(this.rng.int(1, 3000));
      case 'killTrainer': {
        const p = this.rng.pick([...this.procs.values()].filter((x) => x.alive));
        if (p) {
          this.log(`SIGKILL trainer ${p.pid} of ${p.taskId}`);
          this.result.trainerKills++;
          this.exitProc(p, { code: null, signal: 'SIGKILL' });
          await this.work();
        }
        return;
      }
      case 'vanish': {
        // Trainer and shepherd gone without a trace (OOM killer, machine reset of the group).
        const p = this.rng.pick([...this.procs.values()].filter((x) => x.alive));
        if (p) {
          this.log(`trainer ${p.pid} of ${p.taskId} vanished`);
          this.result.vanished++;
          p.alive = false;
          await this.work();
        }
        return;
      }
      case 'crash':
        this.log('CRASH between operations');
        this.result.crashes++;
        this.svc = null;
        return;
      case 'armCrash':
        this.db.crashAtWrite = this.db.writes + this.rng.int(1, 6);
        return;
      case 'armSpawnCrash':
        this.svc!.crashAfterSpawn = true;
        return;
      case 'refuseLogLines':
        // The next lines stored are refused (some text the database will not take).
        this.db.refuseNextLogLines = true;
        return;
      case 'inventory':
        return this.changeInventory();
      case 'restart':
        return this.restart();
    }
  }

  private newSubmission(): { id: string; spec: TaskSpec } {
    const id = `t${this.nextTask++}`;
    const duration = this.rng.int(100, 8000);
    const r = this.rng.next();
    const outcome =
      r < 0.7
        ? { code: 0, signal: null }
        : r < 0.85
          ? { code: 1, signal: null }
          : r < 0.92
            ? { code: null, signal: 'SIGSEGV' }
            : { code: 137, signal: null };
    // A few retried submissions reuse an earlier key: they must get the earlier task back.
    const key = this.rng.chance(0.1) && this.nextTask > 2 ? `k${this.rng.int(1, this.nextTask - 1)}` : `k${this.nextTask - 1}`;
    const spec: TaskSpec = {
      name: id,
      model: 'm-0.5B',
      datasetPath: '/d.jsonl',
      outputDir: id,
      timeoutMs: this.rng.chance(0.15) ? this.rng.int(500, 4000) : 6 * 3_600_000,
      resources: this.newRequest(),
      // Two users, one submitting most of the work (the owner follows the key, so a retried
      // submission is the same user's); now and then a task of another priority.
      owner: Number(key.slice(1)) % 10 < 7 ? 'alice' : 'bob',
      priority: this.rng.chance(0.85) ? DEFAULT_PRIORITY : this.rng.chance(0.6) ? { name: 'high', value: 10 } : { name: 'low', value: -10 },
      idempotencyKey: key,
      config: {
        ...SIM_TRAINING_CONFIG,
        simulate: {
          steps: duration, // (the simulation reads its own behaviour from these knobs)
          exitCode: outcome.code ?? undefined,
          crashSignal: outcome.signal ?? undefined,
          ignoreSigterm: this.rng.chance(0.15),
          startupMs: this.rng.int(0, 500),
          failAtStep: this.rng.chance(0.03) ? -1 : undefined, // -1: the trainer cannot be started
        },
      },
    };
    // What the service refuses at submission (more GPUs than the user may ever hold) is not sent.
    const cap = this.opts.limits?.find((l) => l.name === spec.owner)?.maxGpus ?? null;
    if (cap !== null && spec.resources.gpus > cap) spec.resources = { ...spec.resources, gpus: cap };
    return { id, spec };
  }

  /** Mostly one exclusive GPU; now and then a gang of two, or a shared task with a memory figure. */
  private newRequest(): TaskSpec['resources'] {
    const r = this.rng.next();
    if (r < 0.1 && this.opts.slots >= 2) return { gpus: 2, memoryMb: null, shared: false, memorySource: null };
    if (r < 0.35) return { gpus: 1, memoryMb: this.rng.int(4, 30) * 1024, shared: true, memorySource: 'given' };
    if (r < 0.45) return { gpus: 1, memoryMb: this.rng.int(4, 40) * 1024, shared: false, memorySource: 'given' };
    return { gpus: 1, memoryMb: null, shared: false, memorySource: null };
  }

  private async submit(): Promise<void> {
    const { id, spec } = this.newSubmission();
    const existing = [...this.db.tasks.values()].find((t) => t.spec.idempotencyKey === spec.idempotencyKey);
    const res = await this.commands.submit(id, spec, { actor: 'user' });
    this.log(`submit ${id} -> ${res.task.id} ${res.task.status}${res.created ? '' : ' (idempotent)'}`);
    if (existing && (res.created || res.task.id !== existing.id))
      this.violation('idempotency', `idempotency key ${spec.idempotencyKey} made a second task`);
    if (!existing && !res.created) this.violation('idempotency', `fresh key ${spec.idempotencyKey} did not create a task`);
    if (res.created) this.result.tasks++;
    await this.work();
  }

  /** Several submissions committed together (group commit): each as if alone, in order. */
  private async submitBurst(): Promise<void> {
    const batch = Array.from({ length: this.rng.int(2, 4) }, () => this.newSubmission());
    const stored = (key: string | null | undefined) => [...this.db.tasks.values()].find((t) => t.spec.idempotencyKey === key);
    const before = batch.map((b) => stored(b.spec.idempotencyKey));
    const results = await this.commands.submitMany(batch.map((b) => ({ taskId: b.id, spec: b.spec, meta: { actor: 'user' } })));
    const failed = results.find((r) => r instanceof Error);
    if (failed) throw failed; // a crash is every submission's outcome
    const firstWithKey = new Map<string | null | undefined, string>();
    results.forEach((res, i) => {
      if (res instanceof Error) return;
      const { id, spec } = batch[i]!;
      const expected = before[i]?.id ?? firstWithKey.get(spec.idempotencyKey) ?? id;
      if (!firstWithKey.has(spec.idempotencyKey)) firstWithKey.set(spec.idempotencyKey, expected);
      this.log(`burst submit ${id} -> ${res.task.id} ${res.task.status}${res.created ? '' : ' (idempotent)'}`);
      if (res.task.id !== expected || res.created !== (expected === id))
        this.violation(
          'idempotency',
          `burst: ${id} with key ${spec.idempotencyKey} got ${res.task.id} (created ${res.created}), expected ${expected}`,
        );
      if (res.created) this.result.tasks++;
    });
    await this.work();
  }

  private async restart(): Promise<void> {
    if (this.svc) return;
    this.db.crashAtWrite = null;
    this.svc = new Service();
    this.result.restarts++;
    this.log('service start: recovery');
    await this.guard(async () => {
      for (const t of [...this.db.tasks.values()].filter((x) => isActive(x.status))) {
        if (t.runnerId === RUNNER) await this.settle(t);
      }
      await this.noticeLostDevices();
      await this.commands.schedule({ actor: 'scheduler' });
      await this.work();
    });
  }

  /** A device leaves (a GPU falls off the bus, a MIG layout is redone), or all come back. */
  private async changeInventory(): Promise<void> {
    const full = simInventory(this.opts);
    if (this.db.inventory.length < full.length) {
      this.db.configure(full);
      this.log('inventory: every device is back');
    } else {
      const gone = this.rng.pick(full)!;
      this.db.configure(full.filter((d) => d.id !== gone.id));
      this.log(`inventory: ${gone.id} left`);
    }
    if (this.svc) {
      await this.guard(async () => {
        await this.noticeLostDevices();
        await this.commands.schedule({ actor: 'scheduler' });
        await this.work();
      });
    }
  }

  private lastAccounts: ReadonlyMap<string, Account> = new Map();

  /** Users' standing as the service computes it (accountsFrom over the tasks, on the simulated clock). */
  private accounts() {
    return accountsFrom(runsOf(this.db.tasks.values()), this.opts.limits ?? [], this.clock, DEFAULT_FAIR_SHARE_HALF_LIFE_MS);
  }

  /** As the service after configuring its devices: stop our tasks on devices that left. */
  private async noticeLostDevices(): Promise<void> {
    if (this.opts.ignoreLostDevices) return;
    const present = new Set(this.db.inventory.map((d) => d.id));
    const ours = [...this.db.tasks.values()].filter((t) => t.runnerId === RUNNER);
    for (const { taskId, command } of decideLostDevices(present, ours)) {
      this.log(`task ${taskId}: ${command.message}`);
      await this.command(taskId, command, 'inventory');
    }
  }

  /** Let simulated time pass: trainers progress and end; the service notices. */
  private async advance(ms: number): Promise<void> {
    const until = this.clock + ms;
    // Walk through every trainer event in time order, so the service sees them as they happen.
    for (;;) {
      const next = this.nextProcEvent(until);
      if (next === null) break;
      this.clock = Math.max(this.clock, next);
      this.fireProcs();
      await this.work();
      if (!this.svc) break;
    }
    this.clock = Math.max(this.clock, until);
    this.fireProcs();
    await this.work();
  }

  private nextProcEvent(until: number): number | null {
    let best: number | null = null;
    const consider = (t: number | null) => {
      if (t !== null && t > this.clock && t <= until && (best === null || t < best)) best = t;
    };
    for (const p of this.procs.values()) {
      if (!p.alive) continue;
      consider(p.trainingAt);
      consider(p.endAt);
      if (p.termAt !== null && !p.ignoreSigterm) consider(p.termAt + 50);
      consider(p.checkpointAt);
    }
    if (this.svc) {
      for (const [id, run] of this.svc.runs) {
        consider(run.killAt);
        consider(run.preemptAt);
        const dl = this.db.tasks.get(id)?.deadlineAt;
        if (dl) consider(Date.parse(dl));
      }
    }
    return best;
  }

  private fireProcs(): void {
    for (const p of this.procs.values()) {
      if (!p.alive) continue;
      if (p.termAt !== null && !p.ignoreSigterm && this.clock >= p.termAt + 50) this.exitProc(p, { code: 143, signal: null });
      else if (this.clock >= p.endAt) this.exitProc(p, p.outcome);
    }
  }

  /** A planted bug for the specs: a trainer for `taskId` that no runner started and that never ends on its own. */
  plantTrainer(taskId: string): number {
    const pid = this.nextPid++;
    const runDir = `/runs/${taskId}/planted`;
    this.procs.set(pid, {
      pid,
      startTime: String(this.clock * 10 + pid),
      taskId,
      runDir,
      alive: true,
      trainingAt: this.clock,
      endAt: Infinity,
      outcome: { code: 0, signal: null },
      ignoreSigterm: true,
      termAt: null,
      checkpoints: false,
      startStep: 0,
      checkpointAt: null,
      lastLines: [],
    });
    return pid;
  }

  private exitProc(p: Proc, how: { code: number | null; signal: string | null }): void {
    p.alive = false;
    this.files.set(p.runDir, { ...this.files.get(p.runDir), exit: how });
    this.log(`trainer ${p.pid} of ${p.taskId} exited ${JSON.stringify(how)}`);
  }

  // -------------------------------------------------------------------------------------------
  // The runner: every decision is the domain's run decider (decideRun), as in
  // services/server/src/runner.ts; what is here carries its decisions out on the simulated
  // process table, run folders and store (the IO stand-ins), and notices what the real runner's
  // timers and file tailer notice.

  private onCommit(events: StoredTaskEvent[]): void {
    if (!this.svc) return;
    for (const e of events) {
      if (e.type === 'TaskAssigned' && e.data.runnerId === RUNNER) this.svc.toLaunch.push(e.streamId);
      if (e.type === 'StopRequested') this.svc.toStop.push(e.streamId);
    }
  }

  /** Everything the service does in reaction, until nothing is left to do now. */
  private async work(): Promise<void> {
    for (let guard = 0; this.svc && guard < 1000; guard++) {
      const svc = this.svc;
      const launchId = svc.toLaunch.shift();
      if (launchId) {
        const t = this.db.tasks.get(launchId)!;
        if (isActive(t.status) && !svc.runs.has(t.id)) await this.settle(t);
        continue;
      }
      const stopId = svc.toStop.shift();
      if (stopId) {
        await this.stop(stopId);
        continue;
      }
      if (!(await this.followRuns())) return;
    }
  }

  /** Take charge of an active task: look at its run folder until the decider launches, follows or fails it. */
  private async settle(task: TaskRecord): Promise<void> {
    const svc = this.svc!;
    const run: Run = { state: startRun(task, `/runs/${task.id}/${task.attempt}`), killAt: null, preemptAt: null, phaseRead: false };
    svc.runs.set(task.id, run);
    for (let current = task; ;) {
      const files = this.files.get(run.state.runDir) ?? {};
      const proc = current.trainer ? this.procs.get(current.trainer.pid) : undefined;
      const facts: RunFacts = {
        trainerFile: current.trainer ? null : (files.trainer ?? null),
        exitFile: files.exit ?? null,
        trainerAlive: !!proc && proc.alive && proc.startTime === current.trainer!.startTime,
      };
      const next = await this.observe(task.id, run, { type: 'recovery', task: current, facts });
      if (next.launch) {
        await this.launch(current, run);
        break;
      }
      if (next.awaitShepherd) throw new Error('awaitShepherd: the simulation does not model a slow shepherd'); // shepherds start instantly here
      if (!next.recover) break;
      current = next.recover;
    }
    if (task.stop) await this.stop(task.id);
  }

  /** The shepherd starts the trainer (or cannot); the decider is told. */
  private async launch(task: TaskRecord, run: Run): Promise<void> {
    const sim = task.spec.config.simulate ?? {};
    if (sim.failAtStep === -1) {
      this.files.set(run.state.runDir, { exit: { code: null, signal: null, error: 'spawn failed: ENOENT' } });
      await this.observe(task.id, run, { type: 'launchFailed', message: 'spawn failed: ENOENT' });
      return;
    }
    const pid = this.nextPid++;
    // As the launcher does (TRAINYARD_RESUME_FROM): the next attempt starts from its checkpoint.
    const startStep = this.opts.forgetCheckpoints ? 0 : (task.checkpoint?.step ?? 0);
    if (task.checkpoint && startStep < task.checkpoint.step)
      this.violation(
        'resume',
        `${task.id} attempt ${task.attempt} starts from step ${startStep}, its checkpoint is at step ${task.checkpoint.step}`,
      );
    const p: Proc = {
      pid,
      startTime: String(this.clock * 10 + pid),
      taskId: task.id,
      runDir: run.state.runDir,
      alive: true,
      trainingAt: this.clock + (sim.startupMs ?? 0),
      endAt: this.clock + (sim.startupMs ?? 0) + Math.max(1, (sim.steps ?? 1000) - startStep),
      outcome: { code: sim.crashSignal ? null : (sim.exitCode ?? 0), signal: sim.crashSignal ?? null },
      ignoreSigterm: sim.ignoreSigterm ?? false,
      termAt: null,
      checkpoints: (task.spec.config.simulate?.checkpointEvery ?? 0) > 0 || pid % 3 !== 0,
      startStep,
      checkpointAt: null,
      lastLines: this.rng.pick([...LAST_OUTPUTS]) ?? [],
    };
    this.procs.set(pid, p);
    this.files.set(run.state.runDir, { trainer: { pid, startTime: p.startTime } });
    this.log(`spawned trainer ${pid} for ${task.id}`);
    if (this.svc!.crashAfterSpawn) {
      this.svc!.crashAfterSpawn = false;
      throw new ServiceCrashAfterSpawn();
    }
    await this.observe(task.id, run, { type: 'launched', pid, startTime: p.startTime });
  }

  private async stop(taskId: string): Promise<void> {
    const run = this.svc?.runs.get(taskId);
    if (run) await this.observe(taskId, run, { type: 'stop', reason: this.db.tasks.get(taskId)?.stop?.reason });
  }

  /** One pass over followed runs: what the tailer, the exit watch and the timers notice; true when it did something. */
  private async followRuns(): Promise<boolean> {
    const svc = this.svc!;
    for (const [id, run] of [...svc.runs]) {
      const task = this.db.tasks.get(id)!;
      const p = run.state.pid !== null ? this.procs.get(run.state.pid) : undefined;
      if (!p) continue; // launching
      if (p.alive && !run.phaseRead && this.clock >= p.trainingAt) {
        // The trainer prints its training phase (read again after each re-attach).
        run.phaseRead = true;
        const message = { type: 'phase', phase: 'training' } as const;
        await this.observe(id, run, {
          type: 'line',
          line: { seq: 0, stream: 'stdout', line: JSON.stringify(message), t: this.clock },
          message,
        });
        return true;
      }
      if (p.alive && p.checkpointAt !== null && this.clock >= p.checkpointAt) {
        p.checkpointAt = null;
        const step = Math.max(p.startStep, Math.min(p.startStep + (this.clock - p.trainingAt), p.startStep + (p.endAt - p.trainingAt)));
        const message = { type: 'checkpoint', path: `/out/${id}/checkpoints/step-${step}`, step } as const;
        await this.observe(id, run, {
          type: 'line',
          line: { seq: 1, stream: 'stdout', line: JSON.stringify(message), t: this.clock },
          message,
        });
        return true;
      }
      if (p.alive && run.preemptAt !== null && this.clock >= run.preemptAt) {
        run.preemptAt = null;
        await this.observe(id, run, { type: 'preemptGraceOver' });
        return true;
      }
      if (p.alive && run.killAt !== null && this.clock >= run.killAt) {
        run.killAt = null;
        await this.observe(id, run, { type: 'graceOver', graceMs: GRACE_MS });
        return true;
      }
      if (p.alive && task.deadlineAt && !task.stop && this.clock >= Date.parse(task.deadlineAt)) {
        await this.observe(id, run, { type: 'deadline' });
        return true;
      }
      if (!p.alive) {
        const exit = this.files.get(run.state.runDir)?.exit;
        const at = new Date(this.clock).toISOString();
        const lines: LogLine[] = exit ? p.lastLines.map((line, i) => ({ seq: i + 1, stream: 'stdout', line, at })) : [];
        await this.observe(id, run, exit ? { type: 'exited', exit } : { type: 'vanished' }, lines);
        return true;
      }
    }
    return false;
  }

  /** The run decider (or a planted bug). */
  private decider(...[run, obs, options]: Parameters<typeof decideRun>): ReturnType<typeof decideRun> {
    if (this.opts.exitLostWithRefusedLines && obs.type === 'refused') return { run, commands: [], effects: [] };
    return (this.opts.runDecider ?? decideRun)(run, obs, options);
  }

  /**
   * Decide (decideRun) and carry the decision out, as runner.ts does: the run's new state, the
   * commands (each result observed back), then the effects. `lines`: the output not stored yet,
   * for a command that takes it. Returns what the caller continues with.
   */
  private async observe(taskId: string, run: Run, obs: RunObservation, lines: LogLine[] = []): Promise<Next> {
    const d = this.decider(run.state, obs, this.opts.recovery ? { decideRecovery: this.opts.recovery } : {});
    if (d.run.phase === 'ended') run.killAt = null;
    run.state = d.run;
    const next: Next = {};
    for (const c of d.commands) {
      let command = c.command;
      if (c.quoteLastLines && command.type === 'fail')
        command = { ...command, message: withLastOutput(command.message, this.lastStoredLines(taskId, c.quoteLastLines)) };
      const appended = await this.append(taskId, command, c.actor, c.withLines ? lines : []);
      const after: RunObservation =
        'refused' in appended
          ? { type: 'refused', command: { ...c, command }, reason: appended.refused }
          : { type: 'committed', command: command.type, task: appended.task };
      Object.assign(next, await this.observe(taskId, run, after));
    }
    for (const e of d.effects) {
      switch (e.kind) {
        case 'release':
          if (this.svc?.runs.get(taskId) === run) this.svc.runs.delete(taskId);
          break;
        case 'signal': {
          const p = run.state.pid !== null ? this.procs.get(run.state.pid) : undefined;
          this.log(`${e.signal} ${run.state.pid} (${taskId})`);
          if (e.signal === 'SIGTERM' && p) p.termAt = this.clock;
          // A trainer that checkpoints writes one and says so a little later; one that does not ignores it.
          if (e.signal === 'SIGUSR1' && p?.alive && p.checkpoints) p.checkpointAt = this.clock + 100;
          if (e.signal === 'SIGKILL' && p?.alive) this.exitProc(p, { code: null, signal: 'SIGKILL' });
          break;
        }
        case 'armKill':
          run.killAt = this.clock + GRACE_MS;
          break;
        case 'armPreempt':
          run.preemptAt = this.clock + PREEMPT_GRACE_MS;
          break;
        case 'recover':
          next.recover = e.task;
          break;
        case 'launch':
          next.launch = true;
          break;
        case 'awaitShepherd':
          next.awaitShepherd = true;
          break;
        case 'follow': // followRuns reads every followed run
        case 'storeLine': // the simulated trainer's output is its last lines, stored with its exit
        case 'removeDatasetCopy':
          break;
        case 'log':
          this.log(e.message);
          break;
        default: {
          const unhandled: never = e;
          throw new Error(`unhandled run effect ${JSON.stringify(unhandled)}`);
        }
      }
    }
    return next;
  }

  private lastStoredLines(taskId: string, n: number): string[] {
    return [...(this.db.logs.get(taskId) ?? new Map<number, string>()).entries()]
      .sort((a, b) => a[0] - b[0])
      .slice(-n)
      .map(([, line]) => line);
  }

  /** A user's command (or one without output lines). */
  private async command(taskId: string, command: TaskCommand, actor: string): Promise<TaskRecord | null> {
    const r = await this.append(taskId, command, actor, []);
    return 'refused' in r ? null : r.task;
  }

  /**
   * As runner.ts: `logLines` go with the command; if that fails, they are stored apart, and when
   * they may be what failed the run decider is told (`refused`).
   */
  private async append(
    taskId: string,
    command: TaskCommand,
    actor: string,
    logLines: LogLine[],
  ): Promise<{ task: TaskRecord | null } | { refused: string }> {
    try {
      return { task: (await this.commands.execute(taskId, command, { actor }, { logLines })).task };
    } catch (err) {
      if (err instanceof SimulatedCrash) throw err;
      if (logLines.length) {
        await this.storeLines(taskId, logLines);
        if (linesMayHaveFailed(err)) return { refused: (err as Error).message };
      }
      if (err instanceof IllegalCommandError) return { task: this.db.tasks.get(taskId) ?? null };
      throw err;
    }
  }

  /** Lines on their own: together, else one by one (a refused line costs only itself). */
  private async storeLines(taskId: string, lines: LogLine[]): Promise<void> {
    const store = (batch: LogLine[]) => this.db.transaction(async (repo) => repo.appendLogLines(taskId, batch));
    try {
      return await store(lines);
    } catch (err) {
      if (err instanceof SimulatedCrash) throw err;
    }
    for (const line of lines) {
      await store([line]).catch((err: unknown) => {
        if (err instanceof SimulatedCrash) throw err;
        this.log(`line ${line.seq} of ${taskId} refused`);
      });
    }
  }

  /** At the end: no more chaos; the service runs until every task has ended. */
  private async drain(): Promise<void> {
    this.db.crashAtWrite = null;
    // The devices come back: a request that fits the host only whole must be able to finish.
    if (this.db.inventory.length < simInventory(this.opts).length) {
      this.db.configure(simInventory(this.opts));
      if (this.svc) await this.guard(() => this.commands.schedule({ actor: 'scheduler' }).then(() => this.work()));
    }
    for (let i = 0; i < 400; i++) {
      if (!this.svc) await this.restart();
      if (this.svc) this.svc.crashAfterSpawn = false;
      const open = [...this.db.tasks.values()].some((t) => !isTerminal(t.status));
      const running = [...this.procs.values()].some((p) => p.alive);
      if (!open && !running) break;
      await this.guard(() => this.advance(5000));
      this.check();
    }
    this.checkEnd();
  }

  /** The invariants that hold only once the chaos has stopped and everything has ended. */
  checkEnd(): void {
    // Tasks on devices first: one stuck there is the cause of those stuck in the queue behind it.
    const open = [...this.db.tasks.values()].filter((t) => !isTerminal(t.status));
    for (const t of [...open.filter((x) => x.devices.length), ...open.filter((x) => !x.devices.length)])
      this.violation('stuck', `task ${t.id} stuck in ${t.status}`);
    for (const p of this.procs.values())
      if (p.alive) this.violation('trainer-at-end', `trainer ${p.pid} of ${p.taskId} still running at the end`);
    // Stored output is text the database takes: NUL and lone surrogates became U+FFFD.
    for (const [id, lines] of this.db.logs)
      for (const [seq, line] of lines)
        if (UNSAFE_TEXT.test(line)) this.violation('unsafe-text', `line ${seq} of ${id} stored with NUL or a lone surrogate`);
    const rebuilt = rebuildReadModels(this.db.events);
    if (JSON.stringify([...rebuilt.tasks.entries()].sort()) !== JSON.stringify([...this.db.tasks.entries()].sort()))
      this.violation('rebuild-tasks', 'read models differ from a full rebuild of the log');
    if (JSON.stringify(rebuilt.deviceHolders) !== JSON.stringify(this.db.holders))
      this.violation('rebuild-holders', 'device holders differ from a full rebuild of the log');
  }

  // -------------------------------------------------------------------------------------------
  // Invariants

  check(): void {
    const db = this.db;
    // 5, 2, 3: fold the newly committed events into the shadow, checking order and FIFO.
    const fresh = db.events.slice(this.checkedEvents);
    this.checkedEvents = db.events.length;
    const touched = new Set<string>();
    for (const e of fresh) {
      const before = this.shadow.get(e.streamId) ?? initialState();
      if (e.version !== before.version + 1)
        this.violation('stream-version', `stream ${e.streamId}: version ${e.version} after ${before.version}`);
      if (e.type === 'TaskAssigned') this.checkPlacement(e, before);
      try {
        this.shadow.set(e.streamId, evolve(before, e));
      } catch (err) {
        this.violation('log-not-foldable', `log not foldable: ${(err as Error).message}`);
      }
      touched.add(e.streamId);
    }
    // 4: the read models equal the fold of the log.
    for (const id of touched) {
      const s = this.shadow.get(id);
      if (s && JSON.stringify(toRecord(s)) !== JSON.stringify(db.tasks.get(id)))
        this.violation('read-model', `read model of ${id} differs from the log`);
    }
    // 1: holders are running tasks on the devices they record; no device over its memory or an
    // exclusive holder beside another; gangs whole; trainers run only for holders.
    const holderIds = new Set<string>();
    const byDevice = new Map<string, DeviceHolderRow[]>();
    for (const h of db.holders) {
      const t = db.tasks.get(h.taskId);
      if (!t || !t.devices.some((g) => g.deviceId === h.deviceId) || !isActive(t.status))
        this.violation('device-holder', `${h.deviceId} held by ${h.taskId} (${t?.status})`);
      holderIds.add(h.taskId);
      byDevice.set(h.deviceId, [...(byDevice.get(h.deviceId) ?? []), h]);
    }
    for (const d of db.devicesWithHolders()) {
      const hs = byDevice.get(d.id) ?? [];
      const used = hs.reduce((n, h) => n + h.memoryMb, 0);
      if (used > d.memoryMb) this.violation('device-overcommit', `${d.id}: ${used} MB held of ${d.memoryMb}`);
      if (hs.length > 1 && hs.some((h) => h.exclusive))
        this.violation('device-overcommit', `${d.id}: exclusive holder beside others (${hs.map((h) => h.taskId).join(', ')})`);
    }
    for (const t of db.tasks.values()) {
      for (const g of t.devices)
        if (!db.holders.some((h) => h.deviceId === g.deviceId && h.taskId === t.id))
          this.violation('phantom-device', `${t.id} thinks it holds ${g.deviceId}`);
      if (t.devices.length && t.devices.length !== t.spec.resources.gpus)
        this.violation('partial-gang', `${t.id} asked for ${t.spec.resources.gpus} GPUs and holds ${t.devices.length}`);
    }
    const liveByTask = new Map<string, number>();
    for (const p of this.procs.values()) {
      if (!p.alive) continue;
      liveByTask.set(p.taskId, (liveByTask.get(p.taskId) ?? 0) + 1);
      if (!holderIds.has(p.taskId))
        this.violation('orphan-trainer', `trainer ${p.pid} runs for ${p.taskId} (${db.tasks.get(p.taskId)?.status}) which holds no device`);
    }
    for (const [id, n] of liveByTask) if (n > 1) this.violation('double-trainer', `${n} trainers run for ${id}`);
    // 1: a task on a device that left the inventory is stopped by the service that runs it.
    if (this.svc) {
      const present = new Set(db.inventory.map((d) => d.id));
      for (const t of db.tasks.values())
        if (isActive(t.status) && !t.stop && t.runnerId === RUNNER && t.devices.some((g) => !present.has(g.deviceId)))
          this.violation(
            'lost-device',
            `${t.id} runs on ${t.devices.map((g) => g.deviceId).join('+')}, which left the inventory, and was not stopped`,
          );
    }
    // 1: no user over their quota of devices at once.
    for (const l of this.opts.limits ?? []) {
      if (l.maxGpus === null) continue;
      const held = db.holders.filter((h) => db.tasks.get(h.taskId)?.spec.owner === l.name).length;
      if (held > l.maxGpus) this.violation('quota', `${l.name} holds ${held} devices with a quota of ${l.maxGpus}`);
    }
    this.checkIsolation();
    // 6: no stall: with the service up, nothing the policy would start waits in the queue.
    if (this.svc) {
      const queue = fifoOrder([...db.tasks.values()].filter((t) => t.status === 'QUEUED')).map(queuedView);
      if (queue.length) {
        const devices = toDeviceViews(db.devicesWithHolders(), new Map());
        // With the users' standing the last pass used: a task that ended since changes the
        // fair-share order only for the next pass (the service's timer makes one within a second).
        const could = backfillPolicy.schedule({
          devices,
          queue,
          now: this.clock,
          releaseGraceMs: GRACE_MS,
          accounts: this.lastAccounts,
        }).assignments;
        if (could.length) this.violation('stall', `stall: ${could.map((a) => a.taskId).join(', ')} could start and wait`);
      }
    }
  }

  private isolationCheckedAt = -1;

  /**
   * Isolation: alice and bob each read every task id as the service's getTask does, and the queue
   * as queue.get shows it to them (the same visibility code, on the same policy's reasons); nothing
   * of the other's tasks comes back: no record, and no id in any reason or reservation.
   */
  private checkIsolation(): void {
    // What a user reads changes only with the log (a later clock moves the times in reasons, never the ids).
    if (this.db.events.length === this.isolationCheckedAt) return;
    this.isolationCheckedAt = this.db.events.length;
    const vis = this.opts.visibility ?? { visibleTask, queueFor };
    const tasks = [...this.db.tasks.values()];
    const queued = fifoOrder(tasks.filter((t) => t.status === 'QUEUED'));
    const devices = toDeviceViews(this.db.devicesWithHolders(), new Map());
    // (With nothing queued there are no reasons to read: the policy is not asked.)
    const decision = queued.length
      ? backfillPolicy.schedule({
          devices,
          queue: queued.map(queuedView),
          now: this.clock,
          releaseGraceMs: GRACE_MS,
          accounts: this.lastAccounts,
        })
      : { waiting: new Map<string, WaitReason>(), reservation: null };
    const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());
    const shape = {
      devices: devices.map((d) => ({
        id: d.id,
        holders: d.holders.map((h) => ({
          taskId: h.taskId,
          memoryGb: h.memoryMb / 1024,
          exclusive: h.exclusive,
          endsBy: iso(h.endsBy),
          task: this.db.tasks.get(h.taskId) ?? null,
        })),
      })),
      queued: queued.map((task, i) => ({
        position: i + 1,
        task,
        reason: decision.waiting.get(task.id) ?? { code: 'STARTING' as const, message: '', reservedStart: null },
      })),
      reservation: decision.reservation ? { ...decision.reservation, startAt: iso(decision.reservation.startAt)! } : null,
    };
    for (const user of ['alice', 'bob']) {
      const viewer = { user, admin: false };
      const foreign = tasks.filter((t) => t.spec.owner !== user);
      for (const t of foreign)
        if (vis.visibleTask(viewer, this.db.tasks.get(t.id)))
          return this.violation('isolation', `${user} read task ${t.id} of ${t.spec.owner} by its id`);
      const seen = vis.queueFor(viewer, shape);
      const records = [...seen.devices.flatMap((d) => d.holders.map((h) => h.task)), ...seen.queued.map((q) => q.task)];
      const leaked = records.find((r) => r !== null && r.spec.owner !== user);
      if (leaked) return this.violation('isolation', `${user} read task ${leaked.id} of ${leaked.spec.owner} in the queue`);
      const words = [
        ...seen.devices.flatMap((d) => d.holders.map((h) => h.taskId)),
        ...seen.queued.map((q) => q.reason.message),
        seen.reservation?.taskId ?? '',
      ].join(' ');
      // Task ids here are t<n>: every one the words name, looked up among the other user's.
      const foreignIds = new Map(foreign.map((t) => [t.id, t]));
      const named = (words.match(/\bt\d+\b/g) ?? []).map((id) => foreignIds.get(id)).find((t) => t !== undefined);
      if (named) return this.violation('isolation', `${user} read the id of task ${named.id} of ${named.spec.owner} in the queue`);
    }
  }

  /**
   * 2: FIFO, except a backfill that cannot delay the blocked head. A task that starts while one
   * queued before it waits must say in its grounds that it passed it (the policy found the earlier
   * one could not start), and a backfilled task on a device reserved for the head must end by the
   * reserved start.
   */
  private checkPlacement(e: StoredTaskEvent, before: TaskState): void {
    if (e.type !== 'TaskAssigned') return;
    // The tasks the policy must have looked at first: a higher priority (anyone's), or the same
    // priority, the same user and queued earlier. Other users' at the same priority may follow
    // by fair share.
    const me = before.snapshot.context.spec;
    const myPriority = me.priority?.value ?? 0;
    const mine = statusOf(before) === 'QUEUED' ? BigInt(before.snapshot.context.queuedPosition!) : null;
    const earlier = [...this.shadow.entries()].filter(([id, s]) => {
      if (id === e.streamId || statusOf(s) !== 'QUEUED') return false;
      const other = s.snapshot.context.spec;
      const p = other.priority?.value ?? 0;
      if (p !== myPriority) return p > myPriority;
      return other.owner === me.owner && (mine === null || BigInt(s.snapshot.context.queuedPosition!) < mine);
    });
    const grounds = e.data.grounds;
    if (earlier.length && (!grounds || grounds.ahead < earlier.length))
      this.violation(
        'fifo',
        `FIFO: ${e.streamId} started before ${earlier.map(([id]) => id).join(',')} (grounds: ${grounds?.ahead ?? 'none'} ahead)`,
      );
    const res = grounds?.reservation;
    if (grounds?.backfilled && res) {
      const endsBy = Date.parse(e.recordedAt) + before.snapshot.context.spec.timeoutMs + GRACE_MS;
      const shared = !e.data.devices.some((g) => g.exclusive);
      const onReserved = e.data.devices.filter((g) => res.deviceIds.includes(g.deviceId));
      if (onReserved.length && endsBy > res.startAt && !shared)
        this.violation(
          'backfill-delays-head',
          `${e.streamId} backfilled on ${onReserved.map((g) => g.deviceId).join(', ')} reserved for ${res.taskId} and may run past the reserved start`,
        );
    }
  }
}

/** The simulated host's devices: whole 80 GB GPUs, and a GPU in MIG mode when asked. */
export function simInventory(opts: Pick<SimOptions, 'slots' | 'mig'>): Device[] {
  const whole = uniformInventory(opts.slots, 81_920, 'A100 80GB');
  if (!opts.mig) return whole;
  const i = opts.slots;
  const inst = (n: number, profile: string, memoryMb: number): Device => ({
    id: migDeviceId(i, n),
    gpuIndex: i,
    uuid: `MIG-sim-${i}-${n}`,
    name: 'A100 80GB',
    memoryMb,
    migProfile: profile,
  });
  return [...whole, inst(0, '3g.40gb', 40_960), inst(1, '1g.10gb', 10_240), inst(2, '1g.10gb', 10_240)];
}

class ServiceCrashAfterSpawn extends Error {}

export async function simulate(opts: SimOptions): Promise<SimResult> {
  return new World(opts).run();
}

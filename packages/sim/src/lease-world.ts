// A deterministic simulation of several instances on one database (issue 13, "Instances that do
// not come back"): the real TaskCommands (each instance's own, with its runner id, and the fence
// on every command a runner appends), the domain's lease rules (decideLeases, decideAbandon), its
// recovery decision (decideRecovery) and the leftover-trainer decision (decideLeftovers), over the
// in-memory repository, a simulated clock, a lease table with the store's semantics (sql/leases.ts:
// claim, renew with a broken stretch after a gap, a take-over that re-checks the term) and a
// process table whose trainers outlive their instance. A seeded PRNG submits tasks and stalls,
// wakes, crashes and restarts instances; after every step the invariant is checked:
//
//   two-instances: no task is run by two instances at once, i.e. never do two instances that are
//   awake (up and not stalled) each have a live trainer of one task that they have not begun to
//   stop. A stalled or dead instance's trainer may outlive it (nobody can stop it from outside);
//   the instance must stop it as soon as it runs again.
import {
  decideAbandon,
  decideLeases,
  decideLeftovers,
  decideRecovery,
  DEFAULT_RESOURCES,
  heartbeatEveryMs,
  IllegalCommandError,
  isActive,
  leaseGapMs,
  uniformInventory,
  type LeaseView,
  type TaskCommand,
  type TaskRecord,
  type TaskSpec,
} from '@trainyard/domain';
import { TaskCommands } from '@trainyard/store';
import { MemoryDb } from './memory-repo';
import { Prng } from './prng';
import { SIM_TRAINING_CONFIG } from './world';

const T0 = Date.parse('2026-01-01T00:00:00.000Z');
/** The lease term every instance is configured with (TRAINYARD_LEASE_MS). */
export const SIM_LEASE_MS = 6000;
const TICK_MS = 250;

export type LeaseInvariant = 'two-instances' | 'unexpected-error';

export interface LeaseViolation {
  invariant: LeaseInvariant;
  step: number;
  message: string;
}

export interface LeaseSimOptions {
  seed: number;
  steps: number;
  slots: number;
  /** Instance names (default A, B, C). */
  instances?: string[];
  /** Planted bugs: an instance that judges its peers with a shorter term than theirs (a misconfiguration)… */
  shortTermJudge?: string;
  /** …and the leftover decision replaced (one that stops nothing). */
  decideLeftovers?: typeof decideLeftovers;
  trace?: boolean;
}

export interface LeaseSimResult {
  seed: number;
  steps: number;
  tasks: number;
  takeovers: number;
  leftoversStopped: number;
  disowned: number;
  violations: LeaseViolation[];
  trace: string[];
}

interface Proc {
  pid: number;
  startTime: string;
  taskId: string;
  attempt: number;
  instance: string;
  alive: boolean;
  endAt: number;
  exited: boolean;
}

interface Instance {
  id: string;
  up: boolean;
  stalled: boolean;
  commands: TaskCommands;
  /** Runs it is in charge of: task id → its trainer's pid. */
  runs: Map<string, number>;
  /** Trainers it has begun to stop (SIGTERM sent; gone at the next tick). */
  stopping: Set<number>;
  lastBeat: number;
}

interface LeaseRow {
  heartbeatAt: number;
  unbrokenSince: number;
  takenBy: string | null;
}

export class LeaseWorld {
  clock = T0;
  readonly rng: Prng;
  readonly db: MemoryDb;
  readonly instances = new Map<string, Instance>();
  private readonly leases = new Map<string, LeaseRow>();
  private readonly procs = new Map<number, Proc>();
  private nextPid = 100;
  private nextTask = 1;
  readonly result: LeaseSimResult;

  constructor(readonly opts: LeaseSimOptions) {
    this.rng = new Prng(opts.seed);
    this.db = new MemoryDb(uniformInventory(opts.slots, 81_920, 'A100 80GB'), () => this.clock);
    for (const id of opts.instances ?? ['A', 'B', 'C']) {
      const commands = new TaskCommands(this.db.transaction, { runnerId: id, maxAttempts: 1, now: () => this.clock });
      this.instances.set(id, { id, up: false, stalled: false, commands, runs: new Map(), stopping: new Set(), lastBeat: 0 });
    }
    this.result = { seed: opts.seed, steps: 0, tasks: 0, takeovers: 0, leftoversStopped: 0, disowned: 0, violations: [], trace: [] };
  }

  private log(line: string): void {
    if (this.opts.trace) this.result.trace.push(`[${this.clock - T0}ms] ${line}`);
  }

  private violation(invariant: LeaseInvariant, message: string): void {
    if (this.result.violations.length < 20) this.result.violations.push({ invariant, step: this.result.steps, message });
  }

  async run(): Promise<LeaseSimResult> {
    for (const inst of this.instances.values()) await this.start(inst);
    for (let i = 0; i < this.opts.steps && this.result.violations.length === 0; i++) {
      this.result.steps++;
      try {
        await this.step();
      } catch (err) {
        this.violation('unexpected-error', `unexpected error: ${(err as Error).stack ?? err}`);
      }
      this.check();
    }
    return this.result;
  }

  private awake = (i: Instance) => i.up && !i.stalled;

  private async step(): Promise<void> {
    const all = [...this.instances.values()];
    const awake = all.filter(this.awake);
    const action = this.rng.weighted({
      submit: awake.length ? 30 : 0,
      advance: 40,
      stall: awake.length > 1 ? 3 : 0,
      wake: all.some((i) => i.up && i.stalled) ? 6 : 0,
      crash: awake.length > 1 ? 3 : 0,
      restart: all.some((i) => !i.up) ? 6 : 0,
    });
    switch (action) {
      case 'submit': {
        const inst = this.rng.pick(awake)!;
        const id = `t${this.nextTask++}`;
        const r = await inst.commands.submit(id, this.spec(id), { actor: 'user' });
        this.result.tasks++;
        this.log(`${inst.id}: submit ${id} -> ${r.task.status}`);
        for (const t of r.started) this.launch(this.instances.get(t.runnerId!)!, t);
        return;
      }
      case 'advance':
        return this.advance(this.rng.int(TICK_MS, 4 * SIM_LEASE_MS));
      case 'stall': {
        const inst = this.rng.pick(awake)!;
        inst.stalled = true;
        this.log(`${inst.id}: stalled (SIGSTOP)`);
        return;
      }
      case 'wake': {
        const inst = this.rng.pick(all.filter((i) => i.up && i.stalled))!;
        inst.stalled = false;
        this.log(`${inst.id}: woken (SIGCONT)`);
        // Its timers fire at once: the heartbeat first (a refused command would find out the same),
        // then the exits its trainers wrote meanwhile.
        await this.beat(inst);
        for (const [taskId, pid] of [...inst.runs]) {
          const p = this.procs.get(pid);
          if (p?.exited && this.db.tasks.get(taskId)) await this.exited(inst, p);
        }
        return this.flush();
      }
      case 'crash': {
        const inst = this.rng.pick(awake)!;
        inst.up = false;
        inst.runs.clear();
        inst.stopping.clear();
        this.log(`${inst.id}: SIGKILLed (its trainers live on)`);
        return;
      }
      case 'restart': {
        const inst = this.rng.pick(all.filter((i) => !i.up))!;
        return this.start(inst);
      }
    }
  }

  private spec(id: string): TaskSpec {
    return {
      name: id,
      model: 'm-0.5B',
      datasetPath: '/d.jsonl',
      outputDir: id,
      timeoutMs: 6 * 3_600_000,
      resources: { ...DEFAULT_RESOURCES },
      owner: 'sim',
      idempotencyKey: id,
      config: { ...SIM_TRAINING_CONFIG, simulate: { steps: this.rng.int(2 * SIM_LEASE_MS, 12 * SIM_LEASE_MS) } },
    };
  }

  // -------------------------------------------------------------------------------------------
  // One instance: start-up (claim, leftovers, recovery), heartbeat, runs

  /** Start-up as the service's: claim the lease (give back what was taken), stop leftover trainers, recover. */
  private async start(inst: Instance): Promise<void> {
    inst.up = true;
    inst.stalled = false;
    const row = this.leases.get(inst.id);
    const takenBy = row?.takenBy ?? null;
    this.leases.set(inst.id, { heartbeatAt: this.clock, unbrokenSince: this.clock, takenBy: null });
    inst.lastBeat = this.clock;
    this.log(`${inst.id}: start${takenBy ? ` (its lease was taken by ${takenBy})` : ''}`);
    if (takenBy) await this.giveBackOwn(inst, takenBy);
    // Trainers its previous process left running for runs it no longer holds.
    const runs = [...this.procs.values()]
      .filter((p) => p.instance === inst.id && !p.exited)
      .map((p) => ({ taskId: p.taskId, attempt: p.attempt, trainer: { pid: p.pid, startTime: p.startTime }, trainerAlive: p.alive }));
    const decide = this.opts.decideLeftovers ?? decideLeftovers;
    for (const k of decide(inst.id, runs, this.db.tasks)) {
      this.log(`${inst.id}: ${k.message}`);
      this.result.leftoversStopped++;
      inst.stopping.add(k.pid);
    }
    // Recovery: the active tasks it holds.
    for (const t of [...this.db.tasks.values()].filter((x) => isActive(x.status) && x.runnerId === inst.id)) await this.recover(inst, t);
    for (const t of await inst.commands.schedule({ actor: 'scheduler' })) this.launch(this.instances.get(t.runnerId!)!, t);
  }

  private async recover(inst: Instance, task: TaskRecord): Promise<void> {
    const proc = [...this.procs.values()].find((p) => p.taskId === task.id && p.attempt === task.attempt && p.instance === inst.id);
    const action = decideRecovery(task, {
      trainerFile: proc ? { pid: proc.pid, startTime: proc.startTime } : null,
      exitFile: proc?.exited ? { code: 0, signal: null } : null,
      trainerAlive: !!proc?.alive,
    });
    switch (action.kind) {
      case 'launch':
        return this.launch(inst, task);
      case 'recordSpawn':
      case 'follow':
        inst.runs.set(task.id, proc!.pid);
        if (action.kind === 'recordSpawn') await this.runCommand(inst, task, { type: 'recordSpawn', ...spawnOf(proc!) });
        return;
      case 'settle':
        inst.runs.set(task.id, proc!.pid);
        return this.exited(inst, proc!);
      default:
        await this.runCommand(inst, task, { type: 'fail', reason: 'lost', message: 'lost' });
    }
  }

  /** Start a trainer for the task's current attempt, and record it (fenced). */
  private launch(inst: Instance, task: TaskRecord): void {
    const pid = this.nextPid++;
    const p: Proc = {
      pid,
      startTime: String(this.clock * 10 + pid),
      taskId: task.id,
      attempt: task.attempt,
      instance: inst.id,
      alive: true,
      exited: false,
      endAt: this.clock + (task.spec.config.simulate?.steps ?? SIM_LEASE_MS),
    };
    this.procs.set(pid, p);
    inst.runs.set(task.id, pid);
    this.log(`${inst.id}: launch ${task.id} attempt ${task.attempt} (pid ${pid})`);
    this.pending.push(async () => {
      await this.runCommand(inst, task, { type: 'recordSpawn', ...spawnOf(p) });
      await this.runCommand(inst, task, { type: 'startTraining' });
    });
  }

  private pending: (() => Promise<void>)[] = [];

  /** A runner's command, fenced by its instance and attempt; refused: the run is not ours any more. */
  private async runCommand(inst: Instance, task: TaskRecord, command: TaskCommand): Promise<void> {
    if (!this.awake(inst) || !inst.runs.has(task.id)) return;
    try {
      const r = await inst.commands.execute(
        task.id,
        command,
        { actor: 'runner' },
        { holder: { runnerId: inst.id, attempt: task.attempt } },
      );
      for (const t of r.started) this.launch(this.instances.get(t.runnerId!)!, t);
    } catch (err) {
      if (!(err instanceof IllegalCommandError)) throw err;
      if (/no longer holds it/.test(err.message)) this.disown(inst, task.id, err.message);
    }
  }

  private disown(inst: Instance, taskId: string, why: string): void {
    const pid = inst.runs.get(taskId);
    inst.runs.delete(taskId);
    if (pid === undefined) return;
    this.result.disowned++;
    this.log(`${inst.id}: ${why}: stopping pid ${pid}`);
    inst.stopping.add(pid);
  }

  /** Its trainer ended: record the exit (fenced). */
  private async exited(inst: Instance, p: Proc): Promise<void> {
    const task = this.db.tasks.get(p.taskId);
    if (!task || inst.runs.get(p.taskId) !== p.pid) return;
    await this.runCommand(inst, { ...task, attempt: p.attempt }, { type: 'recordExit', exitCode: 0, signal: null });
    inst.runs.delete(p.taskId);
  }

  /** The heartbeat (lease.ts's beat): renew; if taken, stop everything and give back; else judge the peers. */
  private async beat(inst: Instance): Promise<void> {
    inst.lastBeat = this.clock;
    const row = this.leases.get(inst.id);
    if (!row) return;
    if (row.takenBy) {
      this.log(`${inst.id}: its lease was taken by ${row.takenBy}: stopping its trainers`);
      for (const id of [...inst.runs.keys()]) this.disown(inst, id, `lease taken over by ${row.takenBy}`);
      await this.giveBackOwn(inst, row.takenBy);
      this.leases.set(inst.id, { heartbeatAt: this.clock, unbrokenSince: this.clock, takenBy: null });
      return;
    }
    if (this.clock - row.heartbeatAt > leaseGapMs(SIM_LEASE_MS)) row.unbrokenSince = this.clock;
    row.heartbeatAt = this.clock;
    const term = this.opts.shortTermJudge === inst.id ? SIM_LEASE_MS / 12 : SIM_LEASE_MS;
    const views = [...this.leases].map(([runnerId, l]) => this.view(runnerId, l));
    const decision = decideLeases(inst.id, this.view(inst.id, row), views, term);
    for (const id of decision.takeOver) {
      const l = this.leases.get(id)!;
      // The store's statement re-checks the rule, with the term the taker was configured with.
      if (l.takenBy === null && this.clock - l.heartbeatAt > term) {
        l.takenBy = inst.id;
        this.result.takeovers++;
        this.log(`${inst.id}: took over the lease of ${id}`);
      }
    }
    for (const id of decision.abandon) {
      const l = this.leases.get(id)!;
      if (l.takenBy === null) continue;
      const active = [...this.db.tasks.values()].filter((t) => isActive(t.status));
      await this.abandon(inst, decideAbandon(this.view(id, l), active, term, true));
    }
  }

  private view(runnerId: string, l: LeaseRow): LeaseView {
    return { runnerId, ageMs: this.clock - l.heartbeatAt, unbrokenMs: this.clock - l.unbrokenSince, takenBy: l.takenBy };
  }

  private async giveBackOwn(inst: Instance, takenBy: string): Promise<void> {
    const own: LeaseView = { runnerId: inst.id, ageMs: SIM_LEASE_MS, unbrokenMs: 0, takenBy };
    const active = [...this.db.tasks.values()].filter((t) => isActive(t.status));
    await this.abandon(inst, decideAbandon(own, active, SIM_LEASE_MS, true));
  }

  private async abandon(inst: Instance, commands: ReturnType<typeof decideAbandon>): Promise<void> {
    for (const { taskId, command } of commands) {
      try {
        const r = await inst.commands.execute(taskId, command, { actor: 'lease' });
        this.log(`${inst.id}: took back ${taskId} from ${command.runnerId} (${r.task.status})`);
        for (const t of r.started) this.launch(this.instances.get(t.runnerId!)!, t);
      } catch (err) {
        if (!(err instanceof IllegalCommandError)) throw err;
      }
    }
  }

  /** Let time pass in ticks: trainers end or die of their SIGTERM, awake instances beat and record exits. */
  private async advance(ms: number): Promise<void> {
    const until = this.clock + ms;
    while (this.clock < until) {
      this.clock = Math.min(until, this.clock + TICK_MS);
      for (const inst of this.instances.values()) {
        if (!this.awake(inst)) continue;
        // A trainer sent SIGTERM is gone by the next tick; the kill timers of a stalled instance wait.
        for (const pid of inst.stopping) {
          const p = this.procs.get(pid);
          if (p?.alive) {
            p.alive = false;
            p.exited = true;
          }
        }
        inst.stopping.clear();
      }
      for (const p of this.procs.values()) {
        if (!p.alive || this.clock < p.endAt) continue;
        p.alive = false;
        p.exited = true;
        const inst = this.instances.get(p.instance)!;
        if (this.awake(inst)) await this.exited(inst, p);
      }
      await this.flush();
      for (const inst of this.instances.values())
        if (this.awake(inst) && this.clock - inst.lastBeat >= heartbeatEveryMs(SIM_LEASE_MS)) await this.beat(inst);
      await this.flush();
      this.check();
      if (this.result.violations.length) return;
    }
  }

  private async flush(): Promise<void> {
    while (this.pending.length) await this.pending.shift()!();
  }

  // -------------------------------------------------------------------------------------------

  /** two-instances: no task has live, unstopped trainers of two awake instances. */
  check(): void {
    const byTask = new Map<string, Set<string>>();
    for (const p of this.procs.values()) {
      const inst = this.instances.get(p.instance)!;
      if (!p.alive || !this.awake(inst) || inst.stopping.has(p.pid)) continue;
      const set = byTask.get(p.taskId) ?? new Set<string>();
      set.add(p.instance);
      byTask.set(p.taskId, set);
    }
    for (const [taskId, set] of byTask)
      if (set.size > 1) {
        const t = this.db.tasks.get(taskId);
        this.violation(
          'two-instances',
          `task ${taskId} is run by ${[...set].sort().join(' and ')} at once (it is attempt ${t?.attempt} on ${t?.runnerId ?? 'no instance'})`,
        );
      }
  }
}

function spawnOf(p: Proc) {
  return { pid: p.pid, startTime: p.startTime, runDir: `/runs/${p.instance}/${p.taskId}/attempt-${p.attempt}` };
}

export async function simulateLeases(opts: LeaseSimOptions): Promise<LeaseSimResult> {
  return new LeaseWorld(opts).run();
}

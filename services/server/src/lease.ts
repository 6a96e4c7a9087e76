// This instance's lease (see packages/domain/src/leases.ts): claimed at start-up, renewed by a
// heartbeat several times a term. After each renewal it takes over the leases of instances that
// stopped renewing theirs, and puts their tasks back (the domain decides, the store's statement
// re-checks the rule by the database's clock). When its own heartbeat finds its lease taken (it
// was away, stalled or cut off for a whole term), its tasks are others' now: it stops its
// trainers, gives back what it still holds, and claims its lease afresh.
import { decideAbandon, decideLeases, heartbeatEveryMs, leaseGapMs, type LeaseView } from '@trainyard/domain';
import { claimLease, listActive, listLeases, renewLease, takeOverLease, type TaskStore } from '@trainyard/store';
import type { ServiceConfig } from './config';
import { stopLeftoverTrainers } from './leftovers';
import type { Runner, RunnerLog } from './runner';
import { errorText } from './log';

export class LeaseKeeper {
  private timer: NodeJS.Timeout | null = null;
  private beating = false;
  private lastProblem: string | null = null;

  constructor(
    private readonly store: TaskStore,
    private readonly runner: Runner,
    private readonly config: Pick<ServiceConfig, 'runnerId' | 'leaseMs' | 'requeueLost' | 'runsDir' | 'killGraceMs'>,
    private readonly log: RunnerLog,
  ) {}

  /**
   * Claim the lease (before recovery). If a peer took it over while this instance was away, the
   * tasks it still holds go back to the queue first: they were declared lost, and may be running
   * elsewhere already. Then the trainers the previous process left running for runs this
   * instance no longer holds (taken over, requeued, ended) are stopped (leftovers.ts).
   */
  async claim(): Promise<void> {
    const { takenBy } = await claimLease(this.store.db, this.config.runnerId);
    if (takenBy) {
      this.log.warn(`this instance's lease was taken over by ${takenBy} while it was away; giving back the tasks it still held`);
      await this.giveBackOwn(takenBy);
    }
    await stopLeftoverTrainers({ db: this.store.db, ...this.config, log: this.log });
  }

  start(): void {
    this.timer = setInterval(() => void this.beat(), heartbeatEveryMs(this.config.leaseMs));
    this.timer.unref();
  }

  /** One heartbeat, then the peers' leases. Errors (the database away) wait for the next beat. */
  async beat(): Promise<void> {
    if (this.beating) return;
    this.beating = true;
    try {
      const r = await renewLease(this.store.db, this.config.runnerId, leaseGapMs(this.config.leaseMs));
      if (r.state === 'taken') {
        this.log.warn(`this instance's lease was taken over by ${r.takenBy} (its heartbeat was late); stopping its trainers`);
        this.runner.disown(null, `lease taken over by ${r.takenBy}`);
        await this.giveBackOwn(r.takenBy);
        await claimLease(this.store.db, this.config.runnerId);
      } else if (r.state === 'missing') {
        await claimLease(this.store.db, this.config.runnerId);
      } else {
        await this.judgePeers(r.lease);
      }
      if (this.lastProblem) this.log.info('the lease heartbeat works again');
      this.lastProblem = null;
    } catch (err) {
      const msg = (err as Error).message;
      if (msg !== this.lastProblem) this.log.warn(`lease heartbeat failed (nobody is expired while it fails): ${msg}`);
      this.lastProblem = msg;
    } finally {
      this.beating = false;
    }
  }

  private async judgePeers(own: LeaseView): Promise<void> {
    const { leaseMs, runnerId } = this.config;
    const leases = await listLeases(this.store.db);
    const decision = decideLeases(runnerId, own, leases, leaseMs);
    if (!decision.abandon.length) return;
    for (const id of decision.takeOver) {
      if (await takeOverLease(this.store.db, id, runnerId, leaseMs, leaseGapMs(leaseMs)))
        this.log.warn(`took over the lease of instance ${id}: not renewed for over ${leaseMs} ms; its tasks go back to the queue`);
    }
    // Only leases the database now shows taken (by this pass or an earlier one) lose their tasks.
    const taken = (await listLeases(this.store.db)).filter((l) => decision.abandon.includes(l.runnerId) && l.takenBy !== null);
    if (!taken.length) return;
    const active = await listActive(this.store.db);
    for (const lost of taken) await this.abandon(decideAbandon(lost, active, leaseMs, this.config.requeueLost));
  }

  /** This instance's own remaining tasks, after its lease was taken over by `takenBy`. */
  private async giveBackOwn(takenBy: string): Promise<void> {
    const own: LeaseView = { runnerId: this.config.runnerId, ageMs: this.config.leaseMs, unbrokenMs: 0, takenBy };
    await this.abandon(decideAbandon(own, await listActive(this.store.db), this.config.leaseMs, this.config.requeueLost));
  }

  private async abandon(commands: ReturnType<typeof decideAbandon>): Promise<void> {
    for (const { taskId, command } of commands) {
      try {
        const r = await this.store.execute(taskId, command, { actor: 'lease' });
        this.log.warn(`task ${taskId}: ${command.message} (${r.task.status})`);
        for (const t of r.started) this.runner.observe(t);
      } catch (err) {
        // Another instance got there first (or the task ended meanwhile): nothing to do.
        this.log.info(`task ${taskId}: not taken back: ${errorText(err)}`);
      }
    }
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
  }
}

// The standby pool: one shepherd started ahead of need and handed the next run (see
// StandbyShepherd), so a launch skips Node's start-up. Replaced in the background after each
// launch; when none is ready (first launch, it died), the launcher spawns a fresh shepherd.
//
// With warm trainers on (TRAINYARD_WARM_TRAINER_IDLE_MS > 0), the standby also holds a trainer
// started ahead of need in standby (imported, no GPU touched) while tasks are queued, so the next
// task skips the trainer's own start-up (seconds of `import torch`). Whether to keep, start or
// retire one is the domain's decision (decideWarmTrainer); this carries it out.
import { decideWarmTrainer, type WarmTrainerFacts } from '@trainyard/domain/warm-trainer';
import { StandbyShepherd } from '../trainer/standby';
import type { WarmSpec } from '../trainer/warm.mjs';

/** How often a warm trainer's standby is looked at again (the queue may have emptied; it may have waited too long). */
const WARM_REVIEW_MS = 5_000;

/** A change of the queue is looked at this much later, once for a burst of them. */
const NUDGE_MS = 100;

export interface WarmTrainerOptions {
  /** How long a warm trainer may wait; 0: none are started. */
  idleLimitMs: number;
  /** What a launch would run now (argv, folder, environment less the task's variables). */
  spec: () => WarmSpec;
  /** Tasks queued now. */
  queued: () => Promise<number>;
  info: (msg: string) => void;
}

export class StandbyPool {
  private standby: StandbyShepherd | null = null;
  private starting = false;
  private lastError: string | null = null;
  private closed = false;
  private idleRetiredSinceLaunch = false;
  private nudgeTimer: NodeJS.Timeout | null = null;
  private warmSince = 0;
  private queued = 0;
  /** Warm trainers of a command (its key) that died before they were ready, in a row. */
  private readonly neverReady = new Map<string, number>();
  private reviewTimer: NodeJS.Timeout | null = null;
  private reviewAgain = false;

  constructor(
    private readonly runsDir: string,
    private readonly warn: (msg: string) => void,
    private readonly warmOptions: WarmTrainerOptions | null = null,
  ) {}

  /** The standby shepherd, if one is ready, for one launch (whoever calls it owns it). */
  take(): StandbyShepherd | null {
    this.idleRetiredSinceLaunch = false;
    const standby = this.standby;
    this.standby = null;
    if (standby?.ready) return standby;
    standby?.dispose();
    return null;
  }

  /** After a launch (and at start-up): have the standby this moment wants, in the background. */
  ensure(): void {
    if (this.closed) return;
    if (!this.warmOptions || this.warmOptions.idleLimitMs <= 0) return this.carryOut({ action: 'start', warm: false });
    this.countAndReview();
  }

  /**
   * The queue may have changed (a task queued, cancelled or held): look again, soon and once for
   * a burst. Only while no warm trainer is held: one that is held is looked at every
   * WARM_REVIEW_MS anyway, so a busy queue costs no count per submission.
   */
  nudge(): void {
    if (this.closed || !this.warmOptions || this.warmOptions.idleLimitMs <= 0 || this.nudgeTimer) return;
    const s = this.standby;
    if (s && !s.gone && s.warm && s.warmTrainer !== 'died') return;
    this.nudgeTimer = setTimeout(() => {
      this.nudgeTimer = null;
      this.countAndReview();
    }, NUDGE_MS);
    this.nudgeTimer.unref();
  }

  private countAndReview(): void {
    this.warmOptions!.queued().then(
      (n) => {
        this.queued = n;
        this.review();
      },
      () => this.review(), // the queue as last counted
    );
  }

  /** The facts the domain decides on. */
  facts(now = Date.now()): WarmTrainerFacts {
    const o = this.warmOptions!;
    const command = commandKey(o.spec());
    const s = this.standby && !this.standby.gone ? this.standby : null;
    return {
      idleLimitMs: o.idleLimitMs,
      queued: this.queued,
      command,
      neverReady: this.neverReady.get(command) ?? 0,
      idleRetiredSinceLaunch: this.idleRetiredSinceLaunch,
      standby:
        s === null
          ? null
          : s.warm === null
            ? { warm: null }
            : { warm: { command: commandKey(s.warm), state: s.warmTrainer ?? 'died', waitedMs: now - this.warmSince } },
    };
  }

  private review(): void {
    if (this.closed || !this.warmOptions) return;
    if (this.starting) {
      this.reviewAgain = true;
      return;
    }
    const facts = this.facts();
    const decision = decideWarmTrainer(facts);
    if (decision.action === 'replace' && this.standby?.warm && this.standby.warmTrainer !== 'died') {
      this.warmOptions.info(`warm trainer retired (${decision.reason})`);
      if (decision.reason === 'idle') this.idleRetiredSinceLaunch = true;
    }
    this.carryOut(decision);
  }

  private carryOut(decision: ReturnType<typeof decideWarmTrainer>): void {
    if (decision.action === 'keep') return;
    if (decision.action === 'start' && (this.starting || this.standby?.ready)) return;
    this.standby?.dispose();
    this.standby = null;
    this.clearReviewTimer();
    this.starting = true;
    const spec = decision.warm ? this.warmOptions!.spec() : null;
    StandbyShepherd.start(this.runsDir, spec).then(
      (standby) => {
        this.starting = false;
        if (this.closed) return standby.dispose();
        this.standby = standby;
        this.lastError = null;
        if (spec) this.watchWarm(standby, commandKey(spec));
        if (this.reviewAgain) {
          this.reviewAgain = false;
          this.review();
        }
      },
      (err: unknown) => {
        this.starting = false;
        // Launches fall back to a fresh shepherd; say so once per distinct problem.
        const msg = (err as Error).message;
        if (msg !== this.lastError) this.warn(`could not start a standby shepherd: ${msg}`);
        this.lastError = msg;
      },
    );
  }

  private watchWarm(standby: StandbyShepherd, command: string): void {
    this.warmSince = Date.now();
    standby.onWarmChange((state) => {
      if (state === 'ready') this.neverReady.delete(command);
      else if (standby.warmNeverReady) {
        const n = (this.neverReady.get(command) ?? 0) + 1;
        this.neverReady.set(command, n);
        if (n === 2)
          this.warn(
            `warm trainers of ${JSON.stringify(standby.warm!.argv)} died ${n} times before they were ready (does the trainer support standby? see trainers/README.md); not starting more`,
          );
      }
    });
    this.reviewTimer = setInterval(
      () => {
        if (this.standby !== standby || standby.warmTrainer === 'died') return this.clearReviewTimer();
        this.countAndReview();
      },
      Math.min(WARM_REVIEW_MS, Math.max(50, this.warmOptions!.idleLimitMs)),
    );
    this.reviewTimer.unref();
  }

  private clearReviewTimer(): void {
    if (this.reviewTimer) clearInterval(this.reviewTimer);
    this.reviewTimer = null;
  }

  /** The standby now (for specs and the bench): its shepherd and its warm trainer's state. */
  get current(): StandbyShepherd | null {
    return this.standby;
  }

  close(): void {
    this.closed = true;
    this.clearReviewTimer();
    if (this.nudgeTimer) clearTimeout(this.nudgeTimer);
    this.standby?.dispose();
    this.standby = null;
  }
}

/** One key for a trainer command: argv, folder and environment. */
function commandKey(spec: WarmSpec): string {
  return JSON.stringify([spec.argv, spec.cwd, Object.entries(spec.env).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))]);
}

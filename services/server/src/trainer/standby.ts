// The standby shepherd: one started ahead of need, so that Node's start-up does not sit between
// one trainer's exit and the next one's start (see shepherd.mjs).
import { spawn, type ChildProcess } from 'node:child_process';
import { readProcessStartTime } from './proc-stat.mjs';
import { STANDBY_FLAG } from './run-files.mjs';
import { SHEPHERD_PATH } from './shepherd-path';
import { WARM_FLAG, type WarmSpec } from './warm.mjs';

/** A warm standby's trainer: starting (importing), ready (waiting for its assignment), died while waiting. */
export type WarmTrainerState = 'starting' | 'ready' | 'died';

/**
 * A shepherd started ahead of need (`shepherd.mjs --standby`), waiting for a run folder on its
 * stdin. Started detached like any shepherd (own session, so it outlives us once handed a run),
 * stdout/stderr ignored, stdin a pipe from us; the child and the pipe are unref'ed so a standby
 * never keeps this process alive. When this process exits or dies, the pipe closes and an
 * unused standby exits at once (see shepherd.mjs), so standbys are never left behind.
 */
export class StandbyShepherd {
  readonly pid: number;
  /** /proc start time, recorded in shepherd.json: a pid alone is not an identity. */
  readonly startTime: string;
  /** The trainer it started ahead of need (a warm standby), and how that trainer is doing. */
  readonly warm: WarmSpec | null;
  private warmState: WarmTrainerState | null;
  /** Whether its warm trainer died before it was ever ready (a trainer that does not do standby, or a broken one). */
  private diedBeforeReady = false;
  private used = false;
  private listeners: Array<(state: WarmTrainerState) => void> = [];

  private constructor(
    private readonly child: ChildProcess,
    warm: WarmSpec | null,
  ) {
    this.pid = child.pid!;
    this.startTime = readProcessStartTime(this.pid) ?? '';
    this.warm = warm;
    this.warmState = warm ? 'starting' : null;
  }

  /**
   * Starts one; `cwd` is where it waits (the runs folder, so /proc tells whose it is). With
   * `warm`, the shepherd also starts that trainer at once in standby (see shepherd.mjs, warm.mjs)
   * and reports `ready` or `died` on its stdout until it is handed a run.
   */
  static async start(cwd: string, warm: WarmSpec | null = null): Promise<StandbyShepherd> {
    const child = spawn(process.execPath, warm ? [SHEPHERD_PATH, STANDBY_FLAG, WARM_FLAG] : [SHEPHERD_PATH, STANDBY_FLAG], {
      cwd,
      detached: true,
      stdio: ['pipe', warm ? 'pipe' : 'ignore', 'ignore'],
    });
    await new Promise<void>((resolve, reject) => {
      child.once('spawn', () => resolve());
      child.once('error', reject);
    });
    child.unref();
    // A write to a standby that died is an EPIPE here; the runner learns of it from `gone`.
    child.stdin!.on('error', () => {});
    (child.stdin as unknown as { unref?: () => void }).unref?.();
    if (child.pid === undefined) throw new Error('StandbyShepherd: no pid');
    const standby = new StandbyShepherd(child, warm);
    if (warm) {
      // One write, before anything else: the warm trainer's argv, cwd and environment.
      child.stdin!.write(`${JSON.stringify(warm)}\n`);
      let buffered = '';
      child.stdout!.setEncoding('utf8');
      child.stdout!.on('data', (chunk: string) => {
        buffered += chunk;
        for (let nl = buffered.indexOf('\n'); nl >= 0; nl = buffered.indexOf('\n')) {
          const word = buffered.slice(0, nl).trim();
          buffered = buffered.slice(nl + 1);
          if (word === 'ready' || word === 'died') standby.warmChanged(word);
        }
      });
      child.stdout!.on('error', () => {});
      (child.stdout as unknown as { unref?: () => void }).unref?.();
    }
    child.once('exit', () => {
      if (standby.warmState === 'starting' || standby.warmState === 'ready') standby.warmChanged('died');
    });
    return standby;
  }

  /** Its warm trainer's state (null: a plain standby). */
  get warmTrainer(): WarmTrainerState | null {
    return this.warmState;
  }

  /** Its warm trainer died before it was ever ready. */
  get warmNeverReady(): boolean {
    return this.diedBeforeReady;
  }

  /** Called on each change of the warm trainer's state (until it is handed a run). */
  onWarmChange(listener: (state: WarmTrainerState) => void): void {
    this.listeners.push(listener);
  }

  private warmChanged(state: WarmTrainerState): void {
    if (this.warmState === null || this.warmState === 'died' || this.warmState === state) return;
    if (state === 'died' && this.warmState === 'starting') this.diedBeforeReady = true;
    this.warmState = state;
    if (this.used) return;
    for (const l of this.listeners) l(state);
  }

  /** The process has ended (it is our child: we see its exit). */
  get gone(): boolean {
    return this.child.exitCode !== null || this.child.signalCode !== null;
  }

  /** Not yet handed a run, and still there to take one (identity known). */
  get ready(): boolean {
    return !this.used && !this.gone && this.startTime !== '';
  }

  /**
   * Hands it the run folder. Call only once shepherd.json naming it and launch.json are in
   * place: from this write on, the standby may start the trainer at any moment.
   */
  handOver(runDir: string): void {
    if (this.used) throw new Error('StandbyShepherd: already handed a run');
    this.used = true;
    // One short write: all or nothing, even if we die right after. A standby that gets EOF
    // without a complete line does nothing.
    this.child.stdin!.end(`${runDir}\n`);
  }

  /** An unused standby: close its stdin, so it exits; one handed a run is left alone. */
  dispose(): void {
    if (this.used) return;
    this.used = true;
    this.child.stdin!.destroy();
  }
}

// The standby shepherd: one started ahead of need, so that Node's start-up does not sit between
// one trainer's exit and the next one's start (see shepherd.mjs).
import { spawn, type ChildProcess } from 'node:child_process';
import { readProcessStartTime } from './proc-stat.mjs';
import { STANDBY_FLAG } from './run-files.mjs';
import { SHEPHERD_PATH } from './shepherd-path';

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
  private used = false;

  private constructor(private readonly child: ChildProcess) {
    this.pid = child.pid!;
    this.startTime = readProcessStartTime(this.pid) ?? '';
  }

  /** Starts one; `cwd` is where it waits (the runs folder, so /proc tells whose it is). */
  static async start(cwd: string): Promise<StandbyShepherd> {
    const child = spawn(process.execPath, [SHEPHERD_PATH, STANDBY_FLAG], {
      cwd,
      detached: true,
      stdio: ['pipe', 'ignore', 'ignore'],
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
    return new StandbyShepherd(child);
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

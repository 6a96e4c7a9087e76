// A launch's folders made ahead of need and renamed into place at the next launch. A launch needs
// new folders (the task's, its attempt's, the dataset copy's, the output's) between one trainer's
// exit and the next one's start, and on some filesystems making a folder costs far more than
// renaming one (the development VM's disk: `npm run bench -- --only launch-folders`, in
// docs/BENCHMARKS.md; on tmpfs both take microseconds); on a network filesystem each mkdir is a
// round trip to its server. So one spare waits in the runs folder, named
// `.spare-<runner>-<uuid>` (folders whose names start with a dot are no task's: leftovers.ts skips
// them), with the folders a first launch wants: the run folder with its own inside, and the task's
// output folder (renamed into the outputs folder, on the same filesystem in the usual layout,
// <data>/runs and <data>/outputs).
import { randomUUID } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { chmod, mkdir, rm, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { PRIVATE_DIR_MODE } from '../trainer/run-files.mjs';

/** The spare's attempt folder, renamed to the run folder's own name when it is taken. */
const NEXT = 'next';
/** The spare's output folder, renamed to the task's output folder when it is taken. */
const OUTPUT = 'output';

export class SpareRunFolder {
  private readyPath: string | null = null;
  /** The spare being made (its path), if one is. */
  private making: string | null = null;
  private closed = false;
  private readonly prefix: string;
  /** Whether spares carry an output folder (not once one could not be moved into the outputs folder). */
  private withOutput = true;
  /** The mode of an output folder made at launch (see makeOutput). */
  private outputMode = 0o755;

  /**
   * @param runsDir the runs folder (`<runs>/<task>/<attempt>` are the run folders)
   * @param inner folders a launch makes inside its run folder (made in the spare too)
   */
  constructor(
    private readonly runsDir: string,
    runnerId: string,
    private readonly inner: readonly string[],
    private readonly warn: (msg: string) => void,
  ) {
    this.prefix = `.spare-${runnerId.replace(/[^A-Za-z0-9_-]/g, '_')}-`;
  }

  /** Whether a spare is made and waits for a launch. */
  get ready(): boolean {
    return this.readyPath !== null;
  }

  /** Start-up: spares an earlier process of this instance left behind go, and a fresh one is made. */
  start(): void {
    let names: string[] = [];
    try {
      names = readdirSync(this.runsDir).filter((n) => n.startsWith(this.prefix));
    } catch {
      // no runs folder yet
    }
    for (const n of names) {
      const path = join(this.runsDir, n);
      if (path !== this.readyPath && path !== this.making) rmSync(path, { recursive: true, force: true });
    }
    this.replenish();
  }

  /**
   * Puts the spare's folders in place for a launch: its run folder (`<runs>/<task>/<attempt>`,
   * with the folders inside it) and its output folder, each where it is not there yet. Says which
   * it put; for the others (none ready, a folder already there or elsewhere, a rename that failed)
   * the caller makes its folders itself, as without a spare.
   */
  claim(runDir: string, outputDir: string): { runDir: boolean; outputDir: boolean } {
    const took = { runDir: false, outputDir: false };
    const spare = this.readyPath;
    if (!spare) return took;
    this.readyPath = null;
    const output = join(spare, OUTPUT);
    if (this.withOutput && !existsSync(outputDir)) {
      try {
        mkdirSync(dirname(outputDir), { recursive: true });
        renameSync(output, outputDir);
        chmodSync(outputDir, this.outputMode);
        took.outputDir = true;
      } catch (err) {
        // The outputs on another filesystem than the runs (a rename cannot cross it): each launch makes its output folder, as without a spare.
        if ((err as NodeJS.ErrnoException).code === 'EXDEV') this.withOutput = false;
        this.warn(`the spare output folder could not be moved to ${outputDir} (${(err as Error).message}); making it instead`);
      }
    }
    const taskDir = dirname(runDir);
    try {
      if (dirname(taskDir) === this.runsDir && !existsSync(runDir)) {
        const attempt = join(spare, basename(runDir));
        renameSync(join(spare, NEXT), attempt);
        if (!existsSync(taskDir)) {
          if (!took.outputDir) rmSync(output, { recursive: true, force: true });
          renameSync(spare, taskDir);
          took.runDir = true;
          return took;
        }
        // A later attempt of a task whose folder exists: only the attempt's folder moves.
        renameSync(attempt, runDir);
        took.runDir = true;
      }
    } catch (err) {
      this.warn(`the spare run folder ${spare} could not be used (${(err as Error).message}); making the run folder instead`);
    }
    discard(spare);
    return took;
  }

  /** Makes the next spare, off the event loop (after a launch, off the path from one trainer's exit to the next one's start). */
  replenish(): void {
    if (this.closed || this.readyPath || this.making) return;
    const spare = join(this.runsDir, `${this.prefix}${randomUUID()}`);
    this.making = spare;
    const deepest = this.inner.length ? this.inner.map((d) => join(spare, NEXT, d)) : [join(spare, NEXT)];
    Promise.all(deepest.map((d) => mkdir(d, { recursive: true, mode: PRIVATE_DIR_MODE })))
      .then(() => (this.withOutput ? this.makeOutput(join(spare, OUTPUT)) : undefined))
      .then(
        () => {
          this.making = null;
          if (this.closed) return discard(spare);
          this.readyPath = spare;
        },
        (err: Error) => {
          this.making = null;
          // Launches make their folders themselves; the next launch tries again.
          this.warn(`could not make a spare run folder: ${err.message}`);
          discard(spare);
        },
      );
  }

  /**
   * The spare's output folder: private while it waits among the run folders (everything there
   * is), given at launch the mode an output folder made then gets (the umask's, read off it here).
   */
  private async makeOutput(path: string): Promise<void> {
    await mkdir(path);
    this.outputMode = (await stat(path)).mode & 0o7777;
    await chmod(path, PRIVATE_DIR_MODE);
  }

  /** Shutdown: the spare goes (a stopped service leaves no folder of its own behind). */
  close(): void {
    this.closed = true;
    if (this.readyPath) rmSync(this.readyPath, { recursive: true, force: true });
    this.readyPath = null;
  }
}

/** Removes a spare in the background; one that cannot be removed is swept at the next start. */
function discard(path: string): void {
  rm(path, { recursive: true, force: true }).catch(() => {});
}

// The standby pool: one shepherd started ahead of need and handed the next run (see
// StandbyShepherd), so a launch skips Node's start-up. Replaced in the background after each
// launch; when none is ready (first launch, it died), the launcher spawns a fresh shepherd.
import { StandbyShepherd } from '../trainer/standby';

export class StandbyPool {
  private standby: StandbyShepherd | null = null;
  private starting = false;
  private lastError: string | null = null;
  private closed = false;

  constructor(
    private readonly runsDir: string,
    private readonly warn: (msg: string) => void,
  ) {}

  /** The standby shepherd, if one is ready, for one launch (whoever calls it owns it). */
  take(): StandbyShepherd | null {
    const standby = this.standby;
    this.standby = null;
    if (standby?.ready) return standby;
    standby?.dispose();
    return null;
  }

  /** Start a standby shepherd in the background unless one is ready or starting. */
  ensure(): void {
    if (this.closed || this.starting || this.standby?.ready) return;
    this.standby?.dispose();
    this.standby = null;
    this.starting = true;
    StandbyShepherd.start(this.runsDir).then(
      (standby) => {
        this.starting = false;
        if (this.closed) return standby.dispose();
        this.standby = standby;
        this.lastError = null;
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

  close(): void {
    this.closed = true;
    this.standby?.dispose();
    this.standby = null;
  }
}

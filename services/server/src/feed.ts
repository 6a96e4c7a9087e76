// One tail of the event log per process. Local commits wake it at once; a poll timer picks up
// what other instances on the same database wrote. Consumers get every committed event once,
// in the log's safe tail order (see readCommittedAfter), and a `changed` signal for
// subscribers that read from their own cursor.
import { EventEmitter } from 'node:events';
import { readCommittedAfter, tailHead, type Conn, type TailCursor } from '@trainyard/store';
import type { StoredTaskEvent } from '@trainyard/domain';

export class EventFeed {
  private cursor: TailCursor | null = null;
  private timer: NodeJS.Timeout | null = null;
  private running = false;
  private again = false;
  private closed = false;
  /** Subscribers waiting in waitForChange: only they need a local commit read at once. */
  private waiters = 0;
  private readonly emitter = new EventEmitter();
  /** Last error talking to the database, cleared on the next good read. */
  lastError: Error | null = null;

  constructor(
    private readonly db: Conn,
    private readonly pollMs: number,
  ) {
    this.emitter.setMaxListeners(0);
  }

  async start(): Promise<void> {
    this.cursor = await tailHead(this.db);
    this.schedule();
  }

  onEvents(fn: (events: StoredTaskEvent[]) => void): () => void {
    this.emitter.on('events', fn);
    return () => this.emitter.off('events', fn);
  }

  /** Resolves at the next batch of events, or after `maxWaitMs`, or when aborted. */
  waitForChange(signal: AbortSignal | undefined, maxWaitMs = this.pollMs * 4): Promise<void> {
    this.waiters++;
    return new Promise((resolve) => {
      let waiting = true;
      const done = () => {
        if (!waiting) return;
        waiting = false;
        this.waiters--;
        clearTimeout(t);
        this.emitter.off('events', done);
        signal?.removeEventListener('abort', done);
        resolve();
      };
      const t = setTimeout(done, maxWaitMs);
      this.emitter.once('events', done);
      signal?.addEventListener('abort', done, { once: true });
    });
  }

  /**
   * Something was committed here: read now instead of waiting for the poll, if a subscriber is
   * waiting for it. Without one, the poll delivers it (the runner gets local commits directly),
   * which spares a read of the log after every submission of a burst.
   */
  poke(): void {
    if (this.closed || this.waiters === 0) return;
    if (this.running) {
      this.again = true;
      return;
    }
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    void this.read();
  }

  private schedule(): void {
    if (this.closed) return;
    this.timer = setTimeout(() => void this.read(), this.pollMs);
  }

  private async read(): Promise<void> {
    if (this.closed || !this.cursor) return;
    this.running = true;
    this.timer = null;
    try {
      for (;;) {
        this.again = false;
        const { events, cursor } = await readCommittedAfter(this.db, this.cursor, 500);
        this.lastError = null;
        this.cursor = cursor;
        if (events.length) this.emitter.emit('events', events);
        if (events.length < 500 && !this.again) break;
      }
    } catch (err) {
      this.lastError = err as Error;
    } finally {
      this.running = false;
      this.schedule();
    }
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.emitter.emit('events', []);
    this.emitter.removeAllListeners();
  }
}

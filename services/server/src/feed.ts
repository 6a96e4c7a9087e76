// One tail of the event log per process. Local commits wake it at once; a poll timer picks up
// what other instances on the same database wrote. Consumers get every committed event once,
// in the log's safe tail order (see readCommittedAfter), with the tail cursor after each event,
// so a consumer that joins part-way (a resumed subscription, see live.ts) can tell what it has
// already read for itself.
import { EventEmitter } from 'node:events';
import { readCommittedAfter, tailHead, type Conn, type TailCursor } from '@trainyard/store';
import type { StoredTaskEvent } from '@trainyard/domain';

const PAGE = 500;

export type FeedListener = (events: StoredTaskEvent[], cursors: TailCursor[]) => void;

export class EventFeed {
  private tail: TailCursor | null = null;
  private timer: NodeJS.Timeout | null = null;
  private running = false;
  private again = false;
  private closed = false;
  /** Consumers that want a local commit read at once (live subscriptions); see poke(). */
  private prompt = 0;
  private readonly emitter = new EventEmitter();
  /** Last error talking to the database, cleared on the next good read. */
  lastError: Error | null = null;
  /** Reads of the log (for /metrics: the one tail every subscriber shares). */
  reads = 0;
  /** Batches of events delivered to consumers. */
  batches = 0;

  constructor(
    private readonly db: Conn,
    private readonly pollMs: number,
  ) {
    this.emitter.setMaxListeners(0);
  }

  async start(): Promise<void> {
    this.tail = await tailHead(this.db);
    this.schedule();
  }

  /** Where the feed stands: every event up to here was delivered; later ones will be. */
  get cursor(): TailCursor {
    if (!this.tail) throw new Error('the event feed has not started');
    return this.tail;
  }

  onEvents(fn: FeedListener): () => void {
    this.emitter.on('events', fn);
    return () => this.emitter.off('events', fn);
  }

  /**
   * While the returned function is not called, local commits are read at once (poke) instead
   * of at the next poll: someone is watching live.
   */
  wantPromptReads(): () => void {
    this.prompt++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.prompt--;
    };
  }

  /**
   * Something was committed here: read now instead of waiting for the poll, if a live
   * subscriber wants it. Without one, the poll delivers it (the runner gets local commits
   * directly), which spares a read of the log after every submission of a burst.
   */
  poke(): void {
    if (this.closed || this.prompt === 0) return;
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
    if (this.closed || !this.tail) return;
    this.running = true;
    this.timer = null;
    try {
      for (;;) {
        this.again = false;
        this.reads++;
        const { events, cursor, cursors } = await readCommittedAfter(this.db, this.tail, PAGE);
        this.lastError = null;
        // The cursor moves and the batch goes out in one step: a consumer that reads `cursor`
        // gets every later event from a later batch.
        this.tail = cursor;
        if (events.length) {
          this.batches++;
          this.emitter.emit('events', events, cursors);
        }
        if (events.length < PAGE && !this.again) break;
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
    this.emitter.removeAllListeners();
  }
}

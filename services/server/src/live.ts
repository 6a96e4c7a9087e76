// Live subscriptions (tasks.onUpdate, tasks.onLogs) fed from one read per change for all of
// them, with limits.
//
// Task updates: the event feed tails the log once per process; each batch it reads, the tasks
// it touched are loaded once, and every live subscriber gets {event, task} in its own bounded
// mailbox (filtered by task). A subscriber that resumes from an older position first catches up
// from the log in pages, then takes over from its mailbox: the mailbox was registered before the
// catch-up began (at the feed's cursor then, the floor), so everything after the floor is in it,
// and whatever the catch-up already delivered is skipped by its tail cursor. No gap, no repeat.
//
// Log lines: one channel per watched task reads the task's new lines once per change (the runner
// says when it stored lines; the feed says when another instance recorded an event for the task;
// a slow timer covers another instance's trainer between events) and hands them to every
// subscriber of that task. A new subscriber catches up by itself, up to the channel's cursor,
// the same way.
//
// A subscriber that does not keep up is ended once its mailbox holds `MAILBOX_LIMIT` items, with
// an error the client reconnects through (it resumes from the last id it got): memory per
// subscriber is bounded. The number of subscriptions is capped in total and per client.
import type { IncomingMessage } from 'node:http';
import { isDeploymentStream, isTerminal, type StoredTaskEvent, type TaskRecord, type TaskStatus } from '@trainyard/domain';
import {
  compareTailCursors,
  cursorAt,
  loadTasks,
  readCommittedAfter,
  readLogLines,
  type Conn,
  type LogLine,
  type TailCursor,
} from '@trainyard/store';
import type { EventFeed } from './feed';

/** Items a subscriber may have waiting before it is ended (they are shared between subscribers). */
const MAILBOX_LIMIT = 2000;
const CATCH_UP_PAGE = 200;
const LOG_PAGE = 500;
const END_TYPES = new Set(['TaskCompleted', 'TaskFailed', 'TaskCancelled', 'TaskDeleted']);

export type SubscriptionKind = 'onUpdate' | 'onLogs';

/**
 * Who a subscription is counted against. Local mode: the remote address (every local client is
 * one client); tenancy will count per user instead, here.
 */
export function subscriptionClientKey(req: IncomingMessage): string {
  return req.socket.remoteAddress ?? 'unknown';
}

/** A new subscription over a limit: the client is told which limit and how to raise it. */
export class SubscriptionLimitError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SubscriptionLimitError';
  }
}

/** A subscription the service ended (it fell behind, or the database is away): reconnecting resumes it. */
export class SubscriptionEndedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SubscriptionEndedError';
  }
}

/** Counts open subscriptions in total and per client. */
export class SubscriptionLimits {
  private open = 0;
  private readonly byClient = new Map<string, number>();

  constructor(
    readonly total: number,
    readonly perClient: number,
  ) {}

  get count(): number {
    return this.open;
  }

  /** Take a place for one subscription of `client`; the returned function gives it back (once). */
  acquire(client: string): () => void {
    const mine = this.byClient.get(client) ?? 0;
    if (mine >= this.perClient)
      throw new SubscriptionLimitError(
        `too many subscriptions from ${client}: it holds ${mine}, the limit per client is ${this.perClient}; ` +
          `close some (each open panel tab and --follow holds one or two), or raise TRAINYARD_MAX_SUBSCRIPTIONS_PER_CLIENT`,
      );
    if (this.open >= this.total)
      throw new SubscriptionLimitError(
        `too many subscriptions: the service holds ${this.open}, its limit is ${this.total}; ` +
          `try again when some have closed, or raise TRAINYARD_MAX_SUBSCRIPTIONS`,
      );
    this.open++;
    this.byClient.set(client, mine + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.open--;
      const n = (this.byClient.get(client) ?? 1) - 1;
      if (n > 0) this.byClient.set(client, n);
      else this.byClient.delete(client);
    };
  }
}

/**
 * A bounded queue between one producer (the fan-out) and one consumer (a subscription). Past
 * `capacity` waiting items it fails instead of growing: what it held is dropped, and the
 * consumer's next take() throws.
 */
export class Mailbox<T> {
  private items: T[] = [];
  private failure: Error | null = null;
  private wake: (() => void) | null = null;

  constructor(
    readonly capacity: number,
    private readonly overflowError: () => Error,
  ) {}

  get size(): number {
    return this.items.length;
  }

  get failed(): boolean {
    return this.failure !== null;
  }

  push(items: readonly T[]): void {
    if (this.failure || !items.length) return;
    if (this.items.length + items.length > this.capacity) return this.fail(this.overflowError());
    for (const item of items) this.items.push(item);
    this.notify();
  }

  fail(err: Error): void {
    if (this.failure) return;
    this.failure = err;
    this.items = [];
    this.notify();
  }

  /** Everything waiting (waits for something if empty); null once `signal` aborts; throws the failure. */
  async take(signal: AbortSignal | undefined): Promise<T[] | null> {
    for (;;) {
      if (this.failure) throw this.failure;
      if (signal?.aborted) return null;
      if (this.items.length) {
        const out = this.items;
        this.items = [];
        return out;
      }
      await new Promise<void>((resolve) => {
        const done = () => {
          signal?.removeEventListener('abort', done);
          this.wake = null;
          resolve();
        };
        this.wake = done;
        signal?.addEventListener('abort', done, { once: true });
      });
    }
  }

  private notify(): void {
    this.wake?.();
  }
}

export interface TaskUpdate {
  event: StoredTaskEvent;
  task: TaskRecord | null;
}

interface UpdateItem extends TaskUpdate {
  cursor: TailCursor;
}

interface UpdateSubscriber {
  taskId: string | null;
  box: Mailbox<UpdateItem>;
}

interface LogSubscriber {
  box: Mailbox<LogLine>;
  /** The channel's cursor when this subscriber joined (or when the channel started): the mailbox has every line after it. */
  floor: number | null;
}

interface LogChannel {
  taskId: string;
  /** The last line read and handed out; null until the first subscriber has caught up. */
  cursor: number | null;
  subs: Set<LogSubscriber>;
  reading: boolean;
  again: boolean;
  /** The task may still write lines: the slow timer reads it too. */
  active: boolean;
}

export interface LiveStats {
  subscriptions: Record<SubscriptionKind, number>;
  refused: number;
  endedBehind: number;
  /** Reads of the log by subscribers catching up from an older position. */
  catchUpReads: number;
  /** Task loads by the fan-out (one per feed batch that someone watches). */
  fanOutLoads: number;
  /** Reads of log lines (per channel, not per subscriber) and by subscribers catching up. */
  logReads: number;
}

export interface LiveOptions {
  db: Conn;
  feed: EventFeed;
  /** The runner's emitter: 'logs' (taskId) when lines of a task were stored here. */
  logsStored: { on(event: 'logs', fn: (taskId: string) => void): unknown; off(event: 'logs', fn: (taskId: string) => void): unknown };
  maxSubscriptions: number;
  maxSubscriptionsPerClient: number;
  /** How often channels of unfinished tasks read anyway (lines another instance stored between events). */
  logFallbackMs: number;
  isConnectionError: (err: unknown) => boolean;
}

export class LiveUpdates {
  readonly limits: SubscriptionLimits;
  private readonly updateSubs = new Set<UpdateSubscriber>();
  private readonly channels = new Map<string, LogChannel>();
  /** Feed batches are fanned out one after another, in the feed's order. */
  private fanOutChain: Promise<void> = Promise.resolve();
  private releasePrompt: (() => void) | null = null;
  private readonly fallbackTimer: NodeJS.Timeout;
  private readonly unsubscribe: (() => void)[] = [];
  private closed = false;
  private readonly counts = { refused: 0, endedBehind: 0, catchUpReads: 0, fanOutLoads: 0, logReads: 0 };
  private readonly open: Record<SubscriptionKind, number> = { onUpdate: 0, onLogs: 0 };

  constructor(private readonly opts: LiveOptions) {
    this.limits = new SubscriptionLimits(opts.maxSubscriptions, opts.maxSubscriptionsPerClient);
    this.unsubscribe.push(opts.feed.onEvents((events, cursors) => this.onFeed(events, cursors)));
    const onLogs = (taskId: string) => this.wakeChannel(taskId);
    opts.logsStored.on('logs', onLogs);
    this.unsubscribe.push(() => opts.logsStored.off('logs', onLogs));
    this.fallbackTimer = setInterval(() => {
      for (const ch of this.channels.values()) if (ch.active) void this.readChannel(ch);
    }, opts.logFallbackMs);
    this.fallbackTimer.unref();
  }

  stats(): LiveStats {
    return { subscriptions: { ...this.open }, ...this.counts };
  }

  /**
   * Task changes after `lastEventId` (a log position), or from now on. Ends with an error the
   * client reconnects through when it falls `MAILBOX_LIMIT` changes behind.
   */
  async *taskUpdates(o: {
    taskId: string | undefined;
    lastEventId: string | null | undefined;
    client: string;
    signal: AbortSignal | undefined;
  }): AsyncGenerator<TaskUpdate> {
    const release = this.admit(o.client, 'onUpdate');
    const sub: UpdateSubscriber = { taskId: o.taskId ?? null, box: this.mailbox<UpdateItem>('task changes') };
    // Registered and the floor read in one step: every batch the feed delivers from now on
    // reaches the mailbox, and holds only events after the floor.
    this.updateSubs.add(sub);
    this.releasePrompt ??= this.opts.feed.wantPromptReads();
    const floor = this.opts.feed.cursor;
    try {
      let at = floor;
      if (o.lastEventId) {
        const id = o.lastEventId;
        const resumed = await this.whileDatabaseAway(() => cursorAt(this.opts.db, id), o.signal);
        if (resumed === undefined) return;
        if (!resumed) throw new UnknownPositionError(id);
        at = resumed;
      }
      // Catch up from the log to the floor, a page at a time (the client's pace).
      while (compareTailCursors(at, floor) < 0) {
        const from = at;
        const page = await this.whileDatabaseAway(() => {
          this.counts.catchUpReads++;
          return readCommittedAfter(this.opts.db, from, CATCH_UP_PAGE);
        }, o.signal);
        if (page === undefined) return;
        // The floor was read from the same safe tail, so the log holds it: a page is never empty
        // before it. Should it be, the mailbox still has everything after the floor.
        if (!page.events.length) break;
        const mine = page.events
          .map((e, i) => ({ e, c: page.cursors[i]! }))
          .filter(({ e }) => (!sub.taskId || e.streamId === sub.taskId) && !isDeploymentStream(e.streamId));
        const tasks = mine.length
          ? await this.whileDatabaseAway(() => loadTasks(this.opts.db, [...new Set(mine.map(({ e }) => e.streamId))]), o.signal)
          : new Map<string, TaskRecord>();
        if (tasks === undefined) return;
        for (const { e } of mine) yield { event: e, task: tasks.get(e.streamId) ?? null };
        at = page.cursor;
      }
      for (;;) {
        const items = await sub.box.take(o.signal);
        if (!items) return;
        for (const item of items) {
          if (compareTailCursors(item.cursor, at) <= 0) continue;
          at = item.cursor;
          // Deployments share the log; their changes are not task changes.
          if (isDeploymentStream(item.event.streamId)) continue;
          yield { event: item.event, task: item.task };
        }
      }
    } finally {
      this.updateSubs.delete(sub);
      if (!this.updateSubs.size) {
        this.releasePrompt?.();
        this.releasePrompt = null;
      }
      release();
    }
  }

  /** A task's log lines after line `after`, as they are stored (every line; the caller filters). */
  async *logLines(o: {
    taskId: string;
    after: number;
    status: TaskStatus;
    client: string;
    signal: AbortSignal | undefined;
  }): AsyncGenerator<LogLine> {
    const release = this.admit(o.client, 'onLogs');
    let ch = this.channels.get(o.taskId);
    if (!ch) {
      ch = { taskId: o.taskId, cursor: null, subs: new Set(), reading: false, again: false, active: !isTerminal(o.status) };
      this.channels.set(o.taskId, ch);
    }
    const channel = ch;
    const sub: LogSubscriber = { box: this.mailbox<LogLine>('log lines'), floor: channel.cursor };
    channel.subs.add(sub);
    try {
      let at = o.after;
      // Catch up by itself until the mailbox takes over (at the floor).
      while (sub.floor === null || at < sub.floor) {
        const from = at;
        const floorBefore = sub.floor;
        const page = await this.whileDatabaseAway(() => {
          this.counts.logReads++;
          return readLogLines(this.opts.db, o.taskId, from, LOG_PAGE);
        }, o.signal);
        if (page === undefined) return;
        for (const line of page) {
          at = line.seq;
          yield line;
        }
        if (page.length === LOG_PAGE) continue;
        // At the end of the log. With the floor known before that read, every line up to it was
        // there to read: the mailbox has the rest.
        if (floorBefore !== null) break;
        // Nobody reads this task yet: the channel starts here, for this subscriber and any
        // other still catching up. (A floor set during the read: read once more.)
        if (sub.floor === null) this.startChannel(channel, at);
      }
      for (;;) {
        const lines = await sub.box.take(o.signal);
        if (!lines) return;
        for (const line of lines) {
          if (line.seq <= at) continue;
          at = line.seq;
          yield line;
        }
      }
    } finally {
      channel.subs.delete(sub);
      if (!channel.subs.size && this.channels.get(o.taskId) === channel) this.channels.delete(o.taskId);
      release();
    }
  }

  close(): void {
    this.closed = true;
    clearInterval(this.fallbackTimer);
    for (const off of this.unsubscribe.splice(0)) off();
    const bye = () => new SubscriptionEndedError('the service is shutting down; reconnect to resume');
    for (const s of this.updateSubs) s.box.fail(bye());
    for (const ch of this.channels.values()) for (const s of ch.subs) s.box.fail(bye());
  }

  private admit(client: string, kind: SubscriptionKind): () => void {
    let release: () => void;
    try {
      release = this.limits.acquire(client);
    } catch (err) {
      this.counts.refused++;
      throw err;
    }
    this.open[kind]++;
    return () => {
      release();
      this.open[kind]--;
    };
  }

  private mailbox<T>(what: string): Mailbox<T> {
    return new Mailbox<T>(MAILBOX_LIMIT, () => {
      this.counts.endedBehind++;
      return new SubscriptionEndedError(
        `this subscription fell ${MAILBOX_LIMIT} ${what} behind and was ended; reconnect with the last id received to resume (the client does so by itself)`,
      );
    });
  }

  /**
   * Runs a read, waiting out a database that is away (connection errors) and trying again, as
   * long as the subscriber is there; undefined once it has gone.
   */
  private async whileDatabaseAway<T>(read: () => Promise<T>, signal: AbortSignal | undefined): Promise<T | undefined> {
    for (;;) {
      if (signal?.aborted || this.closed) return undefined;
      try {
        return await read();
      } catch (err) {
        if (!this.opts.isConnectionError(err)) throw err;
        await sleep(1000, signal);
      }
    }
  }

  private onFeed(events: StoredTaskEvent[], cursors: TailCursor[]): void {
    // Channels of tasks with new events read again: another instance may have stored lines.
    for (const e of events) {
      const ch = this.channels.get(e.streamId);
      if (!ch) continue;
      if (END_TYPES.has(e.type)) ch.active = false;
      void this.readChannel(ch);
    }
    if (!this.updateSubs.size) return;
    // The subscribers of this batch are the ones registered now: a later one's floor is past it.
    const subs = [...this.updateSubs];
    this.fanOutChain = this.fanOutChain
      .then(() => this.fanOut(subs, events, cursors))
      .catch((err: Error) => {
        // Never leave a subscriber with a hole: it reconnects and catches up from the log.
        const ended = new SubscriptionEndedError(`could not hand out a change (${err.message}); reconnect to resume`);
        for (const s of subs) s.box.fail(ended);
      });
  }

  private async fanOut(subs: UpdateSubscriber[], events: StoredTaskEvent[], cursors: TailCursor[]): Promise<void> {
    const all = subs.some((s) => s.taskId === null);
    const watched = new Set(subs.map((s) => s.taskId));
    const ids = [...new Set(events.map((e) => e.streamId))].filter((id) => all || watched.has(id));
    if (!ids.length) return;
    let tasks: Map<string, TaskRecord>;
    try {
      this.counts.fanOutLoads++;
      tasks = await loadTasks(this.opts.db, ids);
    } catch (err) {
      // Without the tasks there is nothing correct to send: end these subscriptions; the
      // clients reconnect and catch up from the log once it answers.
      const ended = new SubscriptionEndedError(`could not read the changed tasks (${(err as Error).message}); reconnect to resume`);
      for (const s of subs) if (s.taskId === null || ids.includes(s.taskId)) s.box.fail(ended);
      return;
    }
    for (const s of subs) {
      if (!this.updateSubs.has(s)) continue;
      const items: UpdateItem[] = [];
      events.forEach((event, i) => {
        if (s.taskId === null || event.streamId === s.taskId)
          items.push({ event, cursor: cursors[i]!, task: tasks.get(event.streamId) ?? null });
      });
      s.box.push(items);
    }
  }

  private startChannel(ch: LogChannel, at: number): void {
    ch.cursor = at;
    for (const s of ch.subs) s.floor ??= at;
    // Lines stored since that read: the wake-ups before the start found no cursor to read from.
    void this.readChannel(ch);
  }

  private wakeChannel(taskId: string): void {
    const ch = this.channels.get(taskId);
    if (ch) void this.readChannel(ch);
  }

  /** Read the channel's new lines once and hand them to each of its subscribers. */
  private async readChannel(ch: LogChannel): Promise<void> {
    if (ch.cursor === null || this.closed) return;
    if (ch.reading) {
      ch.again = true;
      return;
    }
    ch.reading = true;
    try {
      for (;;) {
        ch.again = false;
        this.counts.logReads++;
        const lines = await readLogLines(this.opts.db, ch.taskId, ch.cursor, LOG_PAGE);
        if (lines.length) {
          ch.cursor = lines[lines.length - 1]!.seq;
          for (const s of ch.subs) s.box.push(lines);
        }
        if (lines.length < LOG_PAGE && !ch.again) break;
      }
    } catch (err) {
      // A database away: the next wake-up (or the slow timer) reads again. Anything else ends
      // the subscribers, who reconnect and catch up.
      if (!this.opts.isConnectionError(err)) {
        const ended = new SubscriptionEndedError(`could not read the task's log (${(err as Error).message}); reconnect to resume`);
        for (const s of ch.subs) s.box.fail(ended);
      }
    } finally {
      ch.reading = false;
    }
  }
}

/** lastEventId names no event in the log. */
export class UnknownPositionError extends Error {
  constructor(readonly position: string) {
    super(`no event at position ${position}`);
    this.name = 'UnknownPositionError';
  }
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const t = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}

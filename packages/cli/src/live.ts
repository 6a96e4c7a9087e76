// Following a task live: its changes from the tasks.onUpdate subscription (with a slow poll of
// tasks.get as a safety net for anything a reconnect could miss), its log lines from
// tasks.onLogs, and a progress bar or plain status lines on stderr. The bar is one line redrawn in
// place, never wider than the terminal (a line that wrapped would leave a copy behind at every
// redraw); a message about the connection, or a log line, clears it, takes its own line, and the
// bar is drawn again below.
import type { TaskView, TrainyardClient } from '@trainyard/client';
import { errorInfo } from '@trainyard/client';
import { isUnreachable } from './errors';
import { isTerminal, progressText } from './format';

export interface LiveStatusOptions {
  /** Where the bar or status lines go (stderr). */
  stream: NodeJS.WriteStream;
  /** Draw a bar (the stream is a terminal). */
  bar: boolean;
  /** Without a bar: print a line when the status changes, and progress now and then. */
  lines: boolean;
  /** stdout is a terminal too: clear the bar before a line is printed there. */
  stdoutIsTTY: boolean;
  /** The terminal's width now (it may change while the bar is up); default the stream's, else 80. */
  columns?: () => number;
}

const BAR_MIN = 8;
const BAR_MAX = 30;

/** 83 s → "1:23", 3723 s → "1:02:03". */
export function clockText(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = String(s % 60).padStart(2, '0');
  return h ? `${h}:${String(m).padStart(2, '0')}:${sec}` : `${m}:${sec}`;
}

function cut(text: string, width: number): string {
  if (width <= 0) return '';
  return text.length <= width ? text : `${text.slice(0, Math.max(0, width - 1))}…`;
}

/**
 * The progress bar's line for a terminal `columns` wide, at most `columns - 1` characters (a
 * terminal that wraps at the last column would push the next redraw onto a new line). What gives
 * first when it is narrow: the elapsed time, then the bar's width, then the detail (cut with …),
 * then the bar itself.
 */
export function barLine(o: { status: string; percent: number; detail: string; elapsedMs: number }, columns: number): string {
  const width = Math.max(1, columns - 1);
  const pct = `${Math.floor(Math.min(100, Math.max(0, o.percent)))}%`;
  const el = clockText(o.elapsedMs);
  const bar = (size: number) => {
    const filled = Math.round((size * Math.min(100, Math.max(0, o.percent))) / 100);
    return `[${'█'.repeat(filled)}${'░'.repeat(size - filled)}]`;
  };
  const compose = (size: number, detail: string, withElapsed: boolean) =>
    `${o.status} ${bar(size)} ${pct}${detail ? ` ${detail}` : ''}${withElapsed ? `  ${el}` : ''}`;
  for (const withElapsed of [true, false]) {
    const room = width - compose(0, o.detail, withElapsed).length;
    if (room >= BAR_MIN) return compose(Math.min(BAR_MAX, room), o.detail, withElapsed);
  }
  const detailRoom = width - compose(BAR_MIN, '', false).length - 1;
  if (o.detail && detailRoom >= 6) return compose(BAR_MIN, cut(o.detail, detailRoom), false);
  return cut(`${o.status} ${pct}${o.detail ? ` ${o.detail}` : ''}`, width);
}

const CLEAR_LINE = '\r\x1b[2K';

/** A progress bar (epoch/step/loss) on a terminal, or status lines when it is not one. */
export class LiveStatus {
  private task: TaskView | null = null;
  private drawn = false;
  private readonly started = Date.now();
  private ticker: NodeJS.Timeout | null = null;
  private lastStatus = '';
  private lastProgress = '';
  private lastProgressAt = 0;

  constructor(private readonly opts: LiveStatusOptions) {}

  private columns(): number {
    return this.opts.columns?.() ?? (this.opts.stream.columns || 80);
  }

  private statusOf(t: TaskView): string {
    return t.status + (t.stop && !isTerminal(t.status) ? ' (stopping)' : '');
  }

  /** Draw the bar again in place (the elapsed time moves on; the terminal may have been resized). */
  private render(): void {
    const t = this.task;
    if (!t || !this.opts.bar) return;
    const line = barLine(
      {
        status: this.statusOf(t),
        percent: t.progress.percent,
        detail: progressText(t.progress, { percent: false }),
        elapsedMs: Date.now() - this.started,
      },
      this.columns(),
    );
    this.opts.stream.write(`${CLEAR_LINE}${line}`);
    this.drawn = true;
  }

  private clear(): void {
    if (this.drawn) this.opts.stream.write(CLEAR_LINE);
  }

  update(t: TaskView): void {
    const status = this.statusOf(t);
    const detail = progressText(t.progress, { percent: false });
    if (this.opts.bar) {
      this.task = t;
      if (!this.ticker) {
        this.ticker = setInterval(() => this.render(), 1000);
        this.ticker.unref();
      }
      this.render();
      return;
    }
    if (!this.opts.lines) return;
    const now = Date.now();
    if (status !== this.lastStatus) {
      this.lastStatus = status;
      this.lastProgress = detail;
      this.lastProgressAt = now;
      this.opts.stream.write(`${t.id} ${status}${detail ? ` ${t.progress.percent}% ${detail}` : ''}\n`);
    } else if (detail && detail !== this.lastProgress && now - this.lastProgressAt >= 2000) {
      this.lastProgress = detail;
      this.lastProgressAt = now;
      this.opts.stream.write(`${t.id} ${status} ${t.progress.percent}% ${detail}\n`);
    }
  }

  /** Print a line on stdout without garbling the bar. */
  println(line: string): void {
    if (this.drawn && this.opts.stdoutIsTTY) {
      this.clear();
      process.stdout.write(`${line}\n`);
      this.render();
    } else {
      process.stdout.write(`${line}\n`);
    }
  }

  /** A message on a line of its own (a lost or regained connection), the bar drawn again below it. */
  note(message: string): void {
    this.clear();
    this.opts.stream.write(`${message}\n`);
    this.render();
  }

  /** Leave the bar as it last was, on a line of its own. */
  stop(): void {
    if (this.ticker) clearInterval(this.ticker);
    this.ticker = null;
    if (this.drawn) {
      this.render();
      this.opts.stream.write('\n');
    }
    this.drawn = false;
    this.task = null;
  }
}

export interface FollowOptions {
  onTask?: (t: TaskView) => void;
  /** The connection dropped; the subscription reconnects and resumes by itself. */
  onConnectionProblem?: (message: string) => void;
  /** Poll tasks.get this often as a safety net (ms). */
  pollMs?: number;
  /** Give up when the server has been unreachable this long (ms). */
  giveUpAfterMs?: number;
}

/** Resolves with the task once it is COMPLETED, FAILED or CANCELLED. */
export function followTask(client: TrainyardClient, id: string, opts: FollowOptions = {}): Promise<TaskView> {
  const pollMs = opts.pollMs ?? 3000;
  const giveUpAfterMs = opts.giveUpAfterMs ?? 120_000;
  return new Promise<TaskView>((resolve, reject) => {
    let latest: TaskView | null = null;
    let settled = false;
    let reachableAt = Date.now();
    let timer: NodeJS.Timeout | null = null;
    let polling = false;
    let problem = false;

    const finish = (fn: () => void) => {
      if (settled) return;
      settled = true;
      if (timer) clearInterval(timer);
      if (resubscribe) clearTimeout(resubscribe);
      sub.unsubscribe();
      fn();
    };
    const accept = (t: TaskView) => {
      if (settled || t.id !== id) return;
      if (latest && t.version < latest.version) return;
      latest = t;
      opts.onTask?.(t);
      if (isTerminal(t.status)) finish(() => resolve(t));
    };
    const poll = async () => {
      if (polling || settled) return;
      polling = true;
      try {
        accept(await client.tasks.get.query({ id }));
        reachableAt = Date.now();
        if (problem) {
          problem = false;
          opts.onConnectionProblem?.('connection is back');
        }
      } catch (err) {
        if (!isUnreachable(err)) return finish(() => reject(err));
        if (!problem) {
          problem = true;
          opts.onConnectionProblem?.('lost the connection to the server; reconnecting');
        }
        if (Date.now() - reachableAt > giveUpAfterMs) finish(() => reject(err));
      } finally {
        polling = false;
      }
    };
    // The subscription reconnects by itself through a dropped connection (resuming from its last
    // id); said once, and once more when it is back. An error that ends it (the server restarted
    // and refused to resume, too many subscriptions) is met with a new one a moment later; the
    // poll covers the gap. Only an error that will not pass (not found, not allowed) ends the follow.
    let lastEventId: string | null = null;
    let sub: { unsubscribe(): void } = { unsubscribe() {} };
    let resubscribe: NodeJS.Timeout | null = null;
    const lost = () => {
      if (problem || settled) return;
      problem = true;
      opts.onConnectionProblem?.('lost the connection to the server; reconnecting');
    };
    const subscribe = () => {
      resubscribe = null;
      if (settled) return;
      sub = client.tasks.onUpdate.subscribe(
        { taskId: id, ...(lastEventId ? { lastEventId } : {}) },
        {
          onStarted: () => void poll(),
          onData: (tracked) => {
            lastEventId = tracked.id;
            const task = tracked.data.task;
            if (task) accept(task);
          },
          onConnectionStateChange: (state) => {
            if (state.state === 'connecting' && state.error) lost();
            else if (state.state === 'pending') void poll();
          },
          onError: (err) => {
            const code = errorInfo(err).code;
            if (
              !isUnreachable(err) &&
              !['SERVICE_UNAVAILABLE', 'TOO_MANY_REQUESTS', 'INTERNAL_SERVER_ERROR', 'BAD_REQUEST', 'UNKNOWN'].includes(code)
            )
              return finish(() => reject(err));
            // A position the restarted server does not know: start afresh; the poll has the state.
            if (code === 'BAD_REQUEST') lastEventId = null;
            lost();
            if (!settled) resubscribe = setTimeout(subscribe, 1000);
          },
        },
      );
    };
    subscribe();
    timer = setInterval(() => void poll(), pollMs);
    void poll();
  });
}

export type LogLineView = Awaited<ReturnType<TrainyardClient['tasks']['logs']['query']>>['lines'][number];

/**
 * Stored log lines after `afterSeq`, page by page; calls `onLine` for each line with a seq
 * above `afterSeq` and returns the seq to resume from.
 */
export async function pageLogs(
  client: TrainyardClient,
  id: string,
  afterSeq: number,
  onLine: (l: LogLineView) => void,
  pageSize = 2000,
): Promise<number> {
  let cursor = afterSeq;
  for (;;) {
    const page = await client.tasks.logs.query({ id, afterSeq: cursor, limit: pageSize });
    for (const l of page.lines) if (l.seq > cursor) onLine(l);
    cursor = Math.max(cursor, page.nextSeq);
    if (!page.hasMore) return cursor;
  }
}

/** An error a new subscription may get past: the server away, restarting or busy. */
function passing(err: unknown): boolean {
  return (
    isUnreachable(err) || ['SERVICE_UNAVAILABLE', 'TOO_MANY_REQUESTS', 'INTERNAL_SERVER_ERROR', 'UNKNOWN'].includes(errorInfo(err).code)
  );
}

/**
 * Live log lines from tasks.onLogs, resuming after `afterSeq`, until `stop()`; each line once
 * (a resumed stream may resend some), in order. An error a new subscription may get past (see
 * followTask) is met with one from the last line seen; any other goes to `onError`.
 */
export function streamLogs(
  client: TrainyardClient,
  id: string,
  afterSeq: number,
  onLine: (l: LogLineView) => void,
  onError: (err: unknown) => void,
): { stop(): void; seq(): number } {
  let seq = afterSeq;
  let stopped = false;
  let retry: NodeJS.Timeout | null = null;
  let sub: { unsubscribe(): void } = { unsubscribe() {} };
  const subscribe = () => {
    retry = null;
    if (stopped) return;
    sub = client.tasks.onLogs.subscribe(
      { id, lastEventId: String(seq) },
      {
        onData: (tracked) => {
          const l = tracked.data;
          if (l.seq <= seq) return;
          seq = l.seq;
          onLine(l);
        },
        onError: (err) => {
          if (stopped) return;
          if (passing(err)) retry = setTimeout(subscribe, 1000);
          else onError(err);
        },
      },
    );
  };
  subscribe();
  return {
    stop: () => {
      stopped = true;
      if (retry) clearTimeout(retry);
      sub.unsubscribe();
    },
    seq: () => seq,
  };
}

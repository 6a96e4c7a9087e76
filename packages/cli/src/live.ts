// Following a task live: its changes from the tasks.onUpdate subscription (with a slow poll of
// tasks.get as a safety net for anything a reconnect could miss), its log lines from
// tasks.onLogs, and a progress bar (cli-progress) or plain status lines on stderr.
import cliProgress from 'cli-progress';
import type { TaskView, TrainyardClient } from '@trainyard/client';
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
}

/** A progress bar (epoch/step/loss) on a terminal, or status lines when it is not one. */
export class LiveStatus {
  private bar: cliProgress.SingleBar | null = null;
  private lastStatus = '';
  private lastProgress = '';
  private lastProgressAt = 0;

  constructor(private readonly opts: LiveStatusOptions) {}

  update(t: TaskView): void {
    const status = t.status + (t.stop && !isTerminal(t.status) ? ' (stopping)' : '');
    const detail = progressText(t.progress, { percent: false });
    if (this.opts.bar) {
      const payload = { status, detail };
      if (!this.bar) {
        this.bar = new cliProgress.SingleBar(
          {
            stream: this.opts.stream,
            format: '{status} [{bar}] {percentage}% {detail}  {duration_formatted}',
            barsize: 20,
            hideCursor: false,
            gracefulExit: false,
            forceRedraw: true,
            linewrap: true,
            fps: 5,
          },
          cliProgress.Presets.shades_classic,
        );
        this.bar.start(100, t.progress.percent, payload);
      } else {
        this.bar.update(t.progress.percent, payload);
      }
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
    if (this.bar && this.opts.stdoutIsTTY) {
      this.opts.stream.write('\r\x1b[2K');
      process.stdout.write(`${line}\n`);
      this.bar.render();
    } else {
      process.stdout.write(`${line}\n`);
    }
  }

  note(message: string): void {
    if (this.bar) this.opts.stream.write('\r\x1b[2K');
    this.opts.stream.write(`${message}\n`);
    this.bar?.render();
  }

  stop(): void {
    this.bar?.stop();
    this.bar = null;
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
          opts.onConnectionProblem?.('lost the connection to the server; retrying');
        }
        if (Date.now() - reachableAt > giveUpAfterMs) finish(() => reject(err));
      } finally {
        polling = false;
      }
    };
    const sub = client.tasks.onUpdate.subscribe(
      { taskId: id },
      {
        onStarted: () => void poll(),
        onData: (tracked) => {
          const task = tracked.data.task;
          if (task) accept(task);
        },
        onError: (err) => finish(() => reject(err)),
      },
    );
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

/**
 * Live log lines from tasks.onLogs, resuming after `afterSeq`, until `stop()`; each line once
 * (a resumed stream may resend some), in order.
 */
export function streamLogs(
  client: TrainyardClient,
  id: string,
  afterSeq: number,
  onLine: (l: LogLineView) => void,
  onError: (err: unknown) => void,
): { stop(): void; seq(): number } {
  let seq = afterSeq;
  const sub = client.tasks.onLogs.subscribe(
    { id, lastEventId: String(afterSeq) },
    {
      onData: (tracked) => {
        const l = tracked.data;
        if (l.seq <= seq) return;
        seq = l.seq;
        onLine(l);
      },
      onError,
    },
  );
  return { stop: () => sub.unsubscribe(), seq: () => seq };
}

// The service's one way to write log lines. stdout and stderr may be pipes whose reader has
// gone (`npm start | head`, a supervisor that died): a write then fails with EPIPE, and an
// unhandled stream error becomes an uncaught exception whose handler logs, fails again, and so
// on, a loop that took a whole core and starved the HTTP server. Here a stream that fails once is
// never written again; its lines are counted and dropped, nothing ever throws, and nothing writes
// from inside a write's error handling.
import { inspect } from 'node:util';
import { databaseErrorMessage } from '@trainyard/store';

/**
 * An error as a log line says it: its message, and for a failed query the driver's cause, never
 * drizzle's "Failed query: <sql> params: <values>" wrapper (lines of SQL, the values of users'
 * data, and not what went wrong).
 */
export function errorText(err: unknown): string {
  return databaseErrorMessage(err);
}

/** What the logger needs of process.stdout / process.stderr. */
export interface LogStream {
  write(chunk: string, callback: (err?: Error | null) => void): unknown;
  on(event: 'error', listener: (err: Error) => void): unknown;
  readonly destroyed?: boolean;
  readonly writableEnded?: boolean;
}

export interface Logger {
  info(message: string): void;
  warn(message: string): void;
  /** `detail` (an error, say) is printed after the message the way console.error would. */
  error(message: string, detail?: unknown): void;
  /** A line written to stdout as it is, without the prefix (machine-readable lines). */
  line(text: string): void;
  /** Lines that could not be written, per stream. */
  dropped(): { stdout: number; stderr: number };
}

class Sink {
  broken: string | null = null;
  dropped = 0;
  /** Told once when this stream breaks (the logger says so on the other stream). */
  onBreak: (why: string) => void = () => {};

  constructor(private readonly stream: LogStream) {
    // Without a listener an async write error is thrown as an uncaught exception.
    stream.on('error', (err) => this.fail(err));
  }

  private fail(err: Error | string): void {
    if (this.broken !== null) return;
    this.broken = typeof err === 'string' ? err : ((err as NodeJS.ErrnoException).code ?? err.message);
    this.onBreak(this.broken);
  }

  write(text: string): void {
    if (this.stream.destroyed || this.stream.writableEnded) this.fail('closed');
    if (this.broken !== null) {
      this.dropped++;
      return;
    }
    try {
      this.stream.write(text, (err) => {
        if (err) {
          this.dropped++;
          this.fail(err);
        }
      });
    } catch (err) {
      this.dropped++;
      this.fail(err as Error);
    }
  }
}

export function createLogger(streams: { stdout: LogStream; stderr: LogStream }, prefix = '[trainyard] '): Logger {
  const out = new Sink(streams.stdout);
  const err = new Sink(streams.stderr);
  // One notice on the other stream, which, if broken too, drops it: no write loops back here.
  out.onBreak = (why) => err.write(`${prefix}stdout failed (${why}): its log lines are dropped from now on\n`);
  err.onBreak = (why) => out.write(`${prefix}stderr failed (${why}): its log lines are dropped from now on\n`);
  const text = (message: string, detail?: unknown): string => {
    if (detail === undefined) return `${prefix}${message}\n`;
    try {
      return `${prefix}${message} ${typeof detail === 'string' ? detail : inspect(detail)}\n`;
    } catch {
      // An object whose inspection throws (a hostile getter) still gets its message logged.
      return `${prefix}${message} (detail could not be printed)\n`;
    }
  };
  return {
    info: (m) => out.write(text(m)),
    warn: (m) => err.write(text(m)),
    error: (m, detail) => err.write(text(m, detail)),
    line: (t) => out.write(`${t}\n`),
    dropped: () => ({ stdout: out.dropped, stderr: err.dropped }),
  };
}

/** The service's logger, on the process's stdout and stderr. */
export const log: Logger = createLogger({ stdout: process.stdout, stderr: process.stderr });

// Exit codes scripts can rely on, and the translation of API errors into a message that says
// what to do next plus the exit code. Documented in `trainyard --help` and README.md.
import { DatasetUploadError, DEFAULT_URL, errorInfo, isTerminal, TRPCClientError } from '@trainyard/client';

export const EXIT = {
  OK: 0,
  /** The followed task FAILED, or any error not listed below. */
  FAILED: 1,
  /** Bad flags or arguments, or the server rejected the input (BAD_REQUEST). */
  USAGE: 2,
  /** The followed task was CANCELLED. */
  CANCELLED: 3,
  NOT_FOUND: 4,
  /** The command is not allowed in the task's state (e.g. cancel a finished task). */
  CONFLICT: 5,
  /** Nothing answered at the URL. */
  UNREACHABLE: 6,
  /** The service requires a token and got none, or refused the one given. */
  UNAUTHORIZED: 7,
} as const;
export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

export const EXIT_CODES_HELP = `Exit codes:
  0  ok (with --follow: the task COMPLETED)
  1  the followed task FAILED, or an error not listed here
  2  usage error: bad flags or arguments, or the server rejected the input (BAD_REQUEST)
  3  the followed task was CANCELLED
  4  not found (no such task)
  5  conflict: not allowed in the task's state (e.g. cancel a finished task)
  6  server unreachable at --url / TRAINYARD_URL
  7  unauthorized: the service requires a token (--token / TRAINYARD_TOKEN), or refused the one given`;

/** An error the CLI itself raises: the message goes to stderr, the process exits with `exitCode`. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: ExitCode = EXIT.FAILED,
  ) {
    super(message);
    this.name = 'CliError';
  }
}

export class UsageError extends CliError {
  constructor(message: string) {
    super(message, EXIT.USAGE);
    this.name = 'UsageError';
  }
}

const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ETIMEDOUT',
  'EPIPE',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_SOCKET',
]);

/** The errno-style code of the innermost network failure in an error's cause chain, if any. */
function networkErrorCode(err: unknown): string | null {
  let e: unknown = err;
  for (let depth = 0; e && depth < 8; depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && NETWORK_CODES.has(code)) return code;
    const nested = (e as { errors?: unknown[] }).errors; // AggregateError (IPv4 + IPv6 attempts)
    if (Array.isArray(nested))
      for (const n of nested) {
        const c = networkErrorCode(n);
        if (c) return c;
      }
    e = (e as { cause?: unknown }).cause;
  }
  return null;
}

function innermostMessage(err: unknown): string | null {
  let e: unknown = err;
  let message: string | null = null;
  for (let depth = 0; e && depth < 8; depth++) {
    if (e instanceof Error && e.message) message = e.message;
    e = (e as { cause?: unknown }).cause;
  }
  return message;
}

/** An answer that was not the API's JSON (a web page, a proxy's error): the cause the client's parse gave. */
function notTheApi(err: unknown): SyntaxError | null {
  let e: unknown = err;
  for (let depth = 0; e && depth < 8; depth++) {
    if (e instanceof SyntaxError) return e;
    e = (e as { cause?: unknown }).cause;
  }
  return null;
}

/** True when the request never got an answer from a server (as opposed to an API error, or an answer from something else). */
export function isUnreachable(err: unknown): boolean {
  if (networkErrorCode(err)) return true;
  return err instanceof TRPCClientError && errorInfo(err).code === 'NETWORK_ERROR' && !notTheApi(err);
}

/** Field names of tasks.create's input → the flag that sets them. */
const FLAG_OF: Record<string, string> = {
  model: '--model',
  datasetPath: '--dataset',
  name: '--name',
  outputDir: '--output-dir',
  timeoutMs: '--timeout',
  idempotencyKey: '--idempotency-key',
  'config.epochs': '--epochs',
  'config.batchSize': '--batch-size',
  'config.gradientAccumulation': '--grad-accum',
  'config.learningRate': '--lr',
  'config.maxLength': '--max-length',
  'config.load8bit': '--8bit',
  'config.load4bit': '--4bit',
  'config.loraRank': '--lora-rank',
  'config.loraAlpha': '--lora-alpha',
  'resources.gpus': '--gpus',
  'resources.gpuMemoryGb': '--gpu-memory',
  'resources.shared': '--shared',
  reason: '--reason',
  status: '--status',
  search: '--search',
  owner: '--owner',
  idPrefix: '<id>',
  limit: '--limit',
  cursor: '--cursor',
  actor: '--actor',
  type: '--type',
  from: '--from',
  to: '--to',
  atPosition: '--at-position',
  atTime: '--at-time',
};

function flagOf(field: string): string | null {
  if (FLAG_OF[field]) return FLAG_OF[field]!;
  if (field.startsWith('config.simulate')) return '--simulate';
  const base = field.replace(/\.\d+$/, ''); // status.1 → status
  return FLAG_OF[base] ?? null;
}

export interface Described {
  exitCode: ExitCode;
  lines: string[];
}

/** What to tell the user about an error, and the exit code. */
export function describeError(err: unknown, url: string): Described {
  if (err instanceof CliError) return { exitCode: err.exitCode, lines: [err.message] };
  if (err instanceof DatasetUploadError) {
    if (err.status === null)
      return {
        exitCode: EXIT.UNREACHABLE,
        lines: [
          `cannot reach Trainyard at ${url} to upload the dataset: is it running? (${err.message})`,
          `(the URL comes from --url or TRAINYARD_URL)`,
        ],
      };
    if (err.status === 401) return { exitCode: EXIT.UNAUTHORIZED, lines: [`the server refused the dataset upload: ${err.message}`] };
    if (err.status === 400 || err.status === 413 || err.status === 415)
      return { exitCode: EXIT.USAGE, lines: ['the server refused the dataset upload:', `  datasetPath: ${err.message} (--dataset)`] };
    return { exitCode: EXIT.FAILED, lines: [`the server refused the dataset upload (HTTP ${err.status}): ${err.message.trim()}`] };
  }
  if (isUnreachable(err)) {
    const code = networkErrorCode(err);
    const detail = code ? ` (${code})` : innermostMessage(err) ? ` (${innermostMessage(err)})` : '';
    return {
      exitCode: EXIT.UNREACHABLE,
      lines: [
        `cannot reach Trainyard at ${url}: is it running? start it with \`npm start\`${detail}`,
        `(the URL comes from --url or TRAINYARD_URL)`,
      ],
    };
  }
  const parse = err instanceof TRPCClientError ? notTheApi(err) : null;
  if (parse)
    return {
      exitCode: EXIT.FAILED,
      lines: [
        `something answered at ${url}, but not Trainyard's API (${parse.message})`,
        `is ${url} a Trainyard service? check --url / TRAINYARD_URL: the service's own address, e.g. ${DEFAULT_URL}`,
      ],
    };
  if (err instanceof TRPCClientError) {
    const info = errorInfo(err);
    switch (info.code) {
      case 'BAD_REQUEST': {
        if (info.fieldErrors && Object.keys(info.fieldErrors).length) {
          const lines = ['the server rejected the input:'];
          for (const [field, messages] of Object.entries(info.fieldErrors)) {
            const flag = flagOf(field);
            for (const m of messages) lines.push(`  ${field}: ${m}${flag ? ` (${flag})` : ''}`);
          }
          return { exitCode: EXIT.USAGE, lines };
        }
        return { exitCode: EXIT.USAGE, lines: [`the server rejected the input: ${info.message}`] };
      }
      case 'NOT_FOUND':
        return { exitCode: EXIT.NOT_FOUND, lines: [`${info.message}; list tasks with \`trainyard ls\``] };
      case 'CONFLICT': {
        const task = (err.data as { task?: { id: string; status: string | null; command: string } | null } | undefined)?.task;
        const hint = !task
          ? null
          : task.command === 'cancel' && isTerminal(task.status ?? '')
            ? `it has ended already: see it with \`trainyard show ${task.id}\`, remove it with \`trainyard delete ${task.id}\``
            : `see the task's state with \`trainyard show ${task.id}\``;
        return { exitCode: EXIT.CONFLICT, lines: hint ? [info.message, hint] : [info.message] };
      }
      case 'SERVICE_UNAVAILABLE':
        return { exitCode: EXIT.FAILED, lines: [info.message] };
      case 'UNAUTHORIZED':
        return { exitCode: EXIT.UNAUTHORIZED, lines: [info.message] };
      default:
        return {
          exitCode: EXIT.FAILED,
          lines: [
            `the server answered with an error${info.code !== 'UNKNOWN' ? ` (${info.code})` : ''}: ${info.message}`,
            info.httpStatus === 404 || /JSON|Unexpected token/i.test(info.message)
              ? `is ${url} a Trainyard service? check --url / TRAINYARD_URL`
              : `see the service's log for details`,
          ],
        };
    }
  }
  const message = err instanceof Error ? err.message : String(err);
  return { exitCode: EXIT.FAILED, lines: [`unexpected error: ${message}`] };
}

// Real processes for the torture runs: the server as a child process (as `npm start` runs it),
// a raw tRPC caller with a timeout (a hung request must not hang the run), and a scan of /proc
// for the trainers and shepherds that belong to a data folder.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { dirname, join, resolve, sep } from 'node:path';
import { createInterface } from 'node:readline';
import { isSameProcessAlive, readProcStat } from '../../src/trainer/proc';

export const REPO_ROOT = resolve(import.meta.dirname, '../../../..');
export const DATASET = join(REPO_ROOT, 'examples/tiny-dataset.jsonl');
const MAIN = join(REPO_ROOT, 'services/server/src/main.ts');

// ---------------------------------------------------------------------------------------------
// The API, raw: one procedure per HTTP request, exactly what a client sends.

interface ApiError {
  code: string;
  message: string;
  httpStatus: number | null;
  fieldErrors: Record<string, string[]> | null;
}

export type ApiResult<T> = { ok: true; data: T; httpStatus: number } | { ok: false; error: ApiError };

export const MUTATIONS = new Set([
  'tasks.create',
  'tasks.createMany',
  'tasks.cancel',
  'tasks.pause',
  'tasks.resume',
  'tasks.delete',
  'quotas.set',
  'webhooks.create',
  'webhooks.delete',
  'deployments.create',
  'deployments.stop',
  'deployments.delete',
  'deployments.addAdapter',
  'deployments.removeAdapter',
]);

/**
 * Call one procedure. `rawBody` sends the given text as the body of a mutation (or the `input`
 * query parameter of a query) verbatim, to deliver what JSON.stringify cannot (1e999).
 * Network failures come back as code NETWORK_ERROR, never as a throw.
 */
export async function callApi<T = unknown>(
  baseUrl: string,
  proc: string,
  input: unknown,
  opts: { timeoutMs?: number; user?: string; rawBody?: string } = {},
): Promise<ApiResult<T>> {
  const mutation = MUTATIONS.has(proc);
  const body = opts.rawBody ?? (input === undefined ? undefined : JSON.stringify(input));
  const url = `${baseUrl}/trpc/${proc}` + (!mutation && body !== undefined ? `?input=${encodeURIComponent(body)}` : '');
  let res: Response;
  let text: string;
  try {
    res = await fetch(url, {
      method: mutation ? 'POST' : 'GET',
      headers: { 'content-type': 'application/json', 'x-trainyard-user': opts.user ?? 'torture' },
      ...(mutation ? { body: body ?? '' } : {}),
      signal: AbortSignal.timeout(opts.timeoutMs ?? 20_000),
    });
    text = await res.text();
  } catch (err) {
    const e = err as Error & { cause?: { code?: string; message?: string } };
    return {
      ok: false,
      error: {
        code: 'NETWORK_ERROR',
        message: `${e.name}: ${e.cause?.code ?? e.cause?.message ?? e.message}`,
        httpStatus: null,
        fieldErrors: null,
      },
    };
  }
  let json: {
    result?: { data: T };
    error?: { message?: string; data?: { code?: string; httpStatus?: number; fieldErrors?: Record<string, string[]> | null } };
  };
  try {
    json = JSON.parse(text);
  } catch {
    return { ok: false, error: { code: `HTTP_${res.status}`, message: text.slice(0, 500), httpStatus: res.status, fieldErrors: null } };
  }
  if (json.error || !json.result) {
    const d = json.error?.data ?? {};
    return {
      ok: false,
      error: {
        code: d.code ?? `HTTP_${res.status}`,
        message: json.error?.message ?? text.slice(0, 500),
        httpStatus: d.httpStatus ?? res.status,
        fieldErrors: d.fieldErrors ?? null,
      },
    };
  }
  return { ok: true, data: json.result.data, httpStatus: res.status };
}

/**
 * Open a subscription (SSE) for up to `ms` and return the events it sent: `connected`, data, or
 * `serialized-error` (with the error's code). The stream is closed afterwards.
 */
export async function openSubscription(
  baseUrl: string,
  proc: string,
  body: string | undefined,
  ms = 600,
): Promise<{ httpStatus: number | null; events: { event: string; data: string }[]; errorCode: string | null; network: string | null }> {
  const ctrl = new AbortController();
  const timer = setTimeout(() => ctrl.abort(), ms);
  let text = '';
  let status: number | null = null;
  let network: string | null = null;
  try {
    const res = await fetch(`${baseUrl}/trpc/${proc}${body === undefined ? '' : `?input=${encodeURIComponent(body)}`}`, {
      signal: ctrl.signal,
      headers: { accept: 'text/event-stream' },
    });
    status = res.status;
    const reader = res.body!.getReader();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      text += Buffer.from(value).toString('utf8');
      if (text.includes('event: serialized-error')) break;
    }
    await reader.cancel().catch(() => {});
  } catch (err) {
    if ((err as Error).name !== 'AbortError') network = (err as Error).message;
  } finally {
    clearTimeout(timer);
    ctrl.abort();
  }
  const events = text
    .split('\n\n')
    .map((block) => {
      const lines = block.split('\n');
      return {
        event: lines.find((l) => l.startsWith('event: '))?.slice(7) ?? 'message',
        data: lines
          .filter((l) => l.startsWith('data: '))
          .map((l) => l.slice(6))
          .join('\n'),
      };
    })
    .filter((e) => e.data || e.event !== 'message');
  const err = events.find((e) => e.event === 'serialized-error');
  let errorCode: string | null = null;
  if (err) {
    try {
      errorCode = JSON.parse(err.data).data?.code ?? 'UNKNOWN';
    } catch {
      errorCode = 'UNPARSABLE';
    }
  } else if (status !== null && status >= 400) {
    try {
      errorCode = JSON.parse(text).error?.data?.code ?? `HTTP_${status}`;
    } catch {
      errorCode = `HTTP_${status}`;
    }
  }
  return { httpStatus: status, events, errorCode, network };
}

// ---------------------------------------------------------------------------------------------
// The server as a child process.

export class StartRefused extends Error {
  constructor(
    message: string,
    readonly output: string,
  ) {
    super(message);
    this.name = 'StartRefused';
  }
}

export interface ServerOptions {
  name: string;
  dataDir: string;
  env: Record<string, string>;
  /** Called when the process ends without us having asked for it. */
  onUnexpectedExit?: (info: { code: number | null; signal: string | null; output: string }) => void;
}

export class ServerProc {
  proc: ChildProcess | null = null;
  port = 0;
  starts = 0;
  kills = 0;
  /** Last lines of output (stdout and stderr), newest last. */
  readonly output: string[] = [];
  private expectingExit = false;
  private exited: Promise<void> = Promise.resolve();

  constructor(readonly opts: ServerOptions) {}

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get alive(): boolean {
    return this.proc !== null && this.proc.exitCode === null && this.proc.signalCode === null;
  }

  get pid(): number | null {
    return this.alive ? (this.proc!.pid ?? null) : null;
  }

  private remember(line: string): void {
    this.output.push(line);
    if (this.output.length > 400) this.output.splice(0, this.output.length - 400);
  }

  /** Start and wait for the "listening" line; StartRefused when it exits first (database down...). */
  async start(timeoutMs = 90_000): Promise<void> {
    if (this.alive) throw new Error(`${this.opts.name} is already running`);
    const env: Record<string, string> = {
      ...(process.env as Record<string, string>),
      HOST: '127.0.0.1',
      TRAINYARD_DATA_DIR: this.opts.dataDir,
      TRAINYARD_NVIDIA_SMI: join(this.opts.dataDir, 'no-nvidia-smi'),
      // DATASET's folder: datasets must be inside a root.
      TRAINYARD_DATASETS_ROOT: dirname(DATASET),
      ...this.opts.env,
      PORT: String(this.port),
    };
    // One process (tsx as a loader, not its CLI wrapper), so SIGKILL really kills the service.
    const proc = spawn(process.execPath, ['--import', 'tsx', MAIN], { cwd: REPO_ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    this.proc = proc;
    this.starts++;
    this.expectingExit = false;
    const startOutput: string[] = [];
    this.exited = new Promise<void>((r) => proc.once('exit', () => r()));
    createInterface({ input: proc.stderr! }).on('line', (l) => {
      this.remember(l);
      startOutput.push(l);
    });
    let listening = false;
    proc.once('exit', (code, signal) => {
      if (listening && !this.expectingExit) this.opts.onUnexpectedExit?.({ code, signal, output: this.output.slice(-40).join('\n') });
    });
    await new Promise<void>((res, rej) => {
      const timer = setTimeout(() => {
        proc.kill('SIGKILL');
        rej(new StartRefused(`${this.opts.name} did not start in ${timeoutMs} ms`, startOutput.join('\n')));
      }, timeoutMs);
      createInterface({ input: proc.stdout! }).on('line', (l) => {
        this.remember(l);
        startOutput.push(l);
        if (l.startsWith('{"trainyard":"listening"')) {
          clearTimeout(timer);
          listening = true;
          this.port = JSON.parse(l).port;
          res();
        }
      });
      proc.once('exit', (code) => {
        clearTimeout(timer);
        if (!listening) rej(new StartRefused(`${this.opts.name} exited with ${code} before listening`, startOutput.join('\n')));
      });
    });
  }

  /** Start, retrying while it refuses (e.g. the database is down), up to `timeoutMs`. */
  async startEventually(timeoutMs: number, onRefused?: (err: StartRefused) => void): Promise<void> {
    const until = Date.now() + timeoutMs;
    for (let delay = 250; ; delay = Math.min(delay * 2, 2000)) {
      try {
        return await this.start();
      } catch (err) {
        if (!(err instanceof StartRefused) || Date.now() > until) throw err;
        onRefused?.(err);
        // The port we held may have been taken meanwhile: take any.
        if (/port is in use/.test(err.output)) this.port = 0;
        await new Promise((r) => setTimeout(r, delay));
      }
    }
  }

  /** Kill (SIGKILL by default) and wait until the process is gone. */
  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    if (!this.alive) return;
    this.expectingExit = true;
    if (signal === 'SIGKILL') this.kills++;
    this.proc!.kill(signal);
    await this.exited;
  }

  /** SIGTERM, then SIGKILL if it has not stopped within `graceMs`. */
  async stop(graceMs = 15_000): Promise<void> {
    if (!this.alive) return;
    this.expectingExit = true;
    this.proc!.kill('SIGTERM');
    const done = await Promise.race([this.exited.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), graceMs))]);
    if (!done) {
      this.proc!.kill('SIGKILL');
      await this.exited;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Trainer and shepherd processes of a data folder, from /proc.

export interface OurProcess {
  pid: number;
  startTime: string;
  kind: 'trainer' | 'shepherd';
  taskId: string;
}

function readText(file: string): string | null {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return null;
  }
}

function under(path: string, roots: readonly string[]): boolean {
  return roots.some((r) => path.startsWith(r.endsWith(sep) ? r : r + sep));
}

/**
 * Live (non-zombie) trainers and shepherds whose run folder is under one of `dataDirs`.
 * A trainer is told by its environment (TRAINYARD_TASK_ID, TRAINYARD_TASK_SPEC in a run folder);
 * a shepherd by its argv (shepherd.mjs <runDir>), or a standby handed a run by its cwd.
 */
export function scanProcesses(dataDirs: readonly string[]): OurProcess[] {
  const out: OurProcess[] = [];
  let pids: string[];
  try {
    pids = readdirSync('/proc').filter((p) => /^\d+$/.test(p));
  } catch {
    return out;
  }
  for (const p of pids) {
    const pid = Number(p);
    if (pid === process.pid) continue;
    const cmdline = readText(`/proc/${pid}/cmdline`);
    if (!cmdline) continue;
    const argv = cmdline.split('\0');
    const stat = readProcStat(pid);
    if (!stat || stat.state === 'Z' || stat.state === 'X') continue;
    const shepherdAt = argv.findIndex((a) => a.endsWith('shepherd.mjs'));
    if (shepherdAt >= 0) {
      let runDir = argv[shepherdAt + 1] ?? '';
      if (runDir === '--standby') {
        // A standby shepherd names no folder: once handed a run it works in it (its cwd, with a
        // launch.json). One still waiting (cwd: the runs folder) holds nothing and exits with
        // its service, so it is not counted.
        let cwd = '';
        try {
          cwd = readlinkSync(`/proc/${pid}/cwd`);
        } catch {
          /* gone */
        }
        runDir = cwd && existsSync(join(cwd, 'launch.json')) ? cwd : '';
      }
      if (under(runDir, dataDirs)) {
        const parts = runDir.split(sep);
        out.push({ pid, startTime: stat.startTime, kind: 'shepherd', taskId: parts[parts.length - 2] ?? '?' });
      }
      continue;
    }
    // Trainers: anything started by a shepherd of ours carries the task's spec path.
    const environ = readText(`/proc/${pid}/environ`);
    if (!environ || !environ.includes('TRAINYARD_TASK_SPEC=')) continue;
    const env = new Map(
      environ
        .split('\0')
        .filter(Boolean)
        .map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)] as const),
    );
    const spec = env.get('TRAINYARD_TASK_SPEC') ?? '';
    if (!under(spec, dataDirs)) continue;
    out.push({ pid, startTime: stat.startTime, kind: 'trainer', taskId: env.get('TRAINYARD_TASK_ID') ?? '?' });
  }
  // Warm trainers (started in standby, handed their task on stdin) never carry the task in their
  // environment as /proc shows it: the run folder's trainer.json names them (`warm: true`). One
  // still waiting holds nothing and exits with its standby shepherd, so it is not counted.
  for (const dataDir of dataDirs) {
    const runs = join(dataDir, 'runs');
    let tasks: string[] = [];
    try {
      tasks = readdirSync(runs);
    } catch {
      continue;
    }
    for (const taskId of tasks) {
      let attempts: string[] = [];
      try {
        attempts = readdirSync(join(runs, taskId)).filter((a) => a.startsWith('attempt-'));
      } catch {
        continue;
      }
      for (const attempt of attempts) {
        const text = readText(join(runs, taskId, attempt, 'trainer.json'));
        if (!text) continue;
        let info: { pid?: unknown; startTime?: unknown; warm?: unknown };
        try {
          info = JSON.parse(text) as typeof info;
        } catch {
          continue;
        }
        if (info.warm !== true || typeof info.pid !== 'number' || typeof info.startTime !== 'string') continue;
        if (out.some((o) => o.pid === info.pid) || !isSameProcessAlive(info.pid, info.startTime)) continue;
        out.push({ pid: info.pid, startTime: info.startTime, kind: 'trainer', taskId });
      }
    }
  }
  return out;
}

export function stillAlive(p: Pick<OurProcess, 'pid' | 'startTime'>): boolean {
  return isSameProcessAlive(p.pid, p.startTime);
}

/** SIGKILL every trainer and shepherd of these data folders (cleanup). Returns how many. */
export function killAllUnder(dataDirs: readonly string[]): number {
  let n = 0;
  for (let round = 0; round < 3; round++) {
    const procs = scanProcesses(dataDirs);
    if (!procs.length) break;
    for (const p of procs) {
      try {
        process.kill(p.pid, 'SIGKILL');
        n++;
      } catch {
        /* gone */
      }
    }
  }
  return n;
}

// Starts the real service as a child process, the way `npm start` runs it (node with tsx as a
// loader), on a port chosen up front, and measures how long it takes from spawn to the first
// answered request. Also stops it and whatever trainers it left behind (shepherds are detached).
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { connect, type TrainyardClient } from '@trainyard/client';
import { DATASET, dropSchema, onCleanup, processMemory, removeDir, REPO_ROOT, sleep } from './common';
import { freePort } from '@trainyard/server/testing';

/** Extra node flags for every server started (run.ts --cpu-prof DIR sets --cpu-prof flags). */
let extraNodeArgs: string[] = [];
export function setServerNodeArgs(args: string[]): void {
  extraNodeArgs = args;
}

/** The checkout whose service is started (run.ts --server-root DIR: before/after comparisons). */
let serverRoot = REPO_ROOT;
export function setServerRoot(dir: string): void {
  serverRoot = dir;
}
/** The checkout under test: its service, and its `npm run rebuild` (lib/rebuild.ts). */
export function getServerRoot(): string {
  return serverRoot;
}

export type Backend = { kind: 'postgres'; url: string; schema: string } | { kind: 'pglite' };

export interface ServerOptions {
  backend: Backend;
  /** Data folder (runs, PGlite files); a fresh temp folder when absent. */
  dataDir?: string;
  /** Extra environment (TRAINYARD_GPU_SLOTS, TRAINYARD_TRAINER, ...). */
  env?: Record<string, string>;
  /** Drop the schema / remove the data folder on dispose (default true). */
  ownData?: boolean;
}

interface StartupTimes {
  /** When it was spawned (performance.now() of the bench process). */
  spawnedAt: number;
  /** Spawn to the `listening` line on stdout. */
  listeningMs: number;
  /** Spawn to the first answered system.health over HTTP. */
  firstResponseMs: number;
}

export interface BenchServer {
  url: string;
  port: number;
  pid: number;
  dataDir: string;
  backend: Backend;
  client: TrainyardClient;
  startup: StartupTimes;
  output: string[];
  memory(): { rssMiB: number; peakMiB: number } | null;
  /** SIGTERM (graceful) and wait for the process to end. */
  stop(): Promise<void>;
  /** Stop, kill leftover trainers, remove the data folder and drop the schema (if owned). */
  dispose(): Promise<void>;
}

function serverEnv(opts: ServerOptions, dataDir: string, port: number): Record<string, string> {
  const env: Record<string, string> = {};
  // The bench's own environment less anything that would point the service elsewhere.
  for (const [k, v] of Object.entries(process.env)) {
    if (v === undefined || k === 'DATABASE_URL' || k.startsWith('TRAINYARD_') || k.startsWith('npm_')) continue;
    env[k] = v;
  }
  Object.assign(env, {
    PORT: String(port),
    HOST: '127.0.0.1',
    TRAINYARD_DATA_DIR: dataDir,
    // No GPU probing: nvidia-smi is absent here, and a probe would add noise.
    TRAINYARD_NVIDIA_SMI: join(dataDir, 'no-nvidia-smi'),
    TRAINYARD_GPU_SLOTS: '1',
    // DATASET's folder: datasets must be inside a root.
    TRAINYARD_DATASETS_ROOT: dirname(DATASET),
    // No warm trainers unless a benchmark asks for them (warm-start does): the others measure
    // the path they measured before them (idle-gap: to the next trainer's process start).
    TRAINYARD_WARM_TRAINER_IDLE_MS: '0',
    ...opts.env,
  });
  if (opts.backend.kind === 'postgres') {
    env.DATABASE_URL = opts.backend.url;
    env.TRAINYARD_DB_SCHEMA = opts.backend.schema;
  }
  return env;
}

export async function startServer(opts: ServerOptions): Promise<BenchServer> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await startOnce(opts);
    } catch (err) {
      // A port picked up front can be taken by someone else before the server binds it.
      if (attempt < 3 && /EADDRINUSE|port is in use/.test((err as Error).message)) continue;
      throw err;
    }
  }
}

async function startOnce(opts: ServerOptions): Promise<BenchServer> {
  const dataDir = opts.dataDir ?? mkdtempSync(join(tmpdir(), 'trainyard-bench-'));
  const port = await freePort();
  const env = serverEnv(opts, dataDir, port);
  const url = `http://127.0.0.1:${port}`;
  const client = await connect({ url, user: 'bench' });
  const t0 = performance.now();
  // One process (tsx as a loader, not its CLI wrapper), so the pid is the service's.
  const proc: ChildProcess = spawn(
    process.execPath,
    [...extraNodeArgs, '--import', 'tsx', join(serverRoot, 'services/server/src/main.ts')],
    {
      cwd: serverRoot,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  const output: string[] = [];
  const keep = (l: string) => {
    output.push(l);
    if (output.length > 400) output.splice(0, output.length - 300);
  };
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  let listeningMs = NaN;
  createInterface({ input: proc.stderr! }).on('line', keep);
  createInterface({ input: proc.stdout! }).on('line', (l) => {
    keep(l);
    if (Number.isNaN(listeningMs) && l.startsWith('{"trainyard":"listening"')) listeningMs = performance.now() - t0;
  });
  let exitCode: number | null | undefined;
  proc.once('exit', (code) => (exitCode = code));

  const server: BenchServer = {
    url,
    port,
    pid: proc.pid!,
    dataDir,
    backend: opts.backend,
    client,
    startup: { spawnedAt: t0, listeningMs: NaN, firstResponseMs: NaN },
    output,
    memory: () => processMemory(proc.pid!),
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
      const timer = setTimeout(() => proc.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    },
    dispose: async () => undefined,
  };
  const unregister = onCleanup(async () => {
    await server.stop().catch(() => {});
    // Killed trainers' shepherds still write exit.json: let them finish before removing the folder.
    const killed = killTrainersUnder(dataDir);
    for (const until = Date.now() + 5000; killed.some((dir) => !existsSync(join(dir, 'exit.json'))) && Date.now() < until;) await sleep(50);
    if (opts.ownData !== false) {
      if (opts.backend.kind === 'postgres') {
        await dropSchema(opts.backend.url, opts.backend.schema).catch((err: Error) =>
          console.error(`[bench] could not drop schema ${opts.backend.kind === 'postgres' ? opts.backend.schema : ''}: ${err.message}`),
        );
      }
      removeDir(dataDir);
    }
  });
  server.dispose = unregister;

  // Poll the port: the first answered request is what a user would see.
  const deadline = Date.now() + 120_000;
  for (;;) {
    if (exitCode !== undefined) {
      await unregister();
      throw new Error(`server exited with ${exitCode} before answering:\n${output.slice(-40).join('\n')}`);
    }
    try {
      const h = await client.system.health.query();
      if (h.ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      await unregister();
      throw new Error(`server did not answer within 120 s:\n${output.slice(-40).join('\n')}`);
    }
    await sleep(5);
  }
  server.startup = { spawnedAt: t0, listeningMs, firstResponseMs: performance.now() - t0 };
  return server;
}

/**
 * Kill every trainer still running from a data folder: each run folder names its trainer's pid
 * and start time (trainer.json); a run with exit.json has ended. Only a process with that exact
 * pid and start time is killed (its process group: the trainer leads one), then its shepherd
 * records the exit and ends by itself. Returns the run folders of the trainers killed.
 */
function killTrainersUnder(dataDir: string): string[] {
  const runs = join(dataDir, 'runs');
  if (!existsSync(runs)) return [];
  const killed: string[] = [];
  for (const task of readdirSync(runs)) {
    const taskDir = join(runs, task);
    let attempts: string[];
    try {
      attempts = readdirSync(taskDir).filter((a) => a.startsWith('attempt-'));
    } catch {
      continue;
    }
    for (const a of attempts) {
      const dir = join(taskDir, a);
      if (existsSync(join(dir, 'exit.json'))) continue;
      let info: { pid?: number; startTime?: string | null };
      try {
        info = JSON.parse(readFileSync(join(dir, 'trainer.json'), 'utf8'));
      } catch {
        continue;
      }
      if (!info.pid || !info.startTime || procStartTime(info.pid) !== info.startTime) continue;
      try {
        process.kill(-info.pid, 'SIGKILL');
        killed.push(dir);
      } catch {
        // gone meanwhile
      }
    }
  }
  return killed;
}

function procStartTime(pid: number): string | null {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return (
      text
        .slice(text.lastIndexOf(')') + 1)
        .trim()
        .split(/\s+/)[22 - 3] ?? null
    );
  } catch {
    return null;
  }
}

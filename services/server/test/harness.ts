// The test kit, imported as `@trainyard/server/testing` by any package's specs: runs the real
// server as a child process (as `npm start` does) on a free port, against PGlite in a temp
// folder or a fresh schema on the test Postgres, and gives a typed client for it.
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { connect, type TrainyardClient } from '@trainyard/client';
import { dropSchema, freshSchemaName, seedMigratedPglite, type Backend } from '@trainyard/store/testing';
import { killAllUnder } from './torture/procs';

export { installFakeNvidiaSmi, NVIDIA_SMI_FIXTURES, type FakeNvidiaSmi, type FakeNvidiaSmiFiles } from './fake-nvidia-smi';

export const REPO_ROOT = resolve(import.meta.dirname, '../../..');
export const DATASET = join(REPO_ROOT, 'examples/tiny-dataset.jsonl');
/** The datasets root specs' servers get by default: the repository's examples (DATASET). */
const EXAMPLES_ROOT = join(REPO_ROOT, 'examples');
const MAIN = join(REPO_ROOT, 'services/server/src/main.ts');

export interface ServerOptions {
  backend: Backend;
  env?: Record<string, string>;
  /** Reuse a data folder / schema (to restart "the same" service). */
  dataDir?: string;
  schema?: string;
  port?: number;
  /** How long to wait for it to listen (default 60 s; a loaded machine may need more). */
  startTimeoutMs?: number;
  /**
   * PGlite in a data folder without a database: let the service create and migrate it, as on a
   * new machine. By default the folder gets a copy of one already migrated (seedMigratedPglite).
   */
  newDatabase?: boolean;
}

export interface RunningServer {
  url: string;
  port: number;
  proc: ChildProcess;
  dataDir: string;
  schema: string | null;
  client: TrainyardClient;
  output: string[];
  /** Stop gracefully (SIGTERM) or crash it (SIGKILL); resolves when the process is gone. */
  stop(signal?: NodeJS.Signals): Promise<void>;
  /** Start the same service again (same data, schema and port). */
  restart(extraEnv?: Record<string, string>): Promise<RunningServer>;
  /** Stop and remove its data (and schema). */
  dispose(): Promise<void>;
}

export async function startServer(opts: ServerOptions): Promise<RunningServer> {
  const dataDir = opts.dataDir ?? mkdtempSync(join(tmpdir(), 'trainyard-e2e-'));
  if (opts.backend.kind === 'pglite' && !opts.newDatabase) await seedMigratedPglite(dataDir);
  const schema = opts.backend.kind === 'postgres' ? (opts.schema ?? freshSchemaName()) : null;
  const env: Record<string, string> = {
    ...(process.env as Record<string, string>),
    PORT: String(opts.port ?? 0),
    HOST: '127.0.0.1',
    TRAINYARD_DATA_DIR: dataDir,
    TRAINYARD_POLL_MS: '100',
    // No nvidia-smi here unless a spec puts a fake one on PATH.
    TRAINYARD_NVIDIA_SMI: join(dataDir, 'no-nvidia-smi'),
    TRAINYARD_DATASETS_ROOT: EXAMPLES_ROOT,
    ...opts.env,
  };
  delete env.DATABASE_URL;
  if (opts.backend.kind === 'postgres') {
    env.DATABASE_URL = opts.backend.url!;
    env.TRAINYARD_DB_SCHEMA = schema!;
  }
  // One process (tsx as a loader, not its CLI wrapper), so SIGKILL really kills the service.
  const proc = spawn(process.execPath, ['--import', 'tsx', MAIN], { cwd: REPO_ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  const output: string[] = [];
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  createInterface({ input: proc.stderr! }).on('line', (l) => output.push(l));
  const port = await new Promise<number>((res, rej) => {
    const wait = opts.startTimeoutMs ?? 60_000;
    const timer = setTimeout(() => rej(new Error(`server did not start in ${wait / 1000} s:\n${output.join('\n')}`)), wait);
    createInterface({ input: proc.stdout! }).on('line', (l) => {
      output.push(l);
      if (l.startsWith('{"trainyard":"listening"')) {
        clearTimeout(timer);
        res(JSON.parse(l).port);
      }
    });
    proc.once('exit', (code) => {
      clearTimeout(timer);
      rej(new Error(`server exited with ${code} before listening:\n${output.join('\n')}`));
    });
  });
  const url = `http://127.0.0.1:${port}`;
  const client = await connect({ url, user: 'e2e' });
  const server: RunningServer = {
    url,
    port,
    proc,
    dataDir,
    schema,
    client,
    output,
    async stop(signal = 'SIGTERM') {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      await exited;
    },
    async restart(extraEnv = {}) {
      await server.stop('SIGKILL');
      return startServer({ ...opts, dataDir, schema: schema ?? undefined, port, env: { ...opts.env, ...extraEnv } });
    },
    async dispose() {
      await server.stop('SIGKILL');
      killRunsUnder(dataDir);
      rmSync(dataDir, { recursive: true, force: true });
      if (schema && opts.backend.url) await dropSchema(opts.backend.url, schema);
    },
  };
  return server;
}

/**
 * Where a service a spec prepares before starting it (users, tokens) keeps its data: a new data
 * folder, on Postgres a fresh schema, and the environment that names them (for the CLI, for
 * storageFromEnv, for startServer's dataDir and schema). On PGlite the folder already holds a
 * migrated database.
 */
export async function newServiceData(
  backend: Backend,
  prefix: string,
): Promise<{ dataDir: string; schema: string | undefined; env: Record<string, string> }> {
  const dataDir = mkdtempSync(join(tmpdir(), prefix));
  const schema = backend.kind === 'postgres' ? freshSchemaName() : undefined;
  if (backend.kind === 'pglite') await seedMigratedPglite(dataDir);
  return {
    dataDir,
    schema,
    env: { TRAINYARD_DATA_DIR: dataDir, ...(schema ? { DATABASE_URL: backend.url!, TRAINYARD_DB_SCHEMA: schema } : {}) },
  };
}

/** A TCP port free on 127.0.0.1 right now (for servers that must keep one port across restarts). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/** Kill every shepherd and trainer still running from a test's data folder (they are detached). */
export function killRunsUnder(dataDir: string): void {
  killAllUnder([dataDir]);
}

/** Poll `fn` until it returns a truthy value (or time out with the last value in the message). */
export async function eventually<T>(fn: () => Promise<T>, what: string, timeoutMs = 30_000, everyMs = 100): Promise<NonNullable<T>> {
  const until = Date.now() + timeoutMs;
  let last: T | undefined;
  let lastErr: unknown;
  for (;;) {
    try {
      last = await fn();
      if (last) return last as NonNullable<T>;
    } catch (err) {
      lastErr = err;
    }
    if (Date.now() > until)
      throw new Error(
        `timed out waiting for ${what}; last value ${JSON.stringify(last)}${lastErr ? `, last error ${(lastErr as Error).message}` : ''}`,
      );
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

export const simulated = (sim: Record<string, unknown>, over: Record<string, unknown> = {}) => ({
  model: 'Qwen/Qwen2.5-Coder-0.5B-Instruct',
  datasetPath: DATASET,
  config: { epochs: 1, simulate: sim },
  ...over,
});

// A private, throw-away Postgres cluster for the torture runs: restarting Postgres mid-run must
// not disturb anyone else's tests on the shared cluster. `initdb` into a temp folder, trust auth,
// its own port and socket folder; start / stop / restart / destroy are ours alone.
// As root the cluster runs as the `postgres` user (initdb refuses root); otherwise as ourselves.
import { execFile } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort } from '../harness';

const run = promisify(execFile);

export interface PgCluster {
  url: string;
  port: number;
  dir: string;
  /** Stop the server: `fast` (disconnect clients, clean shutdown) or `immediate` (like a crash). */
  stop(mode?: 'fast' | 'immediate'): Promise<void>;
  start(): Promise<void>;
  restart(mode?: 'fast' | 'immediate'): Promise<void>;
  isUp(): Promise<boolean>;
  /** Stop it and remove its files. Safe to call twice. */
  destroy(): Promise<void>;
  logTail(lines?: number): string;
}

/** Where the Postgres server binaries are (pg_ctl, initdb), or null. */
function findPgBin(): string | null {
  const env = process.env.TRAINYARD_PG_BIN;
  if (env && existsSync(join(env, 'pg_ctl'))) return env;
  const root = '/usr/lib/postgresql';
  if (existsSync(root)) {
    const versions = readdirSync(root)
      .filter((v) => existsSync(join(root, v, 'bin', 'pg_ctl')))
      .sort((a, b) => Number(b) - Number(a));
    if (versions[0]) return join(root, versions[0], 'bin');
  }
  return null;
}

function postgresIds(): { uid: number; gid: number } | null {
  if (process.getuid?.() !== 0) return null;
  const line = readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .find((l) => l.startsWith('postgres:'));
  if (!line) throw new Error('running as root but there is no postgres user to run a cluster as');
  const [, , uid, gid] = line.split(':');
  return { uid: Number(uid), gid: Number(gid) };
}

/**
 * Create and start a private cluster. Throws (with the reason) when that is impossible here:
 * no Postgres binaries, no postgres user as root, initdb failing.
 */
export async function createPgCluster(opts: { log?: (m: string) => void } = {}): Promise<PgCluster> {
  const bin = findPgBin();
  if (!bin) throw new Error('no Postgres server binaries found (looked in /usr/lib/postgresql/*/bin; set TRAINYARD_PG_BIN)');
  const ids = postgresIds();
  const dir = mkdtempSync(join(tmpdir(), 'trainyard-pg-'));
  chmodSync(dir, 0o755);
  const data = join(dir, 'data');
  const sock = join(dir, 'sock');
  mkdirSync(data, { mode: 0o700 });
  mkdirSync(sock, { mode: 0o755 });
  if (ids) for (const p of [dir, data, sock]) chownSync(p, ids.uid, ids.gid);
  const logFile = join(dir, 'postgres.log');
  const port = await freePort();
  // As root, run the binaries as the postgres user.
  const exec = (file: string, args: string[], timeout = 60_000) =>
    ids ? run('runuser', ['-u', 'postgres', '--', join(bin, file), ...args], { timeout }) : run(join(bin, file), args, { timeout });

  const destroyed = { value: false };
  const pgctl = async (args: string[], timeout = 60_000) => {
    try {
      return await exec('pg_ctl', ['-D', data, ...args], timeout);
    } catch (err) {
      const e = err as { stderr?: string; stdout?: string; message: string };
      throw new Error(`pg_ctl ${args.join(' ')} failed: ${e.stderr || e.stdout || e.message}`, { cause: err });
    }
  };
  const start = async () => {
    await pgctl([
      '-w',
      '-t',
      '60',
      '-l',
      logFile,
      '-o',
      `-p ${port} -k ${sock} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200`,
      'start',
    ]);
  };
  const stop = async (mode: 'fast' | 'immediate' = 'fast') => {
    await pgctl(['-w', '-t', '60', '-m', mode, 'stop']);
  };
  const isUp = async () => {
    try {
      await exec('pg_isready', ['-q', '-h', '127.0.0.1', '-p', String(port)], 10_000);
      return true;
    } catch {
      return false;
    }
  };

  try {
    await exec('initdb', ['-D', data, '-A', 'trust', '-U', 'postgres', '--no-sync', '-E', 'UTF8', '--locale=C'], 120_000);
    await start();
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`could not create a private Postgres cluster: ${(err as Error).message}`, { cause: err });
  }
  opts.log?.(`private Postgres cluster on port ${port} in ${data}`);
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    port,
    dir,
    stop,
    start,
    async restart(mode = 'fast') {
      await stop(mode);
      await start();
    },
    isUp,
    async destroy() {
      if (destroyed.value) return;
      destroyed.value = true;
      await stop('immediate').catch(() => {});
      rmSync(dir, { recursive: true, force: true });
    },
    logTail(lines = 20) {
      try {
        return readFileSync(logFile, 'utf8').trim().split('\n').slice(-lines).join('\n');
      } catch {
        return '';
      }
    },
  };
}

// What the CLI says about input it cannot use, end to end (the real server, PGlite; the real bin
// as a child process): an unknown status names the statuses there are, a date alone is that day's
// start, and a --url whose path holds no Trainyard service says so rather than asking whether
// the service runs.
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backends } from '@trainyard/store/testing';
import { REPO_ROOT, startServer, type RunningServer } from '@trainyard/server/testing';

const BIN = join(REPO_ROOT, 'packages/cli/bin/trainyard.mjs');
const backend = backends().find((b) => b.kind === 'pglite')!;

function cli(url: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      [BIN, ...args],
      { cwd: REPO_ROOT, env: { ...process.env, TRAINYARD_URL: url }, timeout: 120_000 },
      (err, stdout, stderr) => {
        if (err && typeof err.code !== 'number') return reject(err);
        resolve({ code: err ? (err.code as number) : 0, stdout, stderr });
      },
    );
  });
}

describe('trainyard CLI: input it cannot use (PGlite)', { timeout: 120_000 }, () => {
  let s: RunningServer;
  beforeAll(async () => {
    s = await startServer({ backend });
  }, 120_000);
  afterAll(async () => {
    await s?.dispose();
  });

  it('--status: an unknown status is named, with the statuses there are', async () => {
    const r = await cli(s.url, ['ls', '--status', 'queued,RUNNING']);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(
      'error: --status: RUNNING is not a status (a running task is PREPARING or TRAINING); the statuses are PENDING, QUEUED, PREPARING, TRAINING, COMPLETED, FAILED, CANCELLED\n',
    );
    expect((await cli(s.url, ['ls', '--status', 'queued'])).code).toBe(0);
  });

  it('--from / --to: a date alone is the start of that day; a date that is not one is refused', async () => {
    const r = await cli(s.url, ['events', '--from', '2020-01-31', '--to', '2020-02-01']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe('no events match\n');
    const bad = await cli(s.url, ['events', '--from', '2020-02-30']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('"2020-02-30" is not a date: give YYYY-MM-DD, an ISO 8601 time or a duration ago like 1h');
  });

  it('--url with a path where no Trainyard service answers says so', async () => {
    const r = await cli(`${s.url}/not-here`, ['ls']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`is ${s.url}/not-here a Trainyard service? check --url / TRAINYARD_URL`);
    expect(r.stderr).not.toContain('is it running?');
  });
});

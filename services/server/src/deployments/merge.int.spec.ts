// runMerge with real processes under the real shepherd (the merge program is a small Node script
// at the edge here; merge_adapter.py itself is specified in test/merge-adapter.int.spec.ts): a
// merge still running when the service starts again is waited for, not started twice; a stop
// ends it; a merge that fails says why with its last lines.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readTrainerInfo } from '../trainer/run-folder';
import { isSameProcessAlive } from '../trainer/proc';
import { runMerge, type MergeJob } from './merge';

// Waits for `release` beside --out, then writes --out (or fails with exit 2 when told to).
const SCRIPT = `
const fs = require('node:fs'), path = require('node:path');
const out = process.argv[process.argv.indexOf('--out') + 1];
fs.appendFileSync(path.join(path.dirname(out), 'starts'), 'x');
if (process.env.MERGE_FAIL) { console.error('cannot merge: ' + process.env.MERGE_FAIL); process.exit(2); }
const t = setInterval(() => {
  if (!fs.existsSync(path.join(path.dirname(out), 'release'))) return;
  clearInterval(t);
  fs.mkdirSync(out);
  fs.writeFileSync(path.join(out, 'config.json'), '{}');
}, 50);
`;

describe('runMerge', () => {
  let root: string;
  beforeAll(() => {
    root = mkdtempSync(join(tmpdir(), 'trainyard-run-merge-'));
  });
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  const job = (name: string, over: Partial<MergeJob> = {}): MergeJob => {
    mkdirSync(join(root, name), { recursive: true });
    return {
      argv: [process.execPath, '-e', SCRIPT, '--'],
      cwd: root,
      env: { PATH: process.env.PATH ?? '' },
      runDir: join(root, name, 'merge'),
      base: 'base-model',
      adapter: '/adapter',
      out: join(root, name, 'merged'),
      pollMs: 50,
      log: { info: () => {} },
      stillWanted: async () => true,
      ...over,
    };
  };
  const starts = (name: string) => (existsSync(join(root, name, 'starts')) ? readFileSync(join(root, name, 'starts'), 'utf8').length : 0);

  it('a merge already running (a service started again meanwhile) is waited for, not started again', async () => {
    const first = runMerge(job('again'));
    await expect.poll(() => starts('again'), { timeout: 10_000 }).toBe(1);
    // The service starts again: the same deployment, the same folders.
    const second = runMerge(job('again'));
    await new Promise((r) => setTimeout(r, 300));
    writeFileSync(join(root, 'again', 'release'), '');
    expect(await second).toEqual({ ok: true });
    expect(await first).toEqual({ ok: true });
    expect(starts('again')).toBe(1);
    // Done: a third call finds the folder and runs nothing.
    expect(await runMerge(job('again'))).toEqual({ ok: true });
    expect(starts('again')).toBe(1);
  });

  it('a stopped deployment ends its merge', async () => {
    let wanted = true;
    const merging = runMerge(job('stop', { stillWanted: async () => wanted }));
    await expect.poll(() => starts('stop'), { timeout: 10_000 }).toBe(1);
    const info = (await readTrainerInfo(join(root, 'stop', 'merge')))!;
    wanted = false;
    expect(await merging).toEqual({ ok: false, message: 'stopped while merging' });
    await expect.poll(() => isSameProcessAlive(info.pid, info.startTime), { timeout: 10_000 }).toBe(false);
    expect(existsSync(join(root, 'stop', 'merged'))).toBe(false);
  });

  it('a merge that fails: its exit and its last lines', async () => {
    const outcome = await runMerge(job('fail', { env: { PATH: process.env.PATH ?? '', MERGE_FAIL: 'no adapter here' } }));
    expect(outcome).toEqual({ ok: false, message: 'the adapter merge failed (exit code 2): cannot merge: no adapter here' });
  });
});

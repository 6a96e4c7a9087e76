// `trainyard submit --follow` in a real terminal (a pty from script(1)) at 60 and 160 columns:
// the progress bar is redrawn in place and never wider than the terminal, and when the service is
// killed and started again mid-run the follow says so on a line of its own, reconnects, draws the
// bar again below and ends with the task's outcome (exit 0), not a crash. The real server
// (PGlite, the simulated trainer, which outlives the restart) and the real bin.
import { spawn, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backends, skipLoudlyOrFail } from '@trainyard/store/testing';
import { DATASET, REPO_ROOT, startServer, type RunningServer } from '@trainyard/server/testing';

const BIN = join(REPO_ROOT, 'packages/cli/bin/trainyard.mjs');
const backend = backends().find((b) => b.kind === 'pglite')!;
const hasScript = spawnSync('script', ['--version']).status === 0;
if (!hasScript) skipLoudlyOrFail('script(1) not found: the CLI terminal specs cannot run', 'apt-get install bsdutils (util-linux)');

/** What the terminal would show as separate redraws: split at carriage returns and newlines, control sequences removed. */
function screenLines(raw: string): string[] {
  return raw
    .replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '')
    .split(/\r\n|\r|\n/)
    .filter((l) => l.length > 0);
}

describe.skipIf(!hasScript)('trainyard submit --follow in a terminal', { timeout: 300_000 }, () => {
  let s: RunningServer;
  beforeAll(async () => {
    s = await startServer({ backend });
  });
  afterAll(async () => {
    await s?.dispose();
  });

  for (const columns of [60, 160]) {
    it(`at ${columns} columns: the bar fits, and a restart of the service is said and survived`, async () => {
      const sim = JSON.stringify({ steps: 40, stepMs: 250 });
      const cmd = [
        process.execPath,
        BIN,
        'submit',
        '--model',
        'Qwen/Qwen2.5-Coder-0.5B-Instruct',
        '--dataset',
        DATASET,
        '--epochs',
        '1',
        '--simulate',
        sim,
        '--name',
        `follow-${columns}`,
        '--follow',
      ]
        .map((a) => `'${a.replace(/'/g, `'\\''`)}'`)
        .join(' ');
      const child = spawn('script', ['-qfec', `stty cols ${columns} rows 40; exec ${cmd}`, '/dev/null'], {
        cwd: REPO_ROOT,
        env: { ...process.env, TRAINYARD_URL: s.url, TRAINYARD_USER: 'cli-follow', TERM: 'xterm', COLUMNS: String(columns) },
        stdio: ['pipe', 'pipe', 'pipe'],
      });
      let raw = '';
      child.stdout.on('data', (b: Buffer) => (raw += b.toString('utf8')));
      child.stderr.on('data', (b: Buffer) => (raw += b.toString('utf8')));
      const exited = new Promise<number>((r) => child.once('exit', (code) => r(code ?? -1)));
      // Once it trains, kill the service and start it again on the same port and data.
      const until = Date.now() + 60_000;
      while (!/TRAINING \[/.test(raw) && Date.now() < until) await new Promise((r) => setTimeout(r, 100));
      expect(raw, raw).toMatch(/TRAINING \[/);
      s = await s.restart();
      const code = await exited;
      const lines = screenLines(raw);
      expect(code, raw).toBe(0);
      // Every redraw of the bar fits the terminal (one column spare: no wrap at the last one); messages are plain lines.
      const bars = lines.filter((l) => /^[A-Z]+(?: \(stopping\))? \[/.test(l));
      expect(bars.length, raw).toBeGreaterThan(2);
      for (const l of bars) expect(l.length, JSON.stringify(l)).toBeLessThan(columns);
      // The loss of the connection and its return each on a line of their own, the bar again after.
      const lost = lines.indexOf('lost the connection to the server; reconnecting');
      expect(lost, raw).toBeGreaterThan(0);
      const back = lines.indexOf('connection is back');
      expect(back, raw).toBeGreaterThan(lost);
      expect(
        lines.slice(back + 1).some((l) => /^(TRAINING|COMPLETED) \[/.test(l)),
        raw,
      ).toBe(true);
      expect(lines.at(-1), raw).toMatch(/COMPLETED/);
      if (columns === 160)
        expect(
          lines.some((l) => /^TRAINING \[[█░]{30}\] \d+% epoch \d+\/1 step \d+\/40 loss \S+ {2}\d+:\d\d$/.test(l)),
          raw,
        ).toBe(true);
    });
  }
});

// Trainer output shown on a real terminal (issue 10, finding 7): a trainer prints escape
// sequences (colours, OSC 52 that writes the clipboard, OSC 8 links, C0/C1 controls), and the
// `trainyard` bin, run under a pseudo-terminal (util-linux `script`), shows its lines with every
// one of them removed: `logs`, `logs -f` and `show` (a failed task's last lines). Piped, the same
// commands give the lines as stored, so the spec also sees that the trainer did send them.
import { execFile, execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isTerminal } from '@trainyard/client';
import { backends, skipLoudlyOrFail } from '@trainyard/store/testing';
import { eventually, REPO_ROOT, simulated, startServer, type RunningServer } from '@trainyard/server/testing';

const BIN = join(REPO_ROOT, 'packages/cli/bin/trainyard.mjs');
const backend = backends().find((b) => b.kind === 'pglite')!;
/** What the simulated trainer's hostile output sends to a terminal (trainers/simulated-trainer.mjs). */
const OSC52 = '\u001b]52;c;ZXZpbA==\u0007';
const OSC8 = '\u001b]8;;https://evil.example\u001b\\';
/** Anything a terminal acts on: ESC, BEL, BS, CR (but the pty's own CRLF), C1 controls. */
const CONTROLS = /[\u0000-\u0008\u000b-\u000c\u000e-\u001f\u007f-\u009f]|\r(?!\n)/;

let hasScript = true;
try {
  execFileSync('script', ['--version'], { stdio: 'ignore' });
} catch {
  hasScript = false;
  skipLoudlyOrFail("util-linux's `script` is missing: the CLI's terminal spec cannot run", 'apt-get install bsdutils');
}

interface Run {
  code: number;
  stdout: string;
}

function run(file: string, args: string[], url: string): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      file,
      args,
      {
        cwd: REPO_ROOT,
        env: { ...process.env, TRAINYARD_URL: url, TRAINYARD_USER: 'cli-terminal' },
        timeout: 120_000,
        maxBuffer: 16 << 20,
      },
      (err, stdout) => {
        if (err && typeof err.code !== 'number') return reject(err);
        resolve({ code: err ? (err.code as number) : 0, stdout });
      },
    );
    child.stdin?.end();
  });
}

/** `trainyard …args` with stdout a pipe. */
const piped = (url: string, args: string[]) => run(process.execPath, [BIN, ...args], url);

/** `trainyard …args` on a pseudo-terminal: what a person's terminal would be sent. */
function onTerminal(url: string, args: string[]): Promise<Run> {
  const quote = (a: string) => `'${a.replace(/'/g, `'\\''`)}'`;
  const command = [process.execPath, BIN, ...args].map(quote).join(' ');
  return run('script', ['--quiet', '--return', '--command', command, '/dev/null'], url);
}

describe.skipIf(!hasScript)('trainyard CLI on a terminal: trainer control sequences stripped (PGlite)', { timeout: 240_000 }, () => {
  let s: RunningServer;
  let completed: string;
  let failed: string;

  const ended = (id: string) =>
    eventually(
      async () => {
        const t = await s.client.tasks.get.query({ id });
        return isTerminal(t.status) ? t : null;
      },
      `task ${id} to end`,
      60_000,
    );

  beforeAll(async () => {
    s = await startServer({ backend });
    const a = await s.client.tasks.create.mutate(simulated({ steps: 2, stepMs: 10, hostileOutput: true }, { name: 'escapes' }));
    const b = await s.client.tasks.create.mutate(
      simulated({ steps: 3, stepMs: 10, hostileOutput: true, failAtStep: 3, exitCode: 3 }, { name: 'escapes-failing' }),
    );
    expect((await ended(a.id)).status).toBe('COMPLETED');
    expect((await ended(b.id)).status).toBe('FAILED');
    completed = a.id;
    failed = b.id;
  });

  afterAll(async () => {
    await s?.dispose();
  });

  it('piped, `logs` gives the lines as the trainer sent them (the sequences are there to strip)', async () => {
    const r = await piped(s.url, ['logs', completed]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(OSC52);
    expect(r.stdout).toContain(OSC8);
    expect(r.stdout).toContain('\u001b[31mred\u001b[0m');
  });

  it('on a terminal, `logs` and `logs -f` show the text without a single control sequence', async () => {
    for (const args of [
      ['logs', completed],
      ['logs', '-f', completed],
    ]) {
      const r = await onTerminal(s.url, args);
      expect(r.code, `${args.join(' ')}\n${r.stdout}`).toBe(0);
      // The text is all there, without what a terminal would act on.
      expect(r.stdout, args.join(' ')).toMatch(/step 1 red {2}link/);
      expect(r.stdout).toContain('saved adapter to');
      expect(r.stdout).not.toContain('\u001b');
      expect(r.stdout).not.toContain('\u0007');
      expect(r.stdout).not.toMatch(CONTROLS);
      expect(r.stdout).not.toContain('ZXZpbA==');
      expect(r.stdout).not.toContain('evil.example');
    }
  });

  it('on a terminal, `show` of a failed task gives its reason and last lines without them; piped, they are kept', async () => {
    const r = await onTerminal(s.url, ['show', failed]);
    expect(r.code, r.stdout).toBe(0);
    expect(r.stdout).toMatch(/step \d red {2}link/);
    expect(r.stdout).not.toMatch(CONTROLS);
    expect(r.stdout).not.toContain('evil.example');
    expect((await piped(s.url, ['show', failed])).stdout).toContain(OSC52);
  });
});

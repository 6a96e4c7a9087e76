// Finding tasks from the CLI, end to end: the real server (PGlite, the simulated trainer) and the
// real `trainyard` bin as a child process. `ls --search` finds tasks by a piece of their name,
// model or id and `--owner` by who submitted them; every verb that takes a task takes the start of
// its id when no other task's id starts so, refuses one that several start with (naming them), and
// says of a deleted task that it was deleted, when and by whom.
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backends } from '@trainyard/store/testing';
import { DATASET, REPO_ROOT, startServer, type RunningServer } from '@trainyard/server/testing';

const BIN = join(REPO_ROOT, 'packages/cli/bin/trainyard.mjs');
const backend = backends().find((b) => b.kind === 'pglite')!;

function cli(url: string, args: string[], user = 'finder'): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      [BIN, ...args],
      { cwd: REPO_ROOT, env: { ...process.env, TRAINYARD_URL: url, TRAINYARD_USER: user }, timeout: 120_000 },
      (err, stdout, stderr) => {
        if (err && typeof err.code !== 'number') return reject(err);
        resolve({ code: err ? (err.code as number) : 0, stdout, stderr });
      },
    );
  });
}

describe('trainyard CLI: finding tasks (PGlite)', { timeout: 240_000 }, () => {
  let s: RunningServer;
  const ids: Record<string, string> = {};
  const run = async (args: string[], code = 0, user?: string) => {
    const r = await cli(s.url, args, user);
    expect(r.code, `trainyard ${args.join(' ')}\n${r.stdout}\n${r.stderr}`).toBe(code);
    return r;
  };

  beforeAll(async () => {
    s = await startServer({ backend });
    for (const [name, model, user] of [
      ['docstrings-coder', 'Qwen/Qwen2.5-Coder-1.5B-Instruct', 'ann'],
      ['sql-helper', 'Qwen/Qwen2.5-Coder-0.5B-Instruct', 'ann'],
      ['chat-small', 'Qwen/Qwen2.5-Coder-0.5B-Instruct', 'bob'],
    ] as const) {
      const r = await run(
        [
          'submit',
          '--model',
          model,
          '--dataset',
          DATASET,
          '--epochs',
          '1',
          '--simulate',
          '{"steps":2,"stepMs":10}',
          '--name',
          name,
          '--follow',
          '--json',
        ],
        0,
        user,
      );
      ids[name] = (JSON.parse(r.stdout) as { id: string }).id;
    }
  }, 120_000);
  afterAll(async () => {
    await s?.dispose();
  });

  const names = (stdout: string) =>
    stdout
      .trim()
      .split('\n')
      .slice(1)
      .map((l) => l.split(/\s{2,}/)[1]);

  it('ls --search finds tasks by a piece of their name, model or id; --owner by who submitted them', async () => {
    expect(names((await run(['ls', '--search', 'CODER'])).stdout)).toEqual(['chat-small', 'sql-helper', 'docstrings-coder']);
    expect(names((await run(['ls', '--search', '1.5b'])).stdout)).toEqual(['docstrings-coder']);
    expect(names((await run(['ls', '--search', 'sql'])).stdout)).toEqual(['sql-helper']);
    expect(names((await run(['ls', '--search', ids['chat-small']!.slice(-7)])).stdout)).toEqual(['chat-small']);
    expect(names((await run(['ls', '--owner', 'ann'])).stdout)).toEqual(['sql-helper', 'docstrings-coder']);
    expect(names((await run(['ls', '--owner', 'ann', '--search', 'doc'])).stdout)).toEqual(['docstrings-coder']);
    expect((await run(['ls', '--search', 'nothing-like-it', '--status', 'COMPLETED'])).stdout).toBe(
      'no tasks with status COMPLETED, "nothing-like-it" in their name, model or id\n',
    );
    const json = JSON.parse((await run(['ls', '--search', 'sql', '--json'])).stdout) as { items: { id: string }[] };
    expect(json.items.map((t) => t.id)).toEqual([ids['sql-helper']]);
  });

  it('takes the start of a task id when no other id starts so', async () => {
    const id = ids['sql-helper']!;
    const short = id.slice(0, -2);
    const shown = await run(['show', short]);
    expect(shown.stdout).toMatch(new RegExp(`^id:\\s+${id}$`, 'm'));
    expect((await run(['logs', short])).stdout).toContain('saved adapter to');
    const json = JSON.parse((await run(['show', short, '--json'])).stdout) as { id: string };
    expect(json.id).toBe(id);
  });

  it('refuses the start of several ids, naming them, and an id no task has', async () => {
    const r = await run(['show', 't'], 2);
    expect(r.stderr).toMatch(
      /^error: t is the start of 3 task ids: t\S+ \(chat-small\), t\S+ \(sql-helper\), t\S+ \(docstrings-coder\); give more of the id\n$/,
    );
    expect((await run(['show', 'tzzzzzz'], 4)).stderr).toContain('tzzzzzz');
  });

  it('says of a deleted task that it was deleted, when and by whom', async () => {
    const id = ids['chat-small']!;
    await run(['delete', id]);
    const r = await run(['show', id], 4);
    expect(r.stderr).toMatch(
      new RegExp(
        `^error: task ${id} was deleted at \\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\d by finder; its history stays: \`trainyard events --task ${id}\`\\n$`,
      ),
    );
    expect(r.stdout).toBe('');
    expect((await run(['logs', id], 4)).stderr).toContain(`task ${id} was deleted at`);
    // The API refuses a bad start of an id, naming the field.
    await expect(s.client.tasks.list.query({ idPrefix: 'a b' })).rejects.toThrow(/idPrefix is not the start of a task id/);
  });
});

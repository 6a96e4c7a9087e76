// Hostile trainer output against the real server and a real trainer process (hostile-trainer.mjs,
// whose behaviour the task's name picks), on both backends. Issue 10, findings 2, 6 and 7:
// - a last line `last\u0000line` once left its task TRAINING for good, its slot held and the
//   queue stalled (Postgres refuses NUL; the failed insert was not a connection error, so the
//   exit was never recorded); a NUL mid-run dropped its whole batch of lines;
// - a trainer could record any number of artifacts, of any length, anywhere;
// - a line that only started like a protocol message skipped the log rate limit.
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isTerminal, type TaskRecord } from '@trainyard/domain';
import { backendAvailable, backends, rawClient } from '@trainyard/store/testing';
import { eventually, REPO_ROOT, simulated, startServer, type RunningServer } from './harness';

const HOSTILE_TRAINER = join(REPO_ROOT, 'services/server/test/torture/hostile-trainer.mjs');
const R = '\uFFFD';
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

for (const backend of backends()) {
  describe.skipIf(!backendAvailable(backend))(`hostile trainer output on ${backend.kind}`, () => {
    let s: RunningServer;
    beforeAll(async () => {
      s = await startServer({
        backend,
        env: {
          TRAINYARD_TRAINER: JSON.stringify(['node', HOSTILE_TRAINER]),
          TRAINYARD_GPU_SLOTS: '1',
          // Every artifact line reaches the runner, so its own limits are what the spec sees.
          TRAINYARD_LOG_PROTOCOL_LINES_PER_SECOND: '100000',
        },
      });
    });
    afterAll(async () => {
      await s?.dispose();
    });

    const submit = (name: string) => s.client.tasks.create.mutate(simulated({}, { name }));
    const ended = (id: string, what: string) =>
      eventually(
        async () => {
          const t = await s.client.tasks.get.query({ id });
          return isTerminal(t.status) ? t : null;
        },
        what,
        60_000,
      );
    async function allLines(id: string) {
      const out: { seq: number; stream: string; line: string }[] = [];
      for (let afterSeq = 0; ;) {
        const page = await s.client.tasks.logs.query({ id, afterSeq, limit: 5000 });
        out.push(...page.lines);
        if (!page.hasMore) return out;
        afterSeq = page.nextSeq;
      }
    }

    it('a last line `last\\u0000line` with exit 0: the task completes, its slot frees, the next queued task runs', async () => {
      const first = await submit('nul-last');
      const next = await submit('ordinary');
      const done = await ended(first.id, 'the NUL trainer to end');
      expect(done).toMatchObject({ status: 'COMPLETED', devices: [] });
      const lines = await allLines(first.id);
      expect(lines.at(-1)).toMatchObject({ stream: 'stdout', line: `last${R}line` });
      expect(await ended(next.id, 'the queued task to run and end')).toMatchObject({ status: 'COMPLETED' });
      const q = await s.client.queue.get.query();
      expect(q.devices[0]!.holders).toEqual([]);
    });

    // Postgres only (a trigger on the real table); defined only there, so no run counts a skip.
    if (backend.kind === 'postgres')
      it('a last line the database refuses for any reason: the exit is recorded anyway, the other lines stored', async () => {
        // A trigger stands for any refusal that is not an outage (a constraint, a bad byte, ...).
        const sql = rawClient(backend.url!, s.schema!);
        try {
          await sql.unsafe(`
          CREATE FUNCTION refuse_line() RETURNS trigger LANGUAGE plpgsql AS $$
          BEGIN IF NEW.line = 'refuse me' THEN RAISE EXCEPTION 'line refused' USING ERRCODE = '22023'; END IF; RETURN NEW; END $$;
          CREATE TRIGGER refuse_line BEFORE INSERT ON task_logs FOR EACH ROW EXECUTE FUNCTION refuse_line();`);
          const first = await submit('refused-last');
          const next = await submit('ordinary');
          expect(await ended(first.id, 'the trainer to end')).toMatchObject({ status: 'COMPLETED', devices: [] });
          const text = (await allLines(first.id)).map((l) => l.line);
          expect(text).toContain('kept');
          expect(text).not.toContain('refuse me');
          expect(await ended(next.id, 'the queued task to run and end')).toMatchObject({ status: 'COMPLETED' });
        } finally {
          await sql.unsafe('DROP TRIGGER IF EXISTS refuse_line ON task_logs; DROP FUNCTION IF EXISTS refuse_line()');
          await sql.end({ timeout: 1 });
        }
      });

    it('a NUL mid-run: every other line of its batch is stored too', async () => {
      const t = await submit('nul-mid');
      expect(await ended(t.id, 'the trainer to end')).toMatchObject({ status: 'COMPLETED' });
      const text = (await allLines(t.id)).map((l) => l.line);
      expect(text).toEqual(expect.arrayContaining(['before', `mid${R}dle`, 'after', 'end', 'done']));
      expect(text.indexOf('after')).toBe(text.indexOf('before') + 2);
    });

    it('a lone surrogate is stored as U+FFFD, and an artifact named by one is refused', async () => {
      const t = await submit('lone-surrogate');
      const done = await ended(t.id, 'the trainer to end');
      expect(done).toMatchObject({ status: 'COMPLETED', artifacts: [] });
      const lines = await allLines(t.id);
      expect(lines.map((l) => l.line)).toEqual(
        expect.arrayContaining([expect.stringMatching(/^lone \uFFFD+ surrogate$/), 'escaped \\ud800 text stays text', 'done']),
      );
      expect(lines.some((l) => LONE_SURROGATE.test(l.line))).toBe(false);
      expect(lines.find((l) => l.line.startsWith('[trainyard] artifact refused'))?.line).toMatch(/not valid Unicode/);
    });

    it('1,000 artifacts: the first 100 are recorded, the rest refused with a warning line each, the run completes', async () => {
      const t = await submit('artifacts');
      const done: TaskRecord = await ended(t.id, 'the trainer to end');
      expect(done.status).toBe('COMPLETED');
      expect(done.artifacts).toHaveLength(100);
      expect(done.artifacts.every((p) => /\/checkpoint-\d+$/.test(p) && p.includes(`/outputs/`))).toBe(true);
      const lines = await allLines(t.id);
      const refused = lines.filter((l) => l.line.startsWith('[trainyard] artifact refused'));
      expect(refused).toHaveLength(900);
      expect(refused.every((l) => l.stream === 'stderr' && /already has 100 artifacts/.test(l.line))).toBe(true);
      expect(lines.map((l) => l.line)).toEqual(expect.arrayContaining(['artifacts reported', 'done']));
    });

    it('artifact paths outside the output folder (absolute, .. escapes) and over-long ones are refused with a warning line', async () => {
      const t = await submit('artifacts-outside');
      const done = await ended(t.id, 'the trainer to end');
      expect(done.status).toBe('COMPLETED');
      expect(done.artifacts).toEqual([expect.stringMatching(/\/outputs\/.+\/adapter$/)]);
      const refused = (await allLines(t.id)).filter((l) => l.line.startsWith('[trainyard] artifact refused')).map((l) => l.line);
      expect(refused).toHaveLength(4);
      expect(refused[0]).toMatch(/outside the task's output folder.*\/etc\/passwd/);
      expect(refused[1]).toMatch(/outside the task's output folder.*escape/);
      expect(refused[2]).toMatch(/outside the task's output folder.*sibling/);
      expect(refused[3]).toMatch(/over the limit of 1024/);
    });

    it('lines that only start like protocol messages are log lines: rate limited, not passed as protocol', async () => {
      const t = await submit('junk-protocol');
      expect(await ended(t.id, 'the trainer to end')).toMatchObject({ status: 'COMPLETED' });
      const lines = await allLines(t.id);
      const junk = lines.filter((l) => l.line.startsWith('{"type":"progress" junk'));
      const dropped = lines
        .flatMap((l) => /^\[trainyard\] dropped (\d+) lines \(rate limit\)$/.exec(l.line)?.[1] ?? [])
        .reduce((a, n) => a + Number(n), 0);
      expect(junk.length).toBeLessThan(5000);
      // Every junk line is stored or counted as dropped (with the final 'done' line, if the limit took it too).
      const doneDropped = lines.some((l) => l.line === 'done') ? 0 : 1;
      expect(junk.length + dropped).toBe(5000 + doneDropped);
    });
  });
}

// Trainer output and event text on both databases: NUL and lone surrogates (which Postgres
// refuses in text and jsonb) are stored as U+FFFD instead of failing the write, and the
// retention prune deletes the logs of long-ended tasks only.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { appendLogLines, compareWithLog, loadTask, pruneLogs, readLogLines, readStream, TaskStore, type LogLine } from '.';
import { backendAvailable, backends, openTestStore, taskSpec, type TestDatabase } from '../test/support';

const meta = { actor: 'runner' };
const R = '\uFFFD';
const at = new Date().toISOString();
const line = (seq: number, text: string): LogLine => ({ seq, stream: 'stdout', line: text, at });

for (const backend of backends()) {
  describe.skipIf(!backendAvailable(backend))(`stored text on ${backend.kind}`, () => {
    let t: TestDatabase;
    let store: TaskStore;
    beforeEach(async () => {
      ({ t, store } = await openTestStore(backend));
    });
    afterEach(async () => {
      await t?.close();
    });

    async function training(id: string): Promise<void> {
      await store.submit(id, taskSpec(id), meta);
      await store.execute(id, { type: 'recordSpawn', pid: 1, startTime: '1', runDir: '/tmp' }, meta);
      await store.execute(id, { type: 'startTraining' }, meta);
    }

    it('a batch with NUL and lone surrogates is stored whole, those characters as U+FFFD', async () => {
      await appendLogLines(t.db, 't1', [
        line(1, 'before'),
        line(2, 'mid\u0000dle'),
        line(3, 'lone \uD800 high'),
        line(4, 'lone \uDFFF low'),
        line(5, 'pair 🦜'),
        line(6, 'after'),
      ]);
      expect((await readLogLines(t.db, 't1', 0, 100)).map((l) => l.line)).toEqual([
        'before',
        `mid${R}dle`,
        `lone ${R} high`,
        `lone ${R} low`,
        'pair 🦜',
        'after',
      ]);
    });

    it("a trainer's exit is recorded with a last line `last\\u0000line`, and the slot goes to the next task", async () => {
      await training('t1');
      await store.submit('t2', taskSpec('t2'), meta);
      const r = await store.execute('t1', { type: 'recordExit', exitCode: 0, signal: null }, meta, {
        logLines: [line(1, 'ok'), line(2, 'last\u0000line')],
      });
      expect(r.task.status).toBe('COMPLETED');
      expect(r.started.map((s) => s.id)).toEqual(['t2']);
      expect((await readLogLines(t.db, 't1', 0, 100)).map((l) => l.line)).toEqual(['ok', `last${R}line`]);
    });

    it('event text from trainers and clients (error messages, artifact paths, reasons) is stored as U+FFFD', async () => {
      await training('t1');
      await store.execute('t1', { type: 'recordArtifact', path: '/out/a\u0000b\uD800' }, meta);
      await store.execute(
        't1',
        { type: 'recordExit', exitCode: 1, signal: null, detail: 'last output:\nboom\u0000 \uDC00' },
        { actor: 'runner\u0000' },
      );
      await store.submit('t2', taskSpec('t2'), meta); // takes the slot t1 freed
      await store.submit('t3', taskSpec('t3'), meta); // queues: a cancel ends it at once
      await store.execute('t3', { type: 'cancel', reason: 'no\u0000 \uD800' }, meta);
      const t1 = (await loadTask(t.db, 't1'))!;
      expect(t1.artifacts).toEqual([`/out/a${R}b${R}`]);
      expect(t1.error!.message).toContain(`boom${R} ${R}`);
      expect((await loadTask(t.db, 't3'))!.cancelReason).toBe(`no${R} ${R}`);
      const events = await readStream(t.db, 't1');
      expect(events.at(-1)!.metadata.actor).toBe(`runner${R}`);
      expect(JSON.stringify(events)).not.toMatch(/\\u0000|\\ud[89a-f]/i);
      expect((await compareWithLog(t.db)).differences).toEqual([]);
    });

    it('pruneLogs deletes the lines of ended tasks only, and leaves their events', async () => {
      await training('ended');
      await store.execute('ended', { type: 'recordExit', exitCode: 0, signal: null }, meta);
      await training('running');
      await appendLogLines(t.db, 'ended', [line(1, 'a'), line(2, 'b')]);
      await appendLogLines(t.db, 'running', [line(1, 'c')]);
      const events = (await readStream(t.db, 'ended')).length;
      // Ended just now: not before a time an hour ago.
      expect(await pruneLogs(t.db, new Date(Date.now() - 3_600_000))).toBe(0);
      expect(await readLogLines(t.db, 'ended', 0, 10)).toHaveLength(2);
      // Ended before a time a minute from now.
      expect(await pruneLogs(t.db, new Date(Date.now() + 60_000))).toBe(2);
      expect(await readLogLines(t.db, 'ended', 0, 10)).toEqual([]);
      expect(await readLogLines(t.db, 'running', 0, 10)).toHaveLength(1);
      expect(await readStream(t.db, 'ended')).toHaveLength(events);
    });

    it('pruneLogs in batches of 2 lines still deletes all 5 lines of ended tasks, and none of a running one', async () => {
      for (const id of ['one', 'two']) {
        await training(id);
        await store.execute(id, { type: 'recordExit', exitCode: 0, signal: null }, meta);
      }
      await training('running');
      await appendLogLines(t.db, 'one', [line(1, 'a'), line(2, 'b'), line(3, 'c')]);
      await appendLogLines(t.db, 'two', [line(1, 'd'), line(2, 'e')]);
      await appendLogLines(t.db, 'running', [line(1, 'f')]);
      expect(await pruneLogs(t.db, new Date(Date.now() + 60_000), 2)).toBe(5);
      expect(await readLogLines(t.db, 'one', 0, 10)).toEqual([]);
      expect(await readLogLines(t.db, 'two', 0, 10)).toEqual([]);
      expect(await readLogLines(t.db, 'running', 0, 10)).toHaveLength(1);
    });
  });
}

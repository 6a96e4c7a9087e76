// Bad input to every procedure: a typed error that names the field, nothing written, and the
// server keeps serving.
import { request } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { errorInfo } from '@trainyard/client';
import { backendAvailable, backends } from '@trainyard/store/testing';
import { DATASET, startServer, type RunningServer } from './harness';

const good = { model: 'Qwen/Qwen2.5-Coder-0.5B-Instruct', datasetPath: DATASET, config: { epochs: 1, simulate: { steps: 1, stepMs: 1 } } };

// [procedure, input, field expected in fieldErrors]
type Case = [string, unknown, string];
const deep = (n: number): unknown => (n === 0 ? 'x' : { a: deep(n - 1) });
const cases: Case[] = [
  ['tasks.create', {}, 'model'],
  ['tasks.create', { ...good, model: 42 }, 'model'],
  ['tasks.create', { ...good, model: '' }, 'model'],
  ['tasks.create', { ...good, model: 'x'.repeat(100_000) }, 'model'],
  ['tasks.create', { ...good, model: 'qwen; rm -rf /' }, 'model'],
  ['tasks.create', { ...good, model: '$(reboot)' }, 'model'],
  ['tasks.create', { ...good, model: '../../etc/passwd' }, 'model'],
  ['tasks.create', { ...good, model: '/srv/models/qwen' }, 'model'],
  ['tasks.create', { ...good, datasetPath: '../../etc/shadow' }, 'datasetPath'],
  ['tasks.create', { ...good, datasetPath: 'data/\u0000evil' }, 'datasetPath'],
  ['tasks.create', { ...good, datasetPath: '/no/such/file.jsonl' }, 'datasetPath'],
  ['tasks.create', { ...good, datasetPath: '`touch /tmp/pwned`' }, 'datasetPath'],
  ['tasks.create', { ...good, outputDir: '../outside' }, 'outputDir'],
  ['tasks.create', { ...good, outputDir: '/etc' }, 'outputDir'],
  ['tasks.create', { ...good, outputDir: 'a b|c' }, 'outputDir'],
  ['tasks.create', { ...good, name: 'ok\u001b[31mred' }, 'name'],
  ['tasks.create', { ...good, config: { batchSize: -1 } }, 'config.batchSize'],
  ['tasks.create', { ...good, config: { batchSize: 1.5 } }, 'config.batchSize'],
  ['tasks.create', { ...good, config: { learningRate: null } }, 'config.learningRate'],
  ['tasks.create', { ...good, config: { learningRate: '1e-4' } }, 'config.learningRate'],
  ['tasks.create', { ...good, config: { epochs: 1e9 } }, 'config.epochs'],
  ['tasks.create', { ...good, config: { maxLength: -512 } }, 'config.maxLength'],
  ['tasks.create', { ...good, config: { load8bit: true, load4bit: true } }, 'config.load4bit'],
  ['tasks.create', { ...good, config: { surprise: deep(50) } }, 'config.surprise'],
  ['tasks.create', { ...good, config: 'fast' }, 'config'],
  ['tasks.create', { ...good, timeoutMs: 0 }, 'timeoutMs'],
  ['tasks.create', { ...good, extra: true }, 'extra'],
  ['tasks.create', { ...good, name: '名前'.repeat(100) }, 'name'],
  ['tasks.create', [good], '(input)'],
  ['tasks.get', { id: '../../etc' }, 'id'],
  ['tasks.get', { id: 'x'.repeat(65) }, 'id'],
  ['tasks.get', { id: 5 }, 'id'],
  ['tasks.get', null, '(input)'],
  ['tasks.list', { limit: 0 }, 'limit'],
  ['tasks.list', { limit: 'all' }, 'limit'],
  ['tasks.list', { status: 'RUNNING' }, 'status'],
  ['tasks.list', { cursor: 'not-a-cursor' }, 'cursor'],
  ['tasks.cancel', { id: 'a;b' }, 'id'],
  ['tasks.cancel', { id: 'abc', reason: 'r'.repeat(501) }, 'reason'],
  ['tasks.delete', {}, 'id'],
  ['tasks.logs', { id: 'abc', afterSeq: -1 }, 'afterSeq'],
  ['tasks.logs', { id: 'abc', limit: 1e6 }, 'limit'],
  ['events.list', { from: 'yesterday' }, 'from'],
  ['events.list', { type: 'TaskExploded' }, 'type'],
  ['events.list', { cursor: '-5' }, 'cursor'],
  ['events.list', { limit: Number.MAX_SAFE_INTEGER }, 'limit'],
  ['events.replay', { taskId: 'abc', atPosition: '1e5' }, 'atPosition'],
  ['events.replay', { taskId: 'abc', atPosition: '1', atTime: '2026-01-01T00:00:00Z' }, 'atTime'],
  ['events.replay', {}, 'taskId'],
  ['webhooks.deliveries', { webhookId: '\u0000' }, 'webhookId'],
  ['webhooks.deliveries', { taskId: 'a\u0000b' }, 'taskId'],
  ['webhooks.delete', { id: '\u0000' }, 'id'],
];

/** A GET with the path sent exactly as given (fetch would normalise the dots away). */
function rawGet(port: number, path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method: 'GET' }, (res) => {
      let body = '';
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve(body));
    });
    req.on('error', reject);
    req.end();
  });
}

for (const backend of backends()) {
  describe.skipIf(!backendAvailable(backend))(`bad input on ${backend.kind}`, () => {
    let s: RunningServer;
    beforeAll(async () => {
      s = await startServer({ backend });
    });
    afterAll(async () => {
      await s?.dispose();
    });

    async function eventCount(): Promise<number> {
      let n = 0;
      let cursor: string | null = null;
      do {
        const page: { events: unknown[]; nextCursor: string | null } = await s.client.events.list.query({ limit: 1000, cursor });
        n += page.events.length;
        cursor = page.nextCursor;
      } while (cursor);
      return n;
    }

    it.each(cases)('%s %j → error naming %s', async (proc, input, field) => {
      const before = await eventCount();
      const [router, name] = proc.split('.') as [string, string];
      const p = (
        s.client as unknown as Record<
          string,
          Record<string, { query?: (i: unknown) => Promise<unknown>; mutate?: (i: unknown) => Promise<unknown> }>
        >
      )[router]![name]!;
      const isMutation = ['tasks.create', 'tasks.cancel', 'tasks.delete', 'webhooks.delete'].includes(proc);
      const err = await (isMutation ? p.mutate! : p.query!)(input).then(
        () => null,
        (e: unknown) => e,
      );
      expect(err, 'the call must fail').not.toBeNull();
      const info = errorInfo(err);
      expect(info.code).toBe('BAD_REQUEST');
      expect(Object.keys(info.fieldErrors ?? {})).toContain(field);
      expect(info.message).toContain(field === '(input)' ? '' : field.split('.').pop()!);
      expect(await eventCount()).toBe(before);
    });

    it('garbage on the wire: non-JSON bodies, oversized bodies, unknown procedures, huge batches', async () => {
      const post = (path: string, body: string, type = 'application/json') =>
        fetch(`${s.url}/trpc/${path}`, { method: 'POST', headers: { 'content-type': type }, body });
      expect((await post('tasks.create', '{"model": ')).status).toBe(400);
      expect((await post('tasks.create', 'model=x', 'application/x-www-form-urlencoded')).status).toBeGreaterThanOrEqual(400);
      expect((await post('tasks.create', JSON.stringify({ model: 'x'.repeat(2_000_000) }))).status).toBe(413);
      expect((await fetch(`${s.url}/trpc/tasks.nope`)).status).toBe(404);
      const many = Array.from({ length: 60 }, () => 'system.health').join(',');
      expect((await fetch(`${s.url}/trpc/${many}?batch=1&input=${encodeURIComponent('{}')}`)).status).toBe(400);
      for (const path of ['/../../etc/passwd', '/%2e%2e/%2e%2e/etc/passwd', '/assets/..%2f..%2f..%2fpackage.json']) {
        const body = await rawGet(s.port, path);
        expect(body).not.toContain('root:x:0');
        expect(body).not.toContain('"workspaces"');
      }
      const h = await s.client.system.health.query();
      expect(h.ok).toBe(true);
    });

    it('domain errors are typed too: unknown task → NOT_FOUND, illegal command → CONFLICT naming task, status, command', async () => {
      const nf = errorInfo(await s.client.tasks.get.query({ id: 'nope' }).catch((e: unknown) => e));
      expect(nf).toMatchObject({ code: 'NOT_FOUND' });
      expect(nf.message).toContain('nope');
      const t = await s.client.tasks.create.mutate(good);
      const done = await (async () => {
        for (let i = 0; i < 600; i++) {
          const x = await s.client.tasks.get.query({ id: t.id });
          if (x.status === 'COMPLETED') return x;
          await new Promise((r) => setTimeout(r, 100));
        }
        throw new Error('task did not complete');
      })();
      const c = errorInfo(await s.client.tasks.cancel.mutate({ id: done.id }).catch((e: unknown) => e));
      expect(c.code).toBe('CONFLICT');
      expect(c.message).toContain(done.id);
      expect(c.message).toContain('COMPLETED');
      expect(c.message).toContain('cancel');
    });
  });
}

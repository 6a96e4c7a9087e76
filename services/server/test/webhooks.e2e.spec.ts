// Webhooks end to end on both databases: the real server (simulated trainer) posts task endings
// to a real local HTTP receiver. The receiver checks each delivery's HMAC signature with the
// webhook's secret, answers 500 to the first attempt, and the service retries with the same body
// until it gets 200; a receiver that refuses with 400 is not retried. Each attempt is recorded
// (webhooks.deliveries) and said in the service's log; the secret appears nowhere but in the
// signature.
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type TrainyardClient } from '@trainyard/client';
import { addUser, createToken, createWebhook, openDatabase, storageFromEnv } from '@trainyard/store';
import { backendAvailable, backends } from '@trainyard/store/testing';
import { verifyWebhookSignature } from '../src/webhooks/sign';
import { waitTerminal } from './lifecycle-support';
import { eventually, simulated, newServiceData, startServer, type RunningServer } from './harness';

interface Received {
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
  answered: number;
}

/** A receiver on 127.0.0.1: `answers(path, n)` gives the status for the n-th request to a path (1-based). */
async function receiver(answers: (path: string, n: number) => number): Promise<{ url: string; got: Received[]; close(): Promise<void> }> {
  const got: Received[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const path = req.url ?? '/';
      const n = got.filter((g) => g.path === path).length + 1;
      const status = answers(path, n);
      got.push({ path, headers: req.headers, body: Buffer.concat(chunks).toString('utf8'), answered: status });
      res.writeHead(status, { 'content-type': 'text/plain' }).end(status === 200 ? 'ok' : 'nope');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    got,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

const SECRET = 'e2e-secret-' + 'x7Qp2LmZ9'.repeat(3);
const REFUSING_SECRET = 'refusing-secret-0123456789abcdef';

for (const backend of backends()) {
  describe.skipIf(!backendAvailable(backend))(`webhooks on ${backend.kind}`, () => {
    let s: RunningServer;
    let rx: Awaited<ReturnType<typeof receiver>>;
    beforeAll(async () => {
      // /flaky answers 500 once, then 200; /refuse always 400.
      rx = await receiver((path, n) => (path === '/refuse' ? 400 : path.startsWith('/flaky?') && n === 1 ? 500 : 200));
      s = await startServer({
        backend,
        env: { TRAINYARD_WEBHOOK_BACKOFF_MS: '200', TRAINYARD_WEBHOOK_ATTEMPTS: '4', TRAINYARD_WEBHOOK_TIMEOUT_MS: '5000' },
      });
    });
    afterAll(async () => {
      await s?.dispose();
      await rx?.close();
    });

    it('signs each delivery, retries after a 500 with the same body, records every attempt, and never shows the secret', async () => {
      const made = await s.client.webhooks.create.mutate({ url: `${rx.url}/flaky?channel=training`, secret: SECRET });
      expect(made.secret).toBe(SECRET);
      expect(made.webhook).toMatchObject({ url: `${rx.url}/flaky?channel=training`, events: [] });
      const refusing = await s.client.webhooks.create.mutate({
        url: `${rx.url}/refuse`,
        secret: REFUSING_SECRET,
        events: ['task.completed'],
      });
      // A made-up secret is returned once, and looks like one.
      const generated = await s.client.webhooks.create.mutate({ url: `${rx.url}/other`, events: ['task.cancelled'] });
      expect(generated.secret).toMatch(/^whsec_[A-Za-z0-9_-]{32}$/);

      const t = await s.client.tasks.create.mutate(simulated({ steps: 3, stepMs: 20 }, { name: 'hooked' }));
      expect((await waitTerminal(s.client, t.id)).status).toBe('COMPLETED');

      const flaky = await eventually(async () => {
        const got = rx.got.filter((g) => g.path === '/flaky?channel=training');
        return got.length >= 2 ? got : null;
      }, 'two attempts at the flaky receiver');
      expect(flaky.map((g) => g.answered)).toEqual([500, 200]);
      // Same bytes, same delivery id on both attempts; the attempt number counts up.
      expect(flaky[1]!.body).toBe(flaky[0]!.body);
      expect(flaky[1]!.headers['x-trainyard-delivery']).toBe(flaky[0]!.headers['x-trainyard-delivery']);
      expect(flaky.map((g) => g.headers['x-trainyard-attempt'])).toEqual(['1', '2']);
      const now = Math.floor(Date.now() / 1000);
      for (const g of flaky) {
        expect(g.headers['content-type']).toBe('application/json');
        expect(g.headers['x-trainyard-event']).toBe('task.completed');
        const sig = g.headers['x-trainyard-signature'] as string;
        expect(sig).toMatch(/^t=\d+,v1=[0-9a-f]{64}$/);
        expect(verifyWebhookSignature(SECRET, sig, g.body, now)).toBe(true);
        // Another secret, a changed body, or an old signature do not verify.
        expect(verifyWebhookSignature(REFUSING_SECRET, sig, g.body, now)).toBe(false);
        expect(verifyWebhookSignature(SECRET, sig, g.body.replace('hooked', 'hacked'), now)).toBe(false);
        expect(verifyWebhookSignature(SECRET, sig, g.body, now + 3600)).toBe(false);
        // The secret itself travels nowhere.
        expect(JSON.stringify(g.headers)).not.toContain(SECRET);
        expect(g.body).not.toContain(SECRET);
      }
      const body = JSON.parse(flaky[0]!.body);
      expect(body).toMatchObject({
        id: flaky[0]!.headers['x-trainyard-delivery'],
        type: 'task.completed',
        task: { id: t.id, name: 'hooked', status: 'COMPLETED', reason: null, exitCode: 0 },
      });

      // The refusing receiver got one attempt: a 400 is not retried.
      const refused = await eventually(async () => {
        const d = await s.client.webhooks.deliveries.query({ webhookId: refusing.webhook.id });
        return d[0]?.state === 'failed' ? d[0] : null;
      }, 'the refused delivery to fail');
      expect(refused.attempts).toHaveLength(1);
      expect(refused.attempts[0]).toMatchObject({ attempt: 1, status: 400, outcome: 'failed' });
      expect(refused.lastError).toMatch(/HTTP 400: the receiver refused it; not retried/);
      expect(rx.got.filter((g) => g.path === '/refuse')).toHaveLength(1);
      // The cancelled-only webhook heard nothing of a completion.
      expect(rx.got.filter((g) => g.path === '/other')).toHaveLength(0);

      // Every attempt is recorded: the 500 and the retry decided after it, then the 200.
      const [d] = await eventually(async () => {
        const list = await s.client.webhooks.deliveries.query({ taskId: t.id, webhookId: made.webhook.id });
        return list[0]?.state === 'delivered' ? list : null;
      }, 'the flaky delivery to be recorded as delivered');
      expect(d!.attempts.map((a) => [a.attempt, a.status, a.outcome])).toEqual([
        [1, 500, 'retry'],
        [2, 200, 'delivered'],
      ]);
      expect(d!.attempts[0]!.why).toBe('HTTP 500 on attempt 1 of 4');
      expect(d!.attempts[0]!.retryInMs).toBeGreaterThanOrEqual(100);
      expect(d!.id).toBe(body.id);
      // …and said in the service's log, without the URL's query.
      await eventually(
        async () => s.output.some((l) => l.includes(`webhook ${d!.id}`) && l.includes('attempt 2 of 4, HTTP 200; delivered')),
        'the log line',
      );
      expect(s.output.find((l) => l.includes(`webhook ${d!.id}`) && l.includes('HTTP 500'))).toContain('retry in');
      expect(s.output.filter((l) => l.includes(`webhook ${d!.id}`)).join('\n')).not.toContain('channel=training');

      // No listing, no log line shows a secret.
      const listed = JSON.stringify(await s.client.webhooks.list.query());
      const deliveries = JSON.stringify(await s.client.webhooks.deliveries.query());
      for (const secret of [SECRET, REFUSING_SECRET, generated.secret]) {
        expect(listed).not.toContain(secret);
        expect(deliveries).not.toContain(secret);
        expect(s.output.join('\n')).not.toContain(secret);
      }
    });

    it('a failed task is told with its reason; a deleted webhook hears nothing more', async () => {
      const hook = await s.client.webhooks.create.mutate({ url: `${rx.url}/failures`, secret: SECRET, events: ['task.failed'] });
      const t = await s.client.tasks.create.mutate(simulated({ steps: 5, stepMs: 20, failAtStep: 2 }, { name: 'doomed' }));
      expect((await waitTerminal(s.client, t.id)).status).toBe('FAILED');
      const [g] = await eventually(async () => {
        const got = rx.got.filter((x) => x.path === '/failures');
        return got.length ? got : null;
      }, 'the failure delivery');
      expect(verifyWebhookSignature(SECRET, g!.headers['x-trainyard-signature'] as string, g!.body, Math.floor(Date.now() / 1000))).toBe(
        true,
      );
      expect(JSON.parse(g!.body)).toMatchObject({ type: 'task.failed', task: { id: t.id, status: 'FAILED', reason: 'exit' } });

      await s.client.webhooks.delete.mutate({ id: hook.webhook.id });
      expect((await s.client.webhooks.list.query()).map((w) => w.id)).not.toContain(hook.webhook.id);
      const again = await s.client.tasks.create.mutate(simulated({ steps: 5, stepMs: 20, failAtStep: 2 }, { name: 'doomed again' }));
      expect((await waitTerminal(s.client, again.id)).status).toBe('FAILED');
      // Another webhook hears of it (so planning has passed it), the deleted one does not.
      await eventually(
        async () => rx.got.some((x) => x.path === '/flaky?channel=training' && x.body.includes(again.id)),
        'the flaky receiver to hear of the second failure',
      );
      expect(rx.got.filter((x) => x.path === '/failures')).toHaveLength(1);
    });

    it('refuses a URL that is not http(s), naming the field; a user deletes only their own', async () => {
      await expect(s.client.webhooks.create.mutate({ url: 'ftp://example.com/x' })).rejects.toMatchObject({
        data: { code: 'BAD_REQUEST', fieldErrors: { url: [expect.stringMatching(/http:\/\/ or https:\/\//)] } },
      });
      await expect(s.client.webhooks.delete.mutate({ id: 'wh_nope' })).rejects.toMatchObject({ data: { code: 'NOT_FOUND' } });
    });
  });
}

// Tokens mode: an ordinary user's webhook may not reach this machine or its private network
// (SSRF); an admin's may (the receiver above is on loopback). A webhook row made before the rule
// (here written to the database directly) is refused at delivery: a failed attempt, nothing sent.
for (const backend of backends()) {
  describe.skipIf(!backendAvailable(backend))(`webhooks in tokens mode on ${backend.kind}`, () => {
    let s: RunningServer;
    let rx: Awaited<ReturnType<typeof receiver>>;
    let alice: TrainyardClient;
    let root: TrainyardClient;
    const OLD_HOOK = 'wh_madebeforetherule';
    beforeAll(async () => {
      rx = await receiver(() => 200);
      const { dataDir, schema, env: dbEnv } = await newServiceData(backend, 'trainyard-webhooks-tokens-');
      const database = await openDatabase(storageFromEnv(dbEnv));
      const tokens: Record<string, string> = {};
      try {
        for (const [name, isAdmin] of [
          ['root', true],
          ['alice', false],
        ] as const) {
          await addUser(database.db, { name, admin: isAdmin });
          tokens[name] = (await createToken(database.db, { userName: name, expiresAt: null })).token;
        }
        await createWebhook(database.db, {
          id: OLD_HOOK,
          owner: 'alice',
          url: `${rx.url}/old`,
          secret: SECRET,
          events: [],
          createdBy: 'alice',
        });
      } finally {
        await database.close();
      }
      s = await startServer({
        backend,
        dataDir,
        ...(schema ? { schema } : {}),
        env: { TRAINYARD_AUTH: 'tokens', TRAINYARD_WEBHOOK_BACKOFF_MS: '200', TRAINYARD_WEBHOOK_ATTEMPTS: '3' },
        startTimeoutMs: 200_000,
      });
      alice = await connect({ url: s.url, token: tokens.alice! });
      root = await connect({ url: s.url, token: tokens.root! });
    }, 240_000);
    afterAll(async () => {
      await s?.dispose();
      await rx?.close();
    });

    it("refuses a non-admin's webhook to a loopback, private or link-local address, naming url; an admin's may", async () => {
      for (const [url, kind] of [
        [`${rx.url}/mine`, 'loopback'],
        ['http://[::1]:9/x', 'loopback'],
        ['http://10.1.2.3/x', 'private'],
        ['http://169.254.169.254/latest/meta-data', 'link-local'],
        ['http://0.0.0.0:9/x', 'unspecified'],
        ['http://localhost:9/x', 'loopback'],
      ] as const) {
        await expect(alice.webhooks.create.mutate({ url }), url).rejects.toMatchObject({
          data: { code: 'BAD_REQUEST', fieldErrors: { url: [expect.stringMatching(new RegExp(`a ${kind} address: only an admin`))] } },
        });
      }
      expect((await alice.webhooks.list.query()).map((w) => w.id)).toEqual([OLD_HOOK]);
      const admins = await root.webhooks.create.mutate({ url: `${rx.url}/admin` });
      expect(admins.webhook.url).toBe(`${rx.url}/admin`);
    });

    it("refuses at delivery a non-admin's webhook that reaches a loopback address: one failed attempt, nothing sent", async () => {
      const t = await alice.tasks.create.mutate(simulated({ steps: 2, stepMs: 10 }, { name: 'ssrf' }));
      expect((await waitTerminal(alice, t.id)).status).toBe('COMPLETED');
      const d = await eventually(async () => {
        const list = await alice.webhooks.deliveries.query({ webhookId: OLD_HOOK, taskId: t.id });
        return list[0]?.state === 'failed' ? list[0] : null;
      }, 'the delivery to the loopback address to be refused');
      expect(d.attempts).toHaveLength(1);
      expect(d.attempts[0]).toMatchObject({ attempt: 1, status: null, outcome: 'failed' });
      expect(d.lastError).toMatch(/^not sent: url host 127\.0\.0\.1 is a loopback address: only an admin's webhook/);
      expect(rx.got.filter((g) => g.path === '/old')).toHaveLength(0);
    });
  });
}

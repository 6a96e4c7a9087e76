// DNS rebinding and cross-site requests against the real server over HTTP (issue 10, finding 1):
// a foreign Host gets 421, a foreign Origin or a cross-site fetch 403, a body that is not JSON
// 415, and none of them writes anything; the names in TRAINYARD_ALLOWED_HOSTS are answered.
// Every response carries the panel's security headers (finding 7). Plain HTTP checks in front of
// the store: PGlite is enough.
import { request } from 'node:http';
import { copyFileSync, existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backends } from '@trainyard/store/testing';
import { DATASET, startServer, type RunningServer } from './harness';

interface RawResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** One request with exactly these headers (Host included), as curl would send it. */
function raw(
  port: number,
  opts: { method?: string; path: string; headers?: Record<string, string>; body?: string | Buffer; readMs?: number },
): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method: opts.method ?? 'GET', path: opts.path, headers: opts.headers ?? {} }, (res) => {
      let body = '';
      // A subscription that was let through streams on: read what came in a moment, then stop.
      const timer = opts.readMs ? setTimeout(() => res.destroy(), opts.readMs) : null;
      res.on('data', (c) => (body += c));
      const done = () => {
        if (timer) clearTimeout(timer);
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body });
      };
      res.on('end', done);
      res.on('close', done);
    });
    req.on('error', reject);
    req.end(opts.body);
  });
}

const ALLOWED_NAME = 'trainyard.test';

describe('HTTP guard against DNS rebinding and cross-site requests', () => {
  let s: RunningServer;
  let tmp: string;
  let body: string;
  let self: string;

  const eventCount = async () => (await s.client.events.list.query({ limit: 1000 })).events.length;

  beforeAll(async () => {
    tmp = mkdtempSync(join(tmpdir(), 'trainyard-guard-'));
    copyFileSync(DATASET, join(tmp, 'data.jsonl'));
    // A panel to check the headers of its pages.
    writeFileSync(join(tmp, 'index.html'), '<!doctype html><title>panel</title>');
    s = await startServer({
      backend: backends()[0]!,
      env: { TRAINYARD_DATASETS_ROOT: tmp, TRAINYARD_ALLOWED_HOSTS: ALLOWED_NAME, TRAINYARD_PANEL_DIR: tmp },
    });
    self = `127.0.0.1:${s.port}`;
    // A submission that is accepted when it comes from the CLI (checked below): what the attacks send.
    body = JSON.stringify({ model: 'm', datasetPath: join(tmp, 'data.jsonl'), config: { simulate: { steps: 1, stepMs: 1 } } });
  });

  afterAll(async () => {
    await s?.dispose();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  it("the issue's rebinding request (Host and Origin attacker.example:8080, JSON body) gets 421 and creates nothing", async () => {
    const before = await eventCount();
    const r = await raw(s.port, {
      method: 'POST',
      path: '/trpc/tasks.create',
      headers: { host: 'attacker.example:8080', origin: 'http://attacker.example:8080', 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'm', datasetPath: '/etc/passwd' }),
    });
    expect(r.status).toBe(421);
    expect(r.headers['content-type']).toMatch(/^text\/plain/);
    expect(r.body).toContain('TRAINYARD_ALLOWED_HOSTS');
    // The same with a dataset the service would accept, and on the rebound name with this port.
    const again = await raw(s.port, {
      method: 'POST',
      path: '/trpc/tasks.create',
      headers: { host: `attacker.example:${s.port}`, origin: `http://attacker.example:${s.port}`, 'content-type': 'application/json' },
      body,
    });
    expect(again.status).toBe(421);
    // Reads too: a rebound page cannot list tasks, open a feed, scrape metrics or load the panel.
    for (const path of ['/trpc/tasks.list', '/trpc/tasks.onUpdate', '/metrics', '/'])
      expect((await raw(s.port, { path, headers: { host: `attacker.example:${s.port}` }, readMs: 500 })).status, path).toBe(421);
    expect(await eventCount()).toBe(before);
  });

  it('an allowed Host with a foreign or null Origin gets 403 and creates nothing', async () => {
    const before = await eventCount();
    for (const origin of ['http://attacker.example:8080', 'null', `http://localhost:${s.port + 1}`]) {
      const r = await raw(s.port, {
        method: 'POST',
        path: '/trpc/tasks.create',
        headers: { host: self, origin, 'content-type': 'application/json' },
        body,
      });
      expect(r.status, origin).toBe(403);
      expect(r.body).toMatch(/Forbidden/);
    }
    // A page of another site opening the task feed (EventSource sends its Origin).
    const sub = await raw(s.port, {
      path: '/trpc/tasks.onUpdate',
      headers: { host: self, origin: 'http://attacker.example', accept: 'text/event-stream' },
      readMs: 500,
    });
    expect(sub.status).toBe(403);
    expect(await eventCount()).toBe(before);
  });

  it('Sec-Fetch-Site: cross-site gets 403 on the API, reads included', async () => {
    const before = await eventCount();
    const post = await raw(s.port, {
      method: 'POST',
      path: '/trpc/tasks.create',
      headers: { host: self, 'sec-fetch-site': 'cross-site', 'content-type': 'application/json' },
      body,
    });
    expect(post.status).toBe(403);
    expect(post.body).toMatch(/cross-site/);
    const read = await raw(s.port, { path: '/trpc/tasks.list', headers: { host: self, 'sec-fetch-site': 'cross-site' } });
    expect(read.status).toBe(403);
    expect(await eventCount()).toBe(before);
  });

  it('multipart/form-data, urlencoded, text/plain and octet-stream posts get 415 and create nothing', async () => {
    const before = await eventCount();
    const form = new FormData();
    form.set('model', 'm');
    form.set('datasetPath', join(tmp, 'data.jsonl'));
    const multipart = new Response(form);
    const multipartBody = Buffer.from(await multipart.arrayBuffer());
    const cases: [string, string | Buffer][] = [
      [multipart.headers.get('content-type')!, multipartBody],
      ['application/x-www-form-urlencoded', `model=m&datasetPath=${encodeURIComponent(join(tmp, 'data.jsonl'))}`],
      ['text/plain', body],
      ['application/octet-stream', body],
    ];
    for (const [type, payload] of cases) {
      const r = await raw(s.port, {
        method: 'POST',
        path: '/trpc/tasks.create',
        headers: { host: self, 'content-type': type },
        body: payload,
      });
      expect(r.status, type).toBe(415);
      expect(r.body).toContain('application/json');
    }
    expect(await eventCount()).toBe(before);
  });

  it('a name in TRAINYARD_ALLOWED_HOSTS is answered, with its own Origin; the clients on 127.0.0.1 work as before', async () => {
    const host = `${ALLOWED_NAME}:${s.port}`;
    const r = await raw(s.port, {
      method: 'POST',
      path: '/trpc/tasks.create',
      headers: { host, origin: `http://${host}`, 'sec-fetch-site': 'same-origin', 'content-type': 'application/json' },
      body,
    });
    expect(r.status, r.body).toBe(200);
    const created = JSON.parse(r.body).result.data;
    expect(created.created).toBe(true);
    expect((await raw(s.port, { path: '/trpc/system.ping', headers: { host: ALLOWED_NAME } })).status).toBe(200);
    // Without Origin (CLI, curl, scripts), on each loopback name.
    for (const name of ['127.0.0.1', 'localhost', '[::1]'])
      expect((await raw(s.port, { path: '/trpc/system.ping', headers: { host: `${name}:${s.port}` } })).status, name).toBe(200);
    // The typed client (mutations POST JSON, queries batch GET, subscriptions SSE) is unaffected.
    const t = await s.client.tasks.create.mutate(JSON.parse(body));
    expect(t.created).toBe(true);
    expect((await s.client.tasks.get.query({ id: created.id })).id).toBe(created.id);
  });

  it("the REST APIs (/api, /v1) too: a foreign Host 421, a foreign Origin or cross-site 403, a form 415, each in its API's error shape; nothing written", async () => {
    // Tasks made by the specs above may still be running (their events grow): count tasks instead.
    const taskCount = async () => (await s.client.tasks.list.query({ limit: 200 })).items.length;
    const before = await taskCount();
    const uploads = join(s.dataDir, 'datasets', 'uploads');
    const stored = () => (existsSync(uploads) ? readdirSync(uploads).length : 0);
    const storedBefore = stored();
    const filesBefore = JSON.parse((await raw(s.port, { path: '/v1/files', headers: { host: self } })).body).data.length;
    const rebound = `attacker.example:${s.port}`;
    const studioCreate = JSON.stringify({ model_name: 'm', dataset_file: join(tmp, 'data.jsonl') });
    const openaiCreate = JSON.stringify({ model: 'm', training_file: 'file-x' });
    const chat = JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'hi' }] });
    // An upload form of a dataset the service would take, as a page of another site would post it.
    const uploadForm = async (purpose: boolean) => {
      const form = new FormData();
      if (purpose) form.set('purpose', 'fine-tune');
      form.set('file', new Blob(['{"text":"a"}\n']), 'data.jsonl');
      const r = new Response(form);
      return { type: r.headers.get('content-type')!, body: Buffer.from(await r.arrayBuffer()) };
    };
    const studioUpload = await uploadForm(false);
    const openaiUpload = await uploadForm(true);
    type Case = [method: string, path: string, headers: Record<string, string>, body: string | Buffer | undefined, status: number];
    const json = { 'content-type': 'application/json' };
    const cases: Case[] = [];
    for (const [method, path, body, type] of [
      ['GET', '/api/finetune/tasks', undefined, undefined],
      ['POST', '/api/finetune/create', studioCreate, 'application/json'],
      ['POST', '/api/finetune/upload-dataset', studioUpload.body, studioUpload.type],
      ['GET', '/v1/fine_tuning/jobs', undefined, undefined],
      ['GET', '/v1/files', undefined, undefined],
      ['POST', '/v1/fine_tuning/jobs', openaiCreate, 'application/json'],
      ['POST', '/v1/files', openaiUpload.body, openaiUpload.type],
      ['POST', '/v1/chat/completions', chat, 'application/json'],
    ] as const) {
      const typed: Record<string, string> = type ? { 'content-type': type } : {};
      // DNS rebinding: the page's own name as Host (and its Origin).
      cases.push([method, path, { host: rebound, origin: `http://${rebound}`, ...typed }, body, 421]);
      cases.push([method, path, { host: 'attacker.example', ...typed }, body, 421]);
      // A page of another site: its Origin, null, or only the browser's fetch metadata.
      cases.push([method, path, { host: self, origin: 'http://attacker.example', ...typed }, body, 403]);
      cases.push([method, path, { host: self, origin: 'null', ...typed }, body, 403]);
      cases.push([method, path, { host: self, 'sec-fetch-site': 'cross-site', ...typed }, body, 403]);
    }
    // Forms an HTML page can post without a preflight, to every route that is not an upload.
    for (const path of ['/api/finetune/create', '/v1/fine_tuning/jobs', '/v1/chat/completions', `/v1/fine_tuning/jobs/ftjob-x/cancel`])
      for (const [type, payload] of [
        [studioUpload.type, studioUpload.body],
        ['application/x-www-form-urlencoded', 'model=m&training_file=file-x'],
        ['text/plain', path.startsWith('/api') ? studioCreate : openaiCreate],
      ] as const)
        cases.push(['POST', path, { host: self, 'content-type': type }, payload, 415]);
    for (const [method, path, headers, payload, status] of cases) {
      const what = `${method} ${path} ${JSON.stringify(headers)}`;
      const r = await raw(s.port, { method, path, headers, body: payload });
      expect(r.status, `${what}: ${r.body}`).toBe(status);
      expect(r.headers['content-type'], what).toMatch(/^application\/json/);
      const answer = JSON.parse(r.body) as { detail?: string; error?: { message: string; type: string } };
      // Studio's clients read FastAPI's { detail }, the OpenAI SDKs { error: { message, type } }.
      const message = path.startsWith('/api') ? answer.detail : answer.error?.message;
      expect(message, what).toMatch(
        status === 421 ? /does not answer to the host name/ : status === 403 ? /^Forbidden/ : /JSON bodies only/,
      );
      if (path.startsWith('/v1')) expect(answer.error?.type, what).toBe('invalid_request_error');
      expect(r.headers['content-security-policy'], what).toMatch(/frame-ancestors 'none'/);
    }
    expect(await taskCount()).toBe(before);
    expect(stored()).toBe(storedBefore);
    expect(JSON.parse((await raw(s.port, { path: '/v1/files', headers: { host: self } })).body).data).toHaveLength(filesBefore);
    // The same requests from the service's own origin pass the guard: what was refused above was the attack.
    const own = { host: self, origin: `http://${self}`, 'sec-fetch-site': 'same-origin' };
    const ownUpload = await raw(s.port, {
      method: 'POST',
      path: '/v1/files',
      headers: { ...own, 'content-type': openaiUpload.type },
      body: openaiUpload.body,
    });
    expect(ownUpload.status, ownUpload.body).toBe(200);
    expect(JSON.parse(ownUpload.body)).toMatchObject({ object: 'file', purpose: 'fine-tune' });
    const ownStudio = await raw(s.port, {
      method: 'POST',
      path: '/api/finetune/upload-dataset',
      headers: { ...own, 'content-type': studioUpload.type },
      body: studioUpload.body,
    });
    expect(ownStudio.status, ownStudio.body).toBe(201);
    expect((await raw(s.port, { path: '/v1/fine_tuning/jobs', headers: { ...own, ...json } })).status).toBe(200);
    expect(stored()).toBe(storedBefore + 2);
  });

  it('every response carries the security headers: the panel, the API, refusals', async () => {
    for (const [path, headers] of [
      ['/', { host: self }],
      ['/tasks/x', { host: self }],
      ['/trpc/system.ping', { host: self }],
      ['/metrics', { host: self }],
      ['/trpc/system.ping', { host: 'attacker.example' }],
    ] as const) {
      const r = await raw(s.port, { path, headers });
      expect(r.headers['content-security-policy'], path).toMatch(/frame-ancestors 'none'/);
      expect(r.headers['content-security-policy']).toMatch(/default-src 'self'/);
      expect(r.headers['x-frame-options']).toBe('DENY');
      expect(r.headers['x-content-type-options']).toBe('nosniff');
      expect(r.headers['referrer-policy']).toBe('no-referrer');
    }
  });
});

// Tokens mode end to end over HTTP, on PGlite and Postgres (issue 13, "Who is calling"): users
// and tokens made by the real `trainyard admin` as a child process; no token, a malformed header,
// an unknown, expired or revoked token get UNAUTHORIZED (tRPC) or 401 (REST, upload) and write
// nothing; a user reads, follows, cancels and deletes their own tasks only (another's id is
// NOT_FOUND, as a task that does not exist), an admin all; every event names the authenticated
// actor, whatever header claims otherwise; a non-loopback HOST without tokens mode is refused.
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { connect, errorInfo, type TrainyardClient } from '@trainyard/client';
import { createToken, openDatabase, storageFromEnv } from '@trainyard/store';
import { backendAvailable, backends, type Backend } from '@trainyard/store/testing';
import { DATASET, eventually, REPO_ROOT, simulated, newServiceData, startServer, type RunningServer } from './harness';
import { collect, drain, eventsOf, rejection, serverOutputOnFailure, waitFor, waitTerminal, type Collected } from './lifecycle-support';

const BIN = join(REPO_ROOT, 'packages/cli/bin/trainyard.mjs');
const LONG = { steps: 100_000, stepMs: 20 };

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** `trainyard admin …args` as a child process, on the database `dbEnv` names. */
function admin(dbEnv: Record<string, string>, args: string[]): Promise<Run> {
  const env: Record<string, string> = { ...(process.env as Record<string, string>) };
  for (const name of ['DATABASE_URL', 'TRAINYARD_DB_SCHEMA', 'TRAINYARD_DATA_DIR', 'TRAINYARD_TOKEN', 'TRAINYARD_USER']) delete env[name];
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      [BIN, 'admin', ...args],
      { cwd: REPO_ROOT, env: { ...env, ...dbEnv }, timeout: 120_000 },
      (err, stdout, stderr) => {
        if (err && typeof err.code !== 'number') return reject(new Error(`trainyard admin ${args.join(' ')}: ${err.message}\n${stderr}`));
        resolve({ code: err ? (err.code as number) : 0, stdout, stderr });
      },
    );
  });
}

async function adminOk(dbEnv: Record<string, string>, args: string[]): Promise<string> {
  const r = await admin(dbEnv, args);
  expect(r.code, `trainyard admin ${args.join(' ')}\n${r.stdout}\n${r.stderr}`).toBe(0);
  return r.stdout.trim();
}

/** A plain HTTP call (as curl or a script makes it); the body as JSON when it is JSON. */
async function http(
  url: string,
  method: string,
  path: string,
  opts: { headers?: Record<string, string>; body?: RequestInit['body'] } = {},
) {
  const res = await fetch(`${url}${path}`, { method, headers: opts.headers ?? {}, body: opts.body ?? null });
  const text = await res.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON
  }
  return { status: res.status, headers: res.headers, body: body as Record<string, any>, text };
}

const createBody = JSON.stringify({ model: 'Qwen/Qwen2.5-Coder-0.5B-Instruct', datasetPath: DATASET, config: { simulate: { steps: 1 } } });

function uploadForm(): FormData {
  const form = new FormData();
  form.append('file', new Blob([readFileSync(DATASET)]), 'refused.jsonl');
  return form;
}

for (const backend of backends()) {
  describe.skipIf(!backendAvailable(backend))(`tokens mode on ${backend.kind}`, () => {
    let s: RunningServer;
    let dbEnv: Record<string, string>;
    const tokens: Record<string, string> = {};
    let root: TrainyardClient;
    let alice: TrainyardClient;
    let bob: TrainyardClient;
    const subs: Collected<unknown>[] = [];
    const as = (token: string, headers: Record<string, string> = {}) => connect({ url: s.url, token, headers });

    /**
     * Run the admin CLI while the service runs: at once on Postgres; on PGlite (one process at a
     * time) the service is stopped first and started again after.
     */
    async function adminLive(args: string[]): Promise<string> {
      if (backend.kind === 'postgres') return adminOk(dbEnv, args);
      await s.stop('SIGTERM');
      const out = await adminOk(dbEnv, args);
      s = await s.restart();
      return out;
    }

    beforeAll(async () => {
      const { dataDir, schema, env } = await newServiceData(backend, 'trainyard-tokens-');
      dbEnv = env;
      // The first admin needs no token: the CLI writes to the database before any service runs.
      await adminOk(dbEnv, ['user', 'add', 'root', '--admin']);
      await adminOk(dbEnv, ['user', 'add', 'alice']);
      await adminOk(dbEnv, ['user', 'add', 'bob']);
      for (const name of ['root', 'alice', 'bob'])
        tokens[name] = await adminOk(dbEnv, ['token', 'create', '--user', name, '--expires', '30d']);
      tokens.revoked = await adminOk(dbEnv, ['token', 'create', '--user', 'alice']);
      expect(await adminOk(dbEnv, ['token', 'revoke', tokens.revoked!])).toMatch(/^revoked token tok_/);
      // A token past its expiry (the CLI gives at least a minute): made with the store directly.
      const database = await openDatabase(storageFromEnv(dbEnv));
      tokens.expired = (
        await createToken(database.db, { userName: 'alice', expiresAt: new Date(Date.now() - 60_000).toISOString() })
      ).token;
      await database.close();

      s = await startServer({ backend, dataDir, schema, env: { TRAINYARD_AUTH: 'tokens', TRAINYARD_SCHEDULER: 'fifo' } });
      root = await as(tokens.root!);
      // A header naming another user is ignored: the token says who this is.
      alice = await as(tokens.alice!, { 'x-trainyard-user': 'root' });
      bob = await as(tokens.bob!);
    });
    serverOutputOnFailure(() => s);
    afterEach(async () => {
      for (const sub of subs.splice(0)) sub.stop();
      await drain(root);
    });
    afterAll(async () => {
      await s?.dispose();
    });

    it('no token, a header that is not Bearer, an unknown, an expired or a revoked token: UNAUTHORIZED or 401, and nothing is written', async () => {
      const before = (await eventsOf(root)).length;
      const refused: [string, Record<string, string>][] = [
        ['no token', {}],
        ['Basic', { authorization: 'Basic cm9vdDpyb290' }],
        ['Bearer without a token', { authorization: 'Bearer' }],
        ['unknown', { authorization: `Bearer ty_${'A'.repeat(43)}` }],
        ['garbage', { authorization: "Bearer ty_' OR '1'='1" }],
        ['expired', { authorization: `Bearer ${tokens.expired}` }],
        ['revoked', { authorization: `Bearer ${tokens.revoked}` }],
        ['a good token with more after it', { authorization: `Bearer ${tokens.root} x` }],
      ];
      for (const [what, auth] of refused) {
        const json = { ...auth, 'content-type': 'application/json' };
        const create = await http(s.url, 'POST', '/trpc/tasks.create', { headers: json, body: createBody });
        expect(create.status, what).toBe(401);
        expect(create.body.error.data.code, what).toBe('UNAUTHORIZED');
        const list = await http(s.url, 'GET', '/trpc/tasks.list,users.me?batch=1&input={}', { headers: auth });
        expect(list.status, what).toBe(401);
        expect(
          (list.body as unknown as { error: { data: { code: string } } }[]).map((r) => r.error.data.code),
          what,
        ).toEqual(['UNAUTHORIZED', 'UNAUTHORIZED']);
        for (const [method, path, body] of [
          ['POST', '/api/finetune/create', JSON.stringify({ model_name: 'Qwen/Qwen2.5-Coder-0.5B-Instruct', dataset_file: DATASET })],
          ['GET', '/api/finetune/tasks', undefined],
          ['POST', '/api/finetune/upload-dataset', uploadForm()],
          ['GET', '/v1/models', undefined],
        ] as const) {
          const r = await http(s.url, method, path, {
            headers: typeof body === 'string' ? json : auth,
            ...(body !== undefined ? { body } : {}),
          });
          expect(r.status, `${what}: ${method} ${path}`).toBe(401);
          expect(r.headers.get('www-authenticate'), `${what}: ${method} ${path}`).toMatch(/^Bearer/);
          // Studio's routes answer FastAPI's { detail }, OpenAI's (/v1) its { error: { message } }.
          const said = path.startsWith('/v1/') ? (r.body as unknown as { error: { message: string } }).error.message : r.body.detail;
          expect(said, `${what}: ${method} ${path}`).toMatch(/token/);
        }
      }
      // The typed client without a token, a subscription included.
      expect((await rejection(s.client.tasks.list.query({}))).code).toBe('UNAUTHORIZED');
      const feed = collect((h) => s.client.tasks.onUpdate.subscribe({}, { onData: h.onData, onError: h.onError }));
      subs.push(feed);
      await eventually(async () => feed.errors.length > 0, 'the subscription to be refused');
      expect(errorInfo(feed.errors[0]).code).toBe('UNAUTHORIZED');
      expect(feed.items).toEqual([]);

      expect((await eventsOf(root)).length).toBe(before);
      const uploads = join(s.dataDir, 'datasets', 'uploads');
      expect(existsSync(uploads) ? readdirSync(uploads) : []).toEqual([]);
      // Metrics stay open (aggregates only, for scrapers): see docs/SECURITY.md.
      expect((await http(s.url, 'GET', '/metrics')).status).toBe(200);
    });

    it('fuzz: no Authorization header lets anyone in or breaks the service; a good token still works after', async () => {
      const printable = fc.string({ unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)), maxLength: 120 });
      const header = fc.oneof(
        printable,
        printable.map((t) => `Bearer ${t}`),
        fc.stringMatching(/^[A-Za-z0-9_-]{43}$/).map((t) => `Bearer ty_${t}`),
        fc
          .constantFrom(tokens.expired!, tokens.revoked!, tokens.root!)
          .map((t) => `Bearer ${t.slice(0, -1)}${t.endsWith('A') ? 'B' : 'A'}`),
      );
      await fc.assert(
        fc.asyncProperty(header, async (authorization) => {
          const [trpc, restAnswer] = await Promise.all([
            http(s.url, 'GET', '/trpc/users.me', { headers: { authorization } }),
            http(s.url, 'GET', '/api/finetune/tasks', { headers: { authorization } }),
          ]);
          expect(trpc.status, authorization).toBe(401);
          expect(restAnswer.status, authorization).toBe(401);
        }),
        { numRuns: 150 },
      );
      expect((await root.users.me.query()).name).toBe('root');
    });

    it('users.me says who the token belongs to', async () => {
      expect(await alice.users.me.query()).toMatchObject({
        name: 'alice',
        admin: false,
        auth: 'tokens',
        token: { id: expect.stringMatching(/^tok_/) },
      });
      expect(await root.users.me.query()).toMatchObject({ name: 'root', admin: true, auth: 'tokens' });
      expect((await alice.users.me.query()).token!.expiresAt).not.toBeNull();
    });

    it("system.health over HTTP: a user's token gets whether it works and no detail; an admin's gets where things are", async () => {
      const healthAs = async (token: string) => {
        const r = await http(s.url, 'GET', '/trpc/system.health', { headers: { authorization: `Bearer ${token}` } });
        expect(r.status).toBe(200);
        return { health: r.body.result.data as { ok: boolean; detail: unknown }, text: r.text };
      };
      const user = await healthAs(tokens.alice!);
      expect(user.health).toMatchObject({ ok: true, detail: null });
      for (const secret of [s.dataDir, hostname()]) expect(user.text, secret).not.toContain(secret);
      const admin = await healthAs(tokens.root!);
      expect(admin.health.detail).toMatchObject({ runsDir: expect.stringContaining(s.dataDir) });
    });

    it("a user sees, follows, cancels and deletes only their own tasks: another's reads as not found; an admin sees all; events name who did it", async () => {
      // alice follows everything she may see from the start.
      const aliceFeed = collect<{ event: { streamId: string; type: string } }>((h) =>
        alice.tasks.onUpdate.subscribe({}, { onData: h.onData, onError: h.onError }),
      );
      subs.push(aliceFeed as Collected<unknown>);
      const b1 = await bob.tasks.create.mutate(simulated(LONG, { name: 'bob-1' }));
      await waitFor(root, b1.id, 'TRAINING');
      const b2 = await bob.tasks.create.mutate(simulated(LONG, { name: 'bob-2' }));
      const a = await alice.tasks.create.mutate(simulated(LONG, { name: 'alice-1' }));
      expect(a.spec.owner).toBe('alice');
      expect(b1.spec.owner).toBe('bob');
      expect([b2.status, a.status]).toEqual(['QUEUED', 'QUEUED']);

      // Another user's task is answered exactly as a task that does not exist.
      const notFound = async (p: Promise<unknown>, id: string) => {
        const e = await rejection(p);
        expect(e.code).toBe('NOT_FOUND');
        return e.message.split(id).join('<id>');
      };
      const missing = 'tnosuchtask0000000000';
      expect(await notFound(alice.tasks.get.query({ id: b1.id }), b1.id)).toBe(
        await notFound(alice.tasks.get.query({ id: missing }), missing),
      );
      await notFound(alice.tasks.cancel.mutate({ id: b1.id }), b1.id);
      await notFound(alice.tasks.delete.mutate({ id: b1.id }), b1.id);
      await notFound(alice.tasks.logs.query({ id: b1.id }), b1.id);
      await notFound(alice.events.replay.query({ taskId: b1.id }), b1.id);
      for (const sub of [
        collect((h) => alice.tasks.onUpdate.subscribe({ taskId: b1.id }, { onData: h.onData, onError: h.onError })),
        collect((h) => alice.tasks.onLogs.subscribe({ id: b1.id }, { onData: h.onData, onError: h.onError })),
      ]) {
        subs.push(sub);
        await eventually(async () => sub.errors.length > 0, 'following a task of another user to be refused');
        expect(errorInfo(sub.errors[0]).code).toBe('NOT_FOUND');
        expect(sub.items).toEqual([]);
      }
      expect((await root.tasks.get.query({ id: b1.id })).status).toBe('TRAINING');

      // Lists and the audit log hold the caller's own tasks; an admin's hold all.
      expect((await alice.tasks.list.query({})).items.map((t) => t.id)).toEqual([a.id]);
      expect((await bob.tasks.list.query({})).items.map((t) => t.id).sort()).toEqual([b1.id, b2.id].sort());
      expect((await root.tasks.list.query({})).items.map((t) => t.id).sort()).toEqual([a.id, b1.id, b2.id].sort());
      expect((await alice.events.list.query({ taskId: b1.id })).events).toEqual([]);
      expect(new Set((await eventsOf(alice)).map((e) => e.streamId))).toEqual(new Set([a.id]));

      // The queue: alice's task at its place in the whole queue (which place the policy gives it
      // is the policy's affair); of bob's tasks only places and memory.
      const q = await alice.queue.get.query();
      const full = await root.queue.get.query();
      expect(full.hidden).toBeNull();
      expect(full.queued.map((e) => e.task.id).sort()).toEqual([a.id, b2.id].sort());
      const place = full.queued.find((e) => e.task.id === a.id)!.position;
      expect(q.queued.map((e) => [e.task.id, e.position])).toEqual([[a.id, place]]);
      expect(q.hidden?.queuedPositions).toEqual([3 - place]);
      expect(q.devices.flatMap((d) => d.holders)).toEqual([]);
      expect(q.hidden?.holders).toHaveLength(1);
      expect(q.queuedCount).toBe(2);
      expect(JSON.stringify(q)).not.toContain(b1.id);
      expect(JSON.stringify(q)).not.toContain(b2.id);
      // Where the admin's view names bob's task in alice's wait reason, hers says whose it is not.
      const reasonForRoot = full.queued.find((e) => e.task.id === a.id)!.reason.message;
      if (reasonForRoot.includes(b2.id) || reasonForRoot.includes(b1.id))
        expect(q.queued[0]!.reason.message).toContain("another user's task");
      else expect(q.queued[0]!.reason.message).toBe(reasonForRoot);

      // The REST API answers the same.
      const restAs = (token: string, method: string, path: string) =>
        http(s.url, method, path, { headers: { authorization: `Bearer ${token}` } });
      expect(
        ((await restAs(tokens.alice!, 'GET', '/api/finetune/tasks')).body as unknown as { task_id: string }[]).map((t) => t.task_id),
      ).toEqual([a.id]);
      expect((await restAs(tokens.alice!, 'GET', `/api/finetune/tasks/${b1.id}`)).status).toBe(404);
      expect((await restAs(tokens.alice!, 'POST', `/api/finetune/tasks/${b1.id}/cancel`)).status).toBe(404);
      expect((await restAs(tokens.alice!, 'DELETE', `/api/finetune/tasks/${b1.id}`)).status).toBe(404);
      expect((await restAs(tokens.root!, 'GET', `/api/finetune/tasks/${b1.id}`)).status).toBe(200);
      expect((await root.tasks.get.query({ id: b1.id })).status).toBe('TRAINING');

      // An admin cancels bob's queued task; bob's own audit log answers who did it.
      await root.tasks.cancel.mutate({ id: b2.id, reason: 'making room' });
      const cancelled = (await bob.events.list.query({ taskId: b2.id, type: 'TaskCancelled' })).events;
      expect(cancelled.map((e) => e.metadata.actor)).toEqual(['root']);
      expect((await bob.events.list.query({ taskId: b2.id, type: 'TaskSubmitted' })).events[0]!.metadata.actor).toBe('bob');
      // alice's events are hers, whatever her x-trainyard-user header says.
      await alice.tasks.cancel.mutate({ id: a.id });
      const mine = await eventsOf(alice);
      expect(mine.find((e) => e.type === 'TaskSubmitted')?.metadata.actor).toBe('alice');
      expect(mine.find((e) => e.type === 'TaskCancelled')?.metadata.actor).toBe('alice');
      await bob.tasks.cancel.mutate({ id: b1.id });
      await waitTerminal(bob, b1.id);
      expect((await bob.events.list.query({ taskId: b1.id, type: 'StopRequested' })).events[0]!.metadata.actor).toBe('bob');
      await bob.tasks.delete.mutate({ id: b1.id });
      expect((await rejection(bob.tasks.get.query({ id: b1.id }))).code).toBe('NOT_FOUND');

      // alice's live feed carried her task's changes and nothing of bob's.
      await eventually(async () => aliceFeed.items.some((i) => i.data.event.type === 'TaskCancelled'), "alice's cancel on her feed");
      expect(aliceFeed.errors).toEqual([]);
      expect(new Set(aliceFeed.items.map((i) => i.data.event.streamId))).toEqual(new Set([a.id]));
    });

    it('the admin CLI makes a user and a token that works at once; a revoked token is refused from the next request on', async () => {
      if (backend.kind === 'pglite') {
        // One process at a time on PGlite: the CLI will not open the database under a running service.
        const r = await admin(dbEnv, ['user', 'list']);
        expect(r.code).toBe(1);
        expect(r.stderr).toMatch(/has the embedded database .* open.*stop the service/s);
      }
      await adminLive(['user', 'add', 'carol']);
      const token = await adminLive(['token', 'create', '--user', 'carol', '--expires', '1h']);
      expect(token).toMatch(/^ty_[A-Za-z0-9_-]{43}$/);
      const carol = await as(token);
      expect(await carol.users.me.query()).toMatchObject({ name: 'carol', admin: false });
      const t = await carol.tasks.create.mutate(simulated({ steps: 1, stepMs: 1 }, { name: 'carol-1' }));
      expect(t.spec.owner).toBe('carol');
      await waitTerminal(carol, t.id);

      await adminLive(['token', 'revoke', token.slice(0, 10)]);
      expect((await rejection(carol.users.me.query())).code).toBe('UNAUTHORIZED');
      expect((await rejection(carol.tasks.get.query({ id: t.id }))).code).toBe('UNAUTHORIZED');
      // Others are unaffected.
      expect((await root.tasks.get.query({ id: t.id })).spec.owner).toBe('carol');
    });
  });
}

describe('binding to a non-loopback address', () => {
  const pglite: Backend = backends().find((b) => b.kind === 'pglite')!;
  let s: RunningServer | undefined;
  afterAll(async () => {
    await s?.dispose();
  });

  it('is refused at start-up without tokens mode, with how to enable it', async () => {
    const err = await startServer({ backend: pglite, env: { HOST: '0.0.0.0' } }).then(
      (started) => {
        s = started;
        throw new Error('the service started on 0.0.0.0 in local mode');
      },
      (e: Error) => e,
    );
    expect(err.message).toMatch(/exited with 2 before listening/);
    expect(err.message).toMatch(/HOST="0\.0\.0\.0" is not a loopback address/);
    expect(err.message).toMatch(/TRAINYARD_AUTH=tokens/);
    expect(err.message).toMatch(/trainyard admin user add NAME --admin/);
  });

  it('starts in tokens mode, and then wants a token', async () => {
    s = await startServer({ backend: pglite, env: { HOST: '0.0.0.0', TRAINYARD_AUTH: 'tokens' } });
    expect((await rejection(s.client.users.me.query())).code).toBe('UNAUTHORIZED');
  });
});

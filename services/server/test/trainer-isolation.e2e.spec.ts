// Issue 10, findings 4, 5 and 7 (output folders), performed for real: a service with secrets in
// its environment and a trainer that dumps what it gets; a dataset folder swapped for a symbolic
// link while its task waits in the queue; paths outside the datasets roots; uploads; two tasks
// asking for one output folder.
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import {
  copyFileSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  realpathSync,
  renameSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { connect } from 'node:net';
import { join } from 'node:path';
import type { TaskRecord } from '@trainyard/domain';
import { backendAvailable, backends } from '@trainyard/store/testing';
import { DATASET, eventually, REPO_ROOT, startServer, type RunningServer } from './harness';
import { callApi } from './torture/procs';

const TRAINER = JSON.stringify(['node', join(REPO_ROOT, 'services/server/test/fixtures/inspecting-trainer.mjs')]);
const SECRETS = { PGPASSWORD: 'pg-secret-7f3a', HF_TOKEN: 'hf_secret_91bc', AWS_SECRET_ACCESS_KEY: 'aws-secret-c0de' };
const UPLOAD = '/api/finetune/upload-dataset';

/** Every file and folder under `dir` with its permission bits. */
function modesUnder(dir: string): { path: string; dir: boolean; mode: number }[] {
  const out: { path: string; dir: boolean; mode: number }[] = [];
  const walk = (p: string) => {
    const st = lstatSync(p);
    out.push({ path: p, dir: st.isDirectory(), mode: st.mode & 0o777 });
    if (st.isDirectory()) for (const n of readdirSync(p)) walk(join(p, n));
  };
  walk(dir);
  return out;
}

/**
 * Posts a multipart form with one file, written to the socket in one piece: a refusal answered
 * before the body is read (the Host/Origin guard closes the connection) still reaches us.
 */
async function upload(url: string, name: string, content: string, headers: Record<string, string> = {}) {
  const boundary = `----trainyard${Date.now()}`;
  const payload = Buffer.from(
    `--${boundary}\r\ncontent-disposition: form-data; name="file"; filename="${name}"\r\ncontent-type: application/octet-stream\r\n\r\n${content}\r\n--${boundary}--\r\n`,
  );
  const { host, port } = new URL(url);
  const head = [
    `POST ${UPLOAD} HTTP/1.1`,
    `host: ${host}`,
    `content-type: multipart/form-data; boundary=${boundary}`,
    `content-length: ${payload.length}`,
    'connection: close',
    ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`),
  ];
  const raw = await new Promise<string>((resolve, reject) => {
    const chunks: Buffer[] = [];
    const sock = connect(Number(port), '127.0.0.1', () =>
      sock.write(Buffer.concat([Buffer.from(`${head.join('\r\n')}\r\n\r\n`), payload])),
    );
    sock.on('data', (c) => chunks.push(c));
    sock.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    sock.on('error', (err) => (chunks.length ? resolve(Buffer.concat(chunks).toString('utf8')) : reject(err)));
  });
  const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(raw)?.[1]);
  let text = raw.slice(raw.indexOf('\r\n\r\n') + 4);
  // A chunked answer: one chunk is all these short bodies need.
  if (/\r\ntransfer-encoding: chunked/i.test(raw.slice(0, raw.indexOf('\r\n\r\n'))))
    text = text
      .slice(text.indexOf('\r\n') + 2)
      .replace(/\r\n0\r\n\r\n$/, '')
      .replace(/\r\n$/, '');
  let body: { file_path?: string; filename?: string; error?: { message: string; field: string } } | null = null;
  try {
    body = JSON.parse(text);
  } catch {
    // a refusal before the route (Host/Origin guard) answers plain text
  }
  return { status, body, text };
}

for (const backend of backends()) {
  describe.skipIf(!backendAvailable(backend))(
    `a trainer gets no secrets, a dataset no races, a task its own outputs (${backend.kind})`,
    () => {
      let s: RunningServer | null = null;
      let base: string;
      let root: string;
      let outside: string;

      beforeAll(() => {
        base = realpathSync(mkdtempSync(join(tmpdir(), 'trainyard-isolation-')));
        root = join(base, 'root');
        outside = join(base, 'outside');
        mkdirSync(join(root, 'ds'), { recursive: true });
        mkdirSync(join(root, 'ds2'), { recursive: true });
        mkdirSync(outside);
        copyFileSync(DATASET, join(root, 'ds', 'train.jsonl'));
        copyFileSync(DATASET, join(root, 'ds2', 'train.jsonl'));
        copyFileSync(DATASET, join(root, 'plain.jsonl'));
        writeFileSync(join(outside, 'train.jsonl'), '{"text":"OUTSIDE-SECRET"}\n');
      });
      afterEach(async () => {
        await s?.dispose();
        s = null;
      });
      afterAll(() => rmSync(base, { recursive: true, force: true }));

      const create = (over: Record<string, unknown>) =>
        callApi<TaskRecord>(s!.url, 'tasks.create', {
          model: 'Qwen/Qwen2.5-Coder-0.5B-Instruct',
          datasetPath: join(root, 'plain.jsonl'),
          config: { epochs: 1 },
          ...over,
        });
      const settled = (id: string) =>
        eventually(
          async () => {
            const t = await s!.client.tasks.get.query({ id });
            return t.status === 'COMPLETED' || t.status === 'FAILED' || t.status === 'CANCELLED' ? t : null;
          },
          `task ${id} to end`,
          60_000,
        );
      const outputOf = (t: TaskRecord) => join(s!.dataDir, 'outputs', t.spec.outputDir);

      it('finding 4: secrets stay out of the trainer and the run files; run files are 0600 in 0700 folders', async () => {
        s = await startServer({ backend, env: { ...SECRETS, TRAINYARD_TRAINER: TRAINER, TRAINYARD_DATASETS_ROOT: root } });
        const r = await create({ name: 'env' });
        expect(r.ok, JSON.stringify(r)).toBe(true);
        if (!r.ok) return;
        const done = await settled(r.data.id);
        expect(done.status, JSON.stringify(done.error)).toBe('COMPLETED');
        const env = JSON.parse(readFileSync(join(outputOf(done), 'env.json'), 'utf8')) as Record<string, string>;
        for (const name of Object.keys(SECRETS)) expect(env[name], name).toBeUndefined();
        expect(env.DATABASE_URL).toBeUndefined();
        expect(
          Object.keys(env)
            .filter((k) => k.startsWith('TRAINYARD_'))
            .sort(),
        ).toEqual(['TRAINYARD_OUTPUT_DIR', 'TRAINYARD_TASK_ID', 'TRAINYARD_TASK_SPEC']);
        expect(env.PATH).toBeTruthy();
        expect(env.CUDA_VISIBLE_DEVICES).toBe('0');

        const runs = join(s.dataDir, 'runs');
        // The finished run's dataset copy is removed in the background: walk what stays.
        const attempt = join(runs, done.id, 'attempt-1');
        await vi.waitFor(() => expect(readdirSync(attempt)).not.toContain('dataset'), { timeout: 5_000 });
        const entries = modesUnder(runs);
        expect(entries.some((e) => e.path.endsWith('launch.json'))).toBe(true);
        expect(entries.some((e) => e.path.endsWith('output.jsonl'))).toBe(true);
        for (const e of entries) {
          expect(e.mode.toString(8), e.path).toBe(e.dir ? '700' : '600');
          if (e.dir) continue;
          const text = readFileSync(e.path, 'utf8');
          for (const [name, value] of Object.entries(SECRETS)) expect(text.includes(value), `${name} in ${e.path}`).toBe(false);
        }
        // The trainer printed its environment: what is stored of it holds no secret either.
        const { lines } = await s.client.tasks.logs.query({ id: done.id, limit: 5000 });
        expect(lines.some((l) => l.line.startsWith('env '))).toBe(true);
        for (const value of Object.values(SECRETS)) expect(lines.some((l) => l.line.includes(value))).toBe(false);

        // The operator passes one on purpose: that one, and only that one, reaches the trainer.
        s = await s.restart({ TRAINYARD_TRAINER_ENV: 'HF_TOKEN' });
        const again = await create({ name: 'env-pass' });
        expect(again.ok).toBe(true);
        if (!again.ok) return;
        const passed = await settled(again.data.id);
        const env2 = JSON.parse(readFileSync(join(outputOf(passed), 'env.json'), 'utf8')) as Record<string, string>;
        expect(env2.HF_TOKEN).toBe(SECRETS.HF_TOKEN);
        expect(env2.PGPASSWORD).toBeUndefined();
        expect(env2.AWS_SECRET_ACCESS_KEY).toBeUndefined();
        expect(readFileSync(join(runs, again.data.id, 'attempt-1', 'launch.json'), 'utf8')).not.toContain(SECRETS.PGPASSWORD);
      });

      it('finding 5: a dataset swapped for a symbolic link while queued fails its task; the trainer reads a checked copy', async () => {
        s = await startServer({ backend, env: { TRAINYARD_TRAINER: TRAINER, TRAINYARD_DATASETS_ROOT: root, TRAINYARD_GPU_SLOTS: '1' } });
        const hold = await create({ name: 'hold-slot' });
        expect(hold.ok).toBe(true);
        if (!hold.ok) return;
        await eventually(
          async () => (await s!.client.tasks.get.query({ id: hold.data.id })).status === 'TRAINING',
          'the holding task to train',
        );
        const swapped = await create({ name: 'swapped', datasetPath: join(root, 'ds') });
        const inner = await create({ name: 'inner-link', datasetPath: join(root, 'ds2') });
        const fine = await create({ name: 'fine', datasetPath: join(root, 'plain.jsonl') });
        for (const r of [swapped, inner, fine]) {
          expect(r.ok, JSON.stringify(r)).toBe(true);
          if (r.ok) expect(r.data.status).toBe('QUEUED');
        }
        if (!swapped.ok || !inner.ok || !fine.ok) return;
        expect(swapped.data.spec.datasetPath).toBe(join(root, 'ds'));

        // The attack: the folder becomes a link out of the root; a file inside the other one too.
        renameSync(join(root, 'ds'), join(root, 'ds-before'));
        symlinkSync(outside, join(root, 'ds'));
        rmSync(join(root, 'ds2', 'train.jsonl'));
        symlinkSync(join(outside, 'train.jsonl'), join(root, 'ds2', 'train.jsonl'));
        writeFileSync(join(outputOf(hold.data), 'release'), '');

        const a = await settled(swapped.data.id);
        expect(a.status).toBe('FAILED');
        expect(a.error?.message).toBe(
          `dataset ${join(root, 'ds')} is no longer inside the datasets root (it was moved or replaced by a symbolic link after the task was submitted)`,
        );
        const b = await settled(inner.data.id);
        expect(b.status).toBe('FAILED');
        expect(b.error?.message).toMatch(/is no longer inside the datasets root \(train\.jsonl leads out of it\)/);
        for (const t of [a, b]) expect(() => readFileSync(join(outputOf(t), 'dataset.json'))).toThrow();

        const c = await settled(fine.data.id);
        expect(c.status).toBe('COMPLETED');
        const seen = JSON.parse(readFileSync(join(outputOf(c), 'dataset.json'), 'utf8')) as { path: string; files: Record<string, string> };
        expect(seen.path).toBe(join(s.dataDir, 'runs', c.id, 'attempt-1', 'dataset', 'plain.jsonl'));
        expect(seen.files['.']).toBe(readFileSync(DATASET, 'utf8'));
        // The copy goes once the run ended (removed in the background, after the next launch); the original stays.
        const runDir = join(s.dataDir, 'runs', c.id, 'attempt-1');
        await vi.waitFor(() => expect(readdirSync(runDir)).not.toContain('dataset'), { timeout: 5_000 });
      });

      it('finding 5: outside the roots and absent get one answer; uploads are checked and refused cross-origin', async () => {
        s = await startServer({
          backend,
          env: { TRAINYARD_TRAINER: TRAINER, TRAINYARD_DATASETS_ROOT: root, TRAINYARD_UPLOAD_MAX_BYTES: '1000' },
        });
        const answers: string[] = [];
        for (const path of [join(outside, 'train.jsonl'), '/etc/passwd', join(root, 'absent.jsonl'), '/no/such/file.jsonl', DATASET]) {
          const r = await create({ datasetPath: path });
          expect(r.ok, path).toBe(false);
          if (r.ok) continue;
          expect(r.error.code).toBe('BAD_REQUEST');
          const [message] = r.error.fieldErrors?.datasetPath ?? [];
          expect(message, path).toContain('not found or not allowed');
          answers.push(message!.replace(path, 'PATH'));
        }
        expect(new Set(answers).size).toBe(1);

        const good = await upload(s.url, 'my data.jsonl', '{"text":"uploaded"}\n{"text":"two"}\n');
        expect(good.status, good.text).toBe(201);
        expect(good.body?.filename).toBe('my_data.jsonl');
        const stored = good.body!.file_path!;
        expect(stored.startsWith(join(s.dataDir, 'datasets', 'uploads') + '/')).toBe(true);
        expect(lstatSync(stored).mode & 0o777).toBe(0o600);
        const t = await create({ datasetPath: stored });
        expect(t.ok, JSON.stringify(t)).toBe(true);
        if (t.ok) {
          const done = await settled(t.data.id);
          expect(done.status).toBe('COMPLETED');
          const seen = JSON.parse(readFileSync(join(outputOf(done), 'dataset.json'), 'utf8')) as { files: Record<string, string> };
          expect(seen.files['.']).toBe('{"text":"uploaded"}\n{"text":"two"}\n');
        }

        const notJson = await upload(s.url, 'data.jsonl', '{"text":"ok"}\nthis is not json\n');
        expect(notJson.status).toBe(400);
        expect(notJson.body?.error).toMatchObject({ field: 'file' });
        expect(notJson.body?.error?.message).toMatch(/line 2 is not JSON/);
        const csv = await upload(s.url, 'data.csv', 'a,b\n1,2\n');
        expect(csv.status).toBe(400);
        expect(csv.body?.error?.message).toMatch(/not a \.json or \.jsonl file/);
        const large = await upload(s.url, 'large.jsonl', `${'{"text":"0123456789"}\n'.repeat(100)}`);
        expect(large.status).toBe(413);
        expect(large.body?.error?.message).toMatch(/larger than the upload limit of 1000 bytes/);
        const foreign = await upload(s.url, 'data.jsonl', '{"text":"x"}\n', { origin: 'http://attacker.example' });
        expect(foreign.status).toBe(403);
        const crossSite = await upload(s.url, 'data.jsonl', '{"text":"x"}\n', { 'sec-fetch-site': 'cross-site' });
        expect(crossSite.status).toBe(403);
        // Refused uploads leave nothing behind.
        expect(readdirSync(join(s.dataDir, 'datasets', 'uploads'))).toEqual([stored.split('/').pop()]);
      });

      it('finding 7: two tasks given one outputDir write to two folders', async () => {
        s = await startServer({ backend, env: { TRAINYARD_TRAINER: TRAINER, TRAINYARD_DATASETS_ROOT: root } });
        const first = await create({ outputDir: 'shared/run' });
        const second = await create({ outputDir: 'shared/run' });
        expect(first.ok && second.ok).toBe(true);
        if (!first.ok || !second.ok) return;
        expect(first.data.spec.outputDir).toBe(`${first.data.id}/shared/run`);
        expect(second.data.spec.outputDir).toBe(`${second.data.id}/shared/run`);
        // Asking for the other task's folder by name still nests under one's own id.
        const third = await create({ outputDir: first.data.spec.outputDir });
        expect(third.ok).toBe(true);
        if (!third.ok) return;
        expect(third.data.spec.outputDir.startsWith(`${third.data.id}/`)).toBe(true);
        for (const t of [first.data, second.data, third.data]) {
          const done = await settled(t.id);
          expect(done.status).toBe('COMPLETED');
          expect(readFileSync(join(outputOf(done), 'owner.txt'), 'utf8')).toBe(t.id);
        }
      });
    },
  );
}

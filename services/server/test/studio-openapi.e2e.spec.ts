// /openapi.json against the running server (issue 16): a valid OpenAPI 3.1 document; it lists
// exactly Studio's contract; every documented operation is served and answers only statuses the
// document gives it; on a documented path every other method is a 405 naming exactly the
// documented ones, and paths it does not list are 404s: what is served is what is documented.
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Validator } from '@seriousme/openapi-schema-validator';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backends } from '@trainyard/store/testing';
import { DATASET, eventually, startServer, type RunningServer } from './harness';
import { rest } from './studio-support';

/** Studio's fine-tune panel's routes, as issue 16 lists them. */
const STUDIO_CONTRACT = [
  'GET /api/system/gpu-info',
  'POST /api/finetune/upload-dataset',
  'POST /api/finetune/create',
  'GET /api/finetune/tasks',
  'GET /api/finetune/tasks/{task_id}',
  'POST /api/finetune/tasks/{task_id}/cancel',
  'DELETE /api/finetune/tasks/{task_id}',
  'GET /api/finetune/tasks/{task_id}/download',
  'GET /api/finetune/models',
  'GET /api/finetune/current-model',
  'POST /api/finetune/switch-model',
  'POST /api/finetune/use-as-backend',
  'POST /api/finetune/prepare-sage-docs',
];
const METHODS = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'];

interface Operation {
  responses: Record<string, unknown>;
  requestBody?: { content: Record<string, unknown> };
  parameters?: { name: string; in: string; required: boolean }[];
}
interface Document {
  openapi: string;
  info: { version: string };
  paths: Record<string, Record<string, Operation>>;
  components: { schemas: Record<string, unknown> };
}

describe('the OpenAPI document of the REST routes', () => {
  let s: RunningServer;
  let tmp: string;
  let doc: Document;
  const operations = () =>
    Object.entries(doc.paths).flatMap(([path, ops]) =>
      Object.entries(ops).map(([method, op]) => ({ path, method: method.toUpperCase(), op })),
    );

  beforeAll(async () => {
    tmp = mkdtempSync(join(tmpdir(), 'trainyard-openapi-'));
    copyFileSync(DATASET, join(tmp, 'data.jsonl'));
    s = await startServer({ backend: backends()[0]!, env: { TRAINYARD_DATASETS_ROOT: tmp } });
    const r = await rest<Document>(s.url, 'GET', '/openapi.json');
    expect(r.status).toBe(200);
    doc = r.body;
  });

  afterAll(async () => {
    await s?.dispose();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  it('is a valid OpenAPI 3.1 document whose references all resolve', async () => {
    const result = await new Validator().validate(structuredClone(doc) as never);
    expect(result.errors ?? []).toEqual([]);
    expect(result.valid).toBe(true);
    expect(doc.openapi).toBe('3.1.0');
    expect(doc.info.version).toBe((await s.client.system.health.query()).version);
    const refs = [...JSON.stringify(doc).matchAll(/"\$ref":"#\/components\/schemas\/([^"]+)"/g)].map((m) => m[1]!);
    expect(refs.length).toBeGreaterThan(10);
    for (const ref of refs) expect(doc.components.schemas, ref).toHaveProperty(ref);
    for (const { op } of operations()) expect(Object.keys(op.responses)).toEqual(expect.arrayContaining(['500', '503']));
  });

  it("lists exactly Studio's contract", () => {
    expect(
      operations()
        .map((o) => `${o.method} ${o.path}`)
        .sort(),
    ).toEqual([...STUDIO_CONTRACT].sort());
  });

  it('every documented operation is served and answers a status the document gives it', async () => {
    const created = await rest<{ task_id: string }>(s.url, 'POST', '/api/finetune/create', {
      json: { model_name: 'Qwen/Qwen2.5-Coder-0.5B-Instruct', dataset_file: join(tmp, 'data.jsonl'), num_epochs: 1 },
    });
    expect(created.status, created.text).toBe(200);
    const id = created.body.task_id;
    await eventually(
      async () => (await rest<{ status: string }>(s.url, 'GET', `/api/finetune/tasks/${id}`)).body.status === 'completed',
      'the task to complete',
    );
    // The deletion last: the other operations use the task.
    const ordered = operations().sort((a, b) => Number(a.method === 'DELETE') - Number(b.method === 'DELETE'));
    for (const { path, method, op } of ordered) {
      let url = path.replace('{task_id}', id);
      const required = (op.parameters ?? []).filter((p) => p.in === 'query' && p.required);
      if (required.length)
        url += `?${required.map((p) => `${p.name}=${encodeURIComponent('Qwen/Qwen2.5-Coder-0.5B-Instruct')}`).join('&')}`;
      let r;
      if (op.requestBody?.content['multipart/form-data']) {
        const form = new FormData();
        form.append('file', new Blob(['{"text":"a"}\n']), 'a.jsonl');
        r = await rest(s.url, method, url, { body: form });
      } else {
        r = await rest(s.url, method, url, op.requestBody ? { json: {} } : {});
      }
      const what = `${method} ${path} → ${r.status} ${r.text.slice(0, 200)}`;
      expect(Object.keys(op.responses), what).toContain(String(r.status));
      expect(r.text, what).not.toMatch(/no route/);
    }
  });

  it('on a documented path every other method is a 405 naming the documented ones; an undocumented path is a 404', async () => {
    for (const [path, ops] of Object.entries(doc.paths)) {
      const documented = Object.keys(ops).map((m) => m.toUpperCase());
      for (const method of METHODS.filter((m) => !documented.includes(m))) {
        const r = await rest(s.url, method, path.replace('{task_id}', 'tsomeid'));
        expect(r.status, `${method} ${path}`).toBe(405);
        expect(r.headers.get('allow')?.split(', ').sort(), `${method} ${path}`).toEqual(documented.sort());
      }
    }
    for (const path of [
      '/api',
      '/api/system',
      '/api/finetune',
      '/api/finetune/models/base',
      '/api/finetune/tasks/tsomeid/logs',
      '/api/finetune/upload',
      '/api/v1/tasks',
    ])
      for (const method of METHODS) {
        const r = await rest(s.url, method, path);
        expect(r.status, `${method} ${path}`).toBe(404);
        expect(r.text).toMatch(/no route/);
      }
    expect((await rest(s.url, 'POST', '/openapi.json')).status).toBe(405);
  });
});

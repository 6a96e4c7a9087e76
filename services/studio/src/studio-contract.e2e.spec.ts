// SAGE Studio's REST contract in a real headless Chromium (issue 16): a small page that uses only
// fetch, in the shapes Studio's fine-tune panel uses (GPU info, models and current model once on
// load, the task list polled every 3 s and rendered with the number and date methods Studio
// calls, upload and create with only model_name and dataset_file, cancel and delete without a
// body), served the way Studio's dev server serves its panel: from another port that proxies
// /api to Trainyard, keeping the browser's Host and Origin, with that address in
// TRAINYARD_ALLOWED_HOSTS as the README says. Any page error fails the spec.
import { createServer, request, type Server } from 'node:http';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backends } from '@trainyard/store/testing';
import { DATASET, freePort, installFakeNvidiaSmi, startServer, type RunningServer } from '@trainyard/server/testing';
import { CHROMIUM, CHROMIUM_ARGS, hasChromium } from './e2e-kit';

const WAIT = 60_000;
const MODEL = 'Qwen/Qwen2.5-Coder-0.5B-Instruct';

const PAGE = `<!doctype html>
<meta charset="utf-8"><title>fine-tune</title>
<p id="gpu"></p><p id="current"></p><ul id="models"></ul>
<form id="create"><input type="file" id="file" accept=".json,.jsonl"><button id="submit">create</button></form>
<p id="result"></p>
<table><tbody id="tasks"></tbody></table>
<script src="/page.js"></script>`;

// What Studio's FinetunePanel does with fetch, and how it renders a task.
const SCRIPT = `
const $ = (id) => document.getElementById(id);
let polls = 0;
async function json(r) { if (!r.ok) throw new Error((await r.json()).detail); return r.json(); }
async function loadTasks() {
  const r = await fetch('/api/finetune/tasks');
  if (!r.ok) return;
  const tasks = await r.json();
  polls += 1;
  document.body.dataset.polls = String(polls);
  $('tasks').replaceChildren(...tasks.map((t) => {
    const tr = document.createElement('tr');
    tr.dataset.taskId = t.task_id;
    tr.dataset.status = t.status;
    const cell = (text) => { const td = document.createElement('td'); td.textContent = text; tr.append(td); };
    cell(t.task_id); cell(t.model_name); cell(t.status);
    cell(Math.round(t.progress) + '% | Epoch ' + t.current_epoch + '/' + t.total_epochs + ' | Loss: ' + t.loss.toFixed(4));
    cell(new Date(t.created_at).toLocaleString('zh-CN'));
    cell(t.logs.join('\\n').slice(-200));
    if (t.status === 'training' || t.status === 'preparing' || t.status === 'queued') {
      const b = document.createElement('button'); b.textContent = 'cancel'; b.className = 'cancel';
      b.onclick = async () => { const r = await fetch('/api/finetune/tasks/' + t.task_id + '/cancel', { method: 'POST' }); $('result').textContent = (await r.json()).message; loadTasks(); };
      tr.append(b);
    }
    if (t.status === 'failed' || t.status === 'completed' || t.status === 'cancelled') {
      const b = document.createElement('button'); b.textContent = 'delete'; b.className = 'delete';
      b.onclick = async () => { const r = await fetch('/api/finetune/tasks/' + t.task_id, { method: 'DELETE' }); $('result').textContent = (await r.json()).message; loadTasks(); };
      tr.append(b);
    }
    return tr;
  }));
}
async function load() {
  const gpu = await json(await fetch('/api/system/gpu-info'));
  $('gpu').textContent = gpu.count + ' GPU: ' + gpu.devices.map((d) => d.name + ' ' + d.memory_gb + 'GB').join(', ') + ' | ' + gpu.recommendation;
  const models = await json(await fetch('/api/finetune/models'));
  $('models').replaceChildren(...models.map((m) => { const li = document.createElement('li'); li.textContent = m.type + ' ' + m.name; return li; }));
  $('current').textContent = 'current: ' + (await json(await fetch('/api/finetune/current-model'))).current_model;
  await loadTasks();
  setInterval(loadTasks, 3000);
}
$('create').onsubmit = async (e) => {
  e.preventDefault();
  try {
    const form = new FormData();
    form.append('file', $('file').files[0]);
    const up = await json(await fetch('/api/finetune/upload-dataset', { method: 'POST', body: form }));
    const t = await json(await fetch('/api/finetune/create', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ model_name: '${MODEL}', dataset_file: up.file_path }) }));
    $('result').textContent = 'created ' + t.task_id + ' ' + t.status + ' warnings ' + t.warnings.length;
    $('result').dataset.taskId = t.task_id;
    loadTasks();
  } catch (err) { $('result').textContent = 'error: ' + err.message; }
};
load();
`;

/** Studio's dev server: the page, and /api passed on to Trainyard with the browser's headers. */
function studioDevServer(port: number, target: number): Promise<Server> {
  const server = createServer((req, res) => {
    if (req.url?.startsWith('/api/')) {
      const upstream = request({ host: '127.0.0.1', port: target, method: req.method, path: req.url, headers: req.headers }, (up) => {
        res.writeHead(up.statusCode ?? 502, up.headers);
        up.pipe(res);
      });
      upstream.on('error', () => res.writeHead(502).end());
      req.pipe(upstream);
      return;
    }
    if (req.url === '/page.js') return void res.writeHead(200, { 'content-type': 'text/javascript' }).end(SCRIPT);
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(PAGE);
  });
  return new Promise((resolve) => server.listen(port, '127.0.0.1', () => resolve(server)));
}

describe.skipIf(!hasChromium)("a page in Studio's shapes, through a dev-server proxy", () => {
  let s: RunningServer;
  let dev: Server;
  let browser: Browser;
  let page: Page;
  let tmp: string;
  let devUrl: string;
  const pageErrors: string[] = [];
  const row = (id: string) => page.locator(`tr[data-task-id="${id}"]`);

  beforeAll(async () => {
    tmp = mkdtempSync(join(tmpdir(), 'studio-contract-'));
    mkdirSync(join(tmp, 'datasets'));
    const devPort = await freePort();
    devUrl = `http://127.0.0.1:${devPort}`;
    s = await startServer({
      backend: backends()[0]!,
      env: {
        TRAINYARD_DATASETS_ROOT: join(tmp, 'datasets'),
        TRAINYARD_NVIDIA_SMI: installFakeNvidiaSmi(join(tmp, 'bin'), 'one-gpu').path,
        TRAINYARD_ALLOWED_HOSTS: `127.0.0.1:${devPort}`,
      },
    });
    dev = await studioDevServer(devPort, s.port);
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
    page = await browser.newPage();
    page.setDefaultTimeout(WAIT);
    page.on('pageerror', (err) => pageErrors.push(err.message));
    await page.goto(devUrl);
  }, 240_000);

  afterAll(async () => {
    await browser?.close().catch(() => {});
    await new Promise((r) => (dev ? dev.close(r) : r(undefined)));
    await s?.dispose();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  }, 60_000);

  it('loads GPU info, models and the current model once, then polls the task list', async () => {
    await expect.poll(() => page.locator('#gpu').textContent(), { timeout: WAIT }).toContain('1 GPU: NVIDIA GeForce RTX 3060 12GB');
    await expect.poll(() => page.locator('#current').textContent(), { timeout: WAIT }).toBe('current: null');
    expect(await page.locator('#models li').count()).toBeGreaterThanOrEqual(4);
    await expect.poll(() => page.locator('body').getAttribute('data-polls'), { timeout: WAIT }).toBe('2');
    expect(pageErrors).toEqual([]);
  });

  it('uploads, creates with only model_name and dataset_file, and sees the task complete through the polled list', async () => {
    await page.locator('#file').setInputFiles(DATASET);
    await page.locator('#submit').click();
    await expect
      .poll(() => page.locator('#result').textContent(), { timeout: WAIT })
      .toMatch(/^created \S+ (queued|preparing|training) warnings \d+$/);
    const id = (await page.locator('#result').getAttribute('data-task-id'))!;
    await expect
      .poll(
        () =>
          row(id)
            .getAttribute('data-status')
            .catch(() => null),
        { timeout: WAIT },
      )
      .toBe('completed');
    await expect.poll(() => row(id).textContent(), { timeout: WAIT }).toMatch(/100% \| Epoch 3\/3 \| Loss: \d\.\d{4}/);
    const task = await s.client.tasks.get.query({ id });
    expect(task.spec.config).toMatchObject({
      epochs: 3,
      batchSize: 1,
      gradientAccumulation: 16,
      learningRate: 5e-5,
      maxLength: 1024,
      load8bit: true,
    });
    expect(pageErrors).toEqual([]);
  });

  it('cancels a queued task and deletes it, with the bodiless requests Studio sends', async () => {
    const dataset = (await s.client.tasks.list.query({})).items[0]!.spec.datasetPath;
    const blocker = await s.client.tasks.create.mutate({
      model: MODEL,
      datasetPath: dataset,
      config: { epochs: 1, simulate: { steps: 10_000, stepMs: 200 } },
    });
    await page.locator('#file').setInputFiles(DATASET);
    await page.locator('#submit').click();
    await expect.poll(() => page.locator('#result').textContent(), { timeout: WAIT }).toMatch(/^created \S+ queued /);
    const id = (await page.locator('#result').getAttribute('data-task-id'))!;
    await row(id).locator('button.cancel').click();
    await expect.poll(() => page.locator('#result').textContent(), { timeout: WAIT }).toBe(`task ${id} cancelled`);
    await expect
      .poll(
        () =>
          row(id)
            .getAttribute('data-status')
            .catch(() => null),
        { timeout: WAIT },
      )
      .toBe('cancelled');
    await row(id).locator('button.delete').click();
    await expect.poll(() => page.locator('#result').textContent(), { timeout: WAIT }).toBe(`task ${id} deleted`);
    await expect.poll(() => row(id).count(), { timeout: WAIT }).toBe(0);
    await row(blocker.id).locator('button.cancel').click();
    await expect
      .poll(
        () =>
          row(blocker.id)
            .getAttribute('data-status')
            .catch(() => null),
        { timeout: WAIT },
      )
      .toBe('cancelled');
    expect(pageErrors).toEqual([]);
  });
});

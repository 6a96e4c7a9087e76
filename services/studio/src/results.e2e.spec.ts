// A finished task's results in the panel, in a real headless Chromium (playwright-core, the
// system's /usr/bin/chromium) against the real server (PGlite, the simulated trainer, a fake
// nvidia-smi with one 12 GB GPU, 1 GB of it held by another program): a completed task shows
// its output folder and artifacts with full paths, sizes and copy buttons, the Python that loads
// the adapter and a .tar.gz download; "clone" fills the form in and the copy runs; a failed task's
// card shows the reason and its last lines as they were, and after running out of memory the
// settings that fit (the form's estimate), which "retry with these settings" puts in the form.
// At 1400 and 420 px, with screenshots in services/studio/test-results/.
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { chromium, type Browser, type BrowserContext, type Locator, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backends } from '@trainyard/store/testing';
import { eventually, installFakeNvidiaSmi, simulated, startServer, type RunningServer } from '@trainyard/server/testing';
import { CHROMIUM, CHROMIUM_ARGS, DIST, ensurePanelBuilt, hasChromium, STUDIO } from './e2e-kit';

const SHOTS = join(STUDIO, 'test-results');
const WAIT = 60_000;
const SEVEN_B = 'Qwen/Qwen2.5-Coder-7B-Instruct';

describe.skipIf(!hasChromium)('Studio: results', () => {
  let s: RunningServer;
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;
  let tmp: string;
  const pageErrors: string[] = [];
  const cspViolations: string[] = [];
  const ids: Record<string, string> = {};

  beforeAll(async () => {
    ensurePanelBuilt();
    mkdirSync(SHOTS, { recursive: true });
    tmp = mkdtempSync(join(tmpdir(), 'studio-results-'));
    const smi = installFakeNvidiaSmi(tmp, 'one-gpu');
    s = await startServer({ backend: backends()[0]!, env: { TRAINYARD_PANEL_DIR: DIST, TRAINYARD_NVIDIA_SMI: smi.path } });
    const done = await s.client.tasks.create.mutate(
      simulated(
        {},
        {
          name: 'adapter-done',
          config: { epochs: 2, batchSize: 2, learningRate: 0.0005, simulate: { steps: 4, stepMs: 20 } },
          timeoutMs: 7_200_000,
        },
      ),
    );
    // A 7B model at batch 4 and 2048 tokens on the 12 GB GPU: the simulated trainer fails at step 2
    // with CUDA's out-of-memory error.
    const oom = await s.client.tasks.create.mutate(
      simulated(
        {},
        {
          name: 'oom-7b',
          model: SEVEN_B,
          config: { epochs: 1, batchSize: 4, gradientAccumulation: 4, maxLength: 2048, simulate: { steps: 6, stepMs: 20, failAtStep: 2 } },
        },
      ),
    );
    ids.done = done.id;
    ids.oom = oom.id;
    for (const id of [done.id, oom.id])
      await eventually(async () => ['COMPLETED', 'FAILED'].includes((await s.client.tasks.get.query({ id })).status), `${id} ended`, WAIT);

    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
    context = await browser.newContext({ viewport: { width: 1400, height: 1000 }, acceptDownloads: true });
    await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: s.url });
    page = await context.newPage();
    page.setDefaultTimeout(WAIT);
    page.on('pageerror', (err) => pageErrors.push(err.message));
    page.on('console', (m) => {
      if (/Content Security Policy/i.test(m.text())) cspViolations.push(m.text());
    });
    await page.goto(s.url);
  }, 240_000);

  afterAll(async () => {
    await browser?.close().catch(() => {});
    await s?.dispose();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  }, 60_000);

  const row = (name: string) => page.locator(`[data-testid=task-row][data-name="${name}"]`);
  const detail = (id: string) => page.locator(`[data-testid=task-detail][data-task-id="${id}"]`);
  /** One element as it lies on the full page (scrolled to the top: the sticky header covers nothing below it). */
  async function shot(name: string, target: Locator) {
    await page.evaluate(() => window.scrollTo(0, 0));
    const box = await target.evaluate((el) => {
      const r = el.getBoundingClientRect();
      return { x: r.x + window.scrollX, y: r.y + window.scrollY, width: r.width, height: r.height };
    });
    const pad = 8;
    await page.screenshot({
      path: join(SHOTS, name),
      fullPage: true,
      clip: { x: Math.max(0, box.x - pad), y: Math.max(0, box.y - pad), width: box.width + 2 * pad, height: box.height + 2 * pad },
    });
  }

  it('shows a completed task’s output folder and artifacts with full paths, sizes and copy buttons', async () => {
    await row('adapter-done').getByTestId('expand').click();
    const results = detail(ids.done!).getByTestId('results');
    await results.waitFor();
    const server = await s.client.tasks.outputs.query({ id: ids.done! });
    const folder = results.getByTestId('output-folder');
    await folder.waitFor();
    expect(await folder.getAttribute('data-path')).toBe(server.folder.path);
    expect(server.folder.path).toBe(join(s.dataDir, 'outputs', ids.done!));
    expect(await folder.locator('code').textContent()).toBe(server.folder.path);
    expect(await folder.getByTestId('path-size').textContent()).toMatch(/^\d+(\.\d)? (bytes|KB) · \d+ files?$/);
    expect(await folder.getAttribute('data-bytes')).toBe(String(server.folder.bytes));
    const artifacts = results.getByTestId('artifact');
    expect(await artifacts.evaluateAll((els) => els.map((e) => e.getAttribute('data-path')))).toEqual(server.artifacts.map((a) => a.path));
    // Copy puts the full path on the clipboard.
    await folder.getByTestId('copy-btn').click();
    await expect.poll(() => folder.getByTestId('copy-btn').textContent()).toBe('Copied');
    expect(await page.evaluate(() => navigator.clipboard.readText())).toBe(server.folder.path);
    expect(await folder.getByTestId('copy-btn').getAttribute('aria-label')).toBe('Copy the path of the output folder');
  });

  it('shows how to load the adapter and downloads the output folder as a .tar.gz', async () => {
    const results = detail(ids.done!).getByTestId('results');
    const snippet = results.getByTestId('load-snippet');
    const adapter = (await s.client.tasks.get.query({ id: ids.done! })).artifacts.at(-1)!;
    expect(await snippet.locator('pre').textContent()).toBe(
      [
        'from peft import AutoPeftModelForCausalLM',
        'from transformers import AutoTokenizer',
        '',
        `model = AutoPeftModelForCausalLM.from_pretrained(${JSON.stringify(adapter)})`,
        `tokenizer = AutoTokenizer.from_pretrained("Qwen/Qwen2.5-Coder-0.5B-Instruct")`,
      ].join('\n'),
    );
    await snippet.getByTestId('copy-btn').click();
    expect(await page.evaluate(() => navigator.clipboard.readText())).toContain('AutoPeftModelForCausalLM.from_pretrained(');
    const link = results.getByTestId('download-btn');
    expect(await link.getAttribute('href')).toBe(`/api/finetune/tasks/${ids.done}/download`);
    const [download] = await Promise.all([page.waitForEvent('download'), link.click()]);
    expect(download.suggestedFilename()).toBe(`${ids.done}_finetuned_model.tar.gz`);
    const saved = join(tmp, 'download.tar.gz');
    await download.saveAs(saved);
    expect(gunzipSync(readFileSync(saved)).includes(`${ids.done}/adapter_config.json`)).toBe(true);
    await shot('30-results-1400.png', results);
  });

  it('clones a task into the form, filled in, and the copy runs with the same settings', async () => {
    await detail(ids.done!).getByTestId('clone-btn').click();
    const note = page.getByTestId('prefill-note');
    await note.waitFor();
    expect(await note.getAttribute('data-kind')).toBe('clone');
    expect(await note.textContent()).toContain(`Filled in from adapter-done (a copy of task ${ids.done})`);
    expect(await page.getByTestId('field-name').inputValue()).toBe('adapter-done (copy)');
    expect(await page.getByTestId('field-model').inputValue()).toBe('Qwen/Qwen2.5-Coder-0.5B-Instruct');
    const original = await s.client.tasks.get.query({ id: ids.done! });
    expect(await page.getByTestId('field-dataset').inputValue()).toBe(original.spec.datasetPath);
    expect(await page.getByTestId('field-batch').inputValue()).toBe('2');
    // The advanced settings that differ from the defaults are open to see.
    expect(await page.getByTestId('field-epochs').inputValue()).toBe('2');
    expect(await page.getByTestId('field-lr').inputValue()).toBe('0.0005');
    expect(await page.getByTestId('field-timeout').inputValue()).toBe('2');
    expect(JSON.parse(await page.getByTestId('field-simulate').inputValue())).toEqual({ steps: 4, stepMs: 20 });
    // The name field has the focus, ready to be changed.
    expect(await page.evaluate(() => document.activeElement?.id)).toBe('f-name');
    await shot('31-clone-form-1400.png', page.getByTestId('new-task-card'));
    await page.getByTestId('submit-task').click();
    await row('adapter-done (copy)').waitFor();
    await expect.poll(() => note.count()).toBe(0);
    const copy = (await s.client.tasks.list.query({})).items.find((t) => t.spec.name === 'adapter-done (copy)')!;
    expect(copy.spec.config).toEqual(original.spec.config);
    expect([copy.spec.model, copy.spec.datasetPath, copy.spec.timeoutMs]).toEqual([
      original.spec.model,
      original.spec.datasetPath,
      original.spec.timeoutMs,
    ]);
  });

  it('shows a failed task’s reason and last lines as a block, and after running out of memory what fits', async () => {
    await row('oom-7b').getByTestId('expand').click();
    const card = detail(ids.oom!).getByTestId('task-error');
    await card.waitFor();
    expect(await card.getAttribute('data-oom')).toBe('true');
    expect(await card.getByTestId('failure-reason').textContent()).toBe('The trainer exited with code 1');
    const failed = await s.client.tasks.get.query({ id: ids.oom! });
    // The lines as the trainer wrote them, one per line.
    const lines = await card.getByTestId('failure-lines').textContent();
    expect(lines).toBe(failed.error!.message.split('\n').slice(1).join('\n'));
    expect(lines!.split('\n')).toContain('Traceback (most recent call last):');
    expect(lines!.split('\n').at(-1)).toBe('RuntimeError: CUDA out of memory (simulated failure at step 2)');
    expect(await card.getByTestId('failure-lines').evaluate((e) => getComputedStyle(e).whiteSpace)).toBe('pre-wrap');
    // 12 GB less the other programs' 1 GB: batch 1 and 4-bit fit by the form's estimate.
    const advice = card.getByTestId('oom-advice');
    expect(await advice.getByTestId('oom-fit').textContent()).toBe('batch size 4 → 1, 4-bit loading');
    expect(await advice.textContent()).toContain('its GPU had 11 GB free when it started');
    expect(await advice.textContent()).toContain('gradient accumulation 4 → 16 keeps the effective batch');
    await shot('32-failed-oom-1400.png', card);
    await advice.getByTestId('oom-retry').click();
    const note = page.getByTestId('prefill-note');
    await expect.poll(() => note.getAttribute('data-kind')).toBe('retry');
    expect(await note.textContent()).toContain('batch size 4 → 1, 4-bit loading: ≈');
    expect(await page.getByTestId('field-name').inputValue()).toBe('oom-7b (retry)');
    expect(await page.getByTestId('field-model').inputValue()).toBe(SEVEN_B);
    expect(await page.getByTestId('field-batch').inputValue()).toBe('1');
    expect(await page.getByTestId('field-grad').inputValue()).toBe('16');
    expect(await page.getByTestId('field-maxlen').inputValue()).toBe('2048');
    expect(await page.getByTestId('field-4bit').isChecked()).toBe(true);
    // The form's own estimate agrees: it should fit now.
    await expect.poll(() => page.getByTestId('estimate').getAttribute('data-level')).toBe('low');
    // "Retry with changes" on the failed task keeps its settings as they were.
    await detail(ids.oom!).getByTestId('retry-btn').click();
    await expect.poll(() => page.getByTestId('field-batch').inputValue()).toBe('4');
    expect(await page.getByTestId('field-4bit').isChecked()).toBe(false);
  });

  it('fits a phone’s width (420 px): results and the failure card inside the screen', async () => {
    await page.setViewportSize({ width: 420, height: 900 });
    const results = detail(ids.done!).getByTestId('results');
    await shot('33-results-420.png', results);
    await shot('34-failed-oom-420.png', detail(ids.oom!).getByTestId('task-error'));
    // Long paths wrap instead of running off: the path cell is no wider than its row.
    const folder = results.getByTestId('output-folder');
    const [code, li] = await Promise.all([
      folder.locator('code').evaluate((e) => e.getBoundingClientRect().right),
      folder.evaluate((e) => e.getBoundingClientRect().right),
    ]);
    expect(code).toBeLessThanOrEqual(li + 0.5);
    // Nothing runs off the side: the table is cards, the details one column.
    expect(await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth)).toBeLessThanOrEqual(0);
    expect(await page.locator('.tasks thead').isVisible()).toBe(false);
    await page.evaluate(() => window.scrollTo(0, 0));
    await page.screenshot({ path: join(SHOTS, '35-page-420.png'), fullPage: true });
    // The task cards as a phone shows them (collapsed).
    for (const name of ['adapter-done', 'oom-7b']) await row(name).getByTestId('expand').click();
    await page.getByTestId('task-table').evaluate((e) => window.scrollTo(0, e.getBoundingClientRect().top + window.scrollY - 60));
    await page.screenshot({ path: join(SHOTS, '36-task-cards-420.png') });
    await page.setViewportSize({ width: 1400, height: 1000 });
    expect(pageErrors).toEqual([]);
    expect(cspViolations).toEqual([]);
  });
});

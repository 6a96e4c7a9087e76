// The new-task form's sweep option in a real headless Chromium against the real server (PGlite,
// the simulated trainer, one GPU slot): a grid in the Sweep field turns the button into "Submit 4
// tasks", and one submission creates every combination, shown in the order queued; a grid that
// cannot be read is refused under the field before anything is sent, and a value the server
// refuses names the sweep's task under its field, with nothing written.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backends } from '@trainyard/store/testing';
import { DATASET, startServer, type RunningServer } from '@trainyard/server/testing';
import { CHROMIUM, CHROMIUM_ARGS, DIST, ensurePanelBuilt, hasChromium, STUDIO } from './e2e-kit';

const SHOTS = join(STUDIO, 'test-results');
const WAIT = 60_000;
const SIMULATE = '{"steps":100000,"stepMs":100}';

describe.skipIf(!hasChromium)('Studio: a sweep from the new-task form', () => {
  let s: RunningServer;
  let browser: Browser;
  let page: Page;
  const pageErrors: string[] = [];
  const count = async () => (await s.client.tasks.list.query({ limit: 200 })).items.length;

  beforeAll(async () => {
    ensurePanelBuilt();
    mkdirSync(SHOTS, { recursive: true });
    s = await startServer({
      backend: backends()[0]!,
      env: { TRAINYARD_PANEL_DIR: DIST, TRAINYARD_GPU_SLOTS: '1' },
      startTimeoutMs: 200_000,
    });
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
    page = await browser.newPage({ viewport: { width: 1480, height: 1000 } });
    page.setDefaultTimeout(WAIT);
    page.on('pageerror', (err) => pageErrors.push(err.message));
    await page.goto(s.url);
  }, 400_000);

  afterAll(async () => {
    await browser?.close().catch(() => {});
    await s?.dispose();
  }, 60_000);

  const fillBase = async (name: string) => {
    await page.getByTestId('field-model').selectOption('Qwen/Qwen2.5-Coder-0.5B-Instruct');
    await page.getByTestId('field-dataset').fill(DATASET);
    await page.getByTestId('field-name').fill(name);
    if (!(await page.getByTestId('field-sweep').isVisible())) await page.getByTestId('advanced-toggle').click();
    await page.getByTestId('field-epochs').fill('1');
    await page.getByTestId('field-simulate').fill(SIMULATE);
  };

  it('submits every combination of the grid in one call, shown in the order queued', async () => {
    await fillBase('grid');
    await page.getByTestId('field-sweep').fill('learningRate=1e-4,2e-4 loraRank=8,16');
    await expect.poll(() => page.getByTestId('submit-task').textContent()).toBe('Submit 4 tasks');
    await page.getByTestId('submit-task').click();
    const items = page.getByTestId('sweep-task');
    await expect.poll(() => items.count(), { timeout: WAIT }).toBe(4);
    expect(await items.allTextContents()).toEqual([
      expect.stringContaining('grid learningRate=0.0001 loraRank=8'),
      expect.stringContaining('grid learningRate=0.0001 loraRank=16'),
      expect.stringContaining('grid learningRate=0.0002 loraRank=8'),
      expect.stringContaining('grid learningRate=0.0002 loraRank=16'),
    ]);
    expect(await page.getByTestId('sweep-result').textContent()).toContain('Submitted a sweep of 4 tasks');
    const queue = await s.client.queue.get.query();
    expect(queue.queued.map((q) => q.task.spec.name)).toEqual([
      'grid learningRate=0.0001 loraRank=16',
      'grid learningRate=0.0002 loraRank=8',
      'grid learningRate=0.0002 loraRank=16',
    ]);
    await page.getByTestId('new-task-card').screenshot({ path: join(SHOTS, 'sweep.png') });
  });

  it('a grid that cannot be read, or a value the server refuses, is shown under its field; nothing is written', async () => {
    const before = await count();
    await fillBase('bad');
    await page.getByTestId('field-sweep').fill('dropout=0.1');
    await page.getByTestId('submit-task').click();
    await expect.poll(() => page.getByTestId('field-error-sweep').textContent()).toContain('no setting called "dropout"');
    expect(await page.locator('#f-sweep').getAttribute('aria-invalid')).toBe('true');

    await page.getByTestId('field-sweep').fill('loraRank=8,0');
    await page.getByTestId('submit-task').click();
    await expect.poll(() => page.getByTestId('field-error-config.loraRank').textContent()).toMatch(/^Sweep task 2 \(loraRank=0\): /);
    expect(await count()).toBe(before);
    expect(pageErrors).toEqual([]);
  });
});

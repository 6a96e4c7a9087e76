// Finding tasks and reading the panel, in a real headless Chromium (playwright-core, the system's
// /usr/bin/chromium) against the real server (PGlite, the simulated trainer, a fake nvidia-smi
// with one 12 GB GPU): search by name, model, id or status, filter by owner and state, sort; names
// cut short keep a tooltip; the GPU card charts memory and utilisation over the last hour; and
// axe-core finds no WCAG 2 A/AA violation in the page (contrast, names, labels), at 1400 and
// 420 px. Screenshots in services/studio/test-results/.
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect } from '@trainyard/client';
import { backends } from '@trainyard/store/testing';
import { eventually, installFakeNvidiaSmi, simulated, startServer, type RunningServer } from '@trainyard/server/testing';
import { CHROMIUM, CHROMIUM_ARGS, DIST, ensurePanelBuilt, hasChromium, STUDIO } from './e2e-kit';

const SHOTS = join(STUDIO, 'test-results');
const AXE = createRequire(import.meta.url).resolve('axe-core/axe.min.js');
const WAIT = 60_000;

interface AxeViolation {
  id: string;
  impact: string | null;
  help: string;
  nodes: { target: string[]; failureSummary: string }[];
}

describe.skipIf(!hasChromium)('Studio: finding tasks, the GPU card, accessibility', () => {
  let s: RunningServer;
  let browser: Browser;
  let page: Page;
  let tmp: string;
  const pageErrors: string[] = [];
  const ids: Record<string, string> = {};

  beforeAll(async () => {
    ensurePanelBuilt();
    mkdirSync(SHOTS, { recursive: true });
    tmp = mkdtempSync(join(tmpdir(), 'studio-finding-'));
    const smi = installFakeNvidiaSmi(tmp, 'one-gpu');
    s = await startServer({
      backend: backends()[0]!,
      env: { TRAINYARD_PANEL_DIR: DIST, TRAINYARD_NVIDIA_SMI: smi.path, TRAINYARD_GPU_REFRESH_MS: '300' },
    });
    const bob = await connect({ url: s.url, user: 'bob' });
    const quick = { steps: 2, stepMs: 10 };
    for (const [client, name, model] of [
      [s.client, 'docstrings for the parser module, second try with a longer context window', 'Qwen/Qwen2.5-Coder-1.5B-Instruct'],
      [s.client, 'sql-helper', 'Qwen/Qwen2.5-Coder-0.5B-Instruct'],
      [bob, 'chat-small', 'Qwen/Qwen2.5-Coder-0.5B-Instruct'],
    ] as const) {
      const t = await client.tasks.create.mutate(simulated(quick, { name, model }));
      ids[name] = t.id;
      await eventually(async () => (await s.client.tasks.get.query({ id: t.id })).status === 'COMPLETED', `${name} completed`, WAIT);
    }
    // Bypassing the page's Content-Security-Policy only to load axe-core into it.
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
    const context = await browser.newContext({ viewport: { width: 1400, height: 1000 }, bypassCSP: true });
    page = await context.newPage();
    page.setDefaultTimeout(WAIT);
    page.on('pageerror', (err) => pageErrors.push(err.message));
    await page.goto(s.url);
    await page.getByTestId('task-row').first().waitFor();
  }, 240_000);

  afterAll(async () => {
    await browser?.close().catch(() => {});
    await s?.dispose();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  }, 60_000);

  const names = () => page.getByTestId('task-row').evaluateAll((els) => els.map((e) => e.getAttribute('data-name')));

  /** axe-core's WCAG 2 A and AA violations in the page as it is. */
  async function axe(): Promise<AxeViolation[]> {
    if (!(await page.evaluate(() => 'axe' in window))) await page.addScriptTag({ path: AXE });
    return page.evaluate(async () => {
      const r = await (
        window as unknown as { axe: { run: (ctx: Document, o: object) => Promise<{ violations: AxeViolation[] }> } }
      ).axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa'] } });
      return r.violations.map((v) => ({
        id: v.id,
        impact: v.impact,
        help: v.help,
        nodes: v.nodes.map((n) => ({ target: n.target, failureSummary: n.failureSummary })),
      }));
    });
  }
  const described = (vs: AxeViolation[]) =>
    vs
      .map((v) => `${v.id} (${v.impact}): ${v.help}\n${v.nodes.map((n) => `  ${n.target.join(' ')}: ${n.failureSummary}`).join('\n')}`)
      .join('\n');

  it('searches tasks by name, model, id or status, filters by owner, sorts', async () => {
    const long = 'docstrings for the parser module, second try with a longer context window';
    expect(await names()).toEqual(['chat-small', 'sql-helper', long]);
    const search = page.getByTestId('task-search');
    await search.fill('1.5B');
    await expect.poll(names).toEqual([long]);
    await search.fill('SQL');
    await expect.poll(names).toEqual(['sql-helper']);
    await search.fill(ids['chat-small']!.slice(-6));
    await expect.poll(names).toEqual(['chat-small']);
    await search.fill('completed');
    await expect.poll(names).toEqual(['chat-small', 'sql-helper', long]);
    await search.fill('no such thing');
    await expect.poll(() => page.getByTestId('tasks-empty').textContent()).toContain('No tasks match this filter');
    await search.fill('');
    await page.getByTestId('task-owner').selectOption('bob');
    await expect.poll(names).toEqual(['chat-small']);
    await page.getByTestId('task-owner').selectOption('');
    await page.getByTestId('task-sort').selectOption('name');
    await expect.poll(names).toEqual(['chat-small', long, 'sql-helper']);
    await page.getByTestId('task-sort').selectOption('oldest');
    await expect.poll(names).toEqual([long, 'sql-helper', 'chat-small']);
    await page.getByTestId('task-sort').selectOption('newest');
    // A long name is cut short in the row, and kept whole in its tooltip.
    const cell = page.locator(`[data-testid=task-row][data-task-id="${ids[long]}"]`).getByTestId('task-name');
    expect(await cell.getAttribute('title')).toBe(long);
    expect(await cell.evaluate((e) => e.scrollWidth > e.clientWidth)).toBe(true);
  });

  it('charts each GPU’s memory and utilisation over the last hour', async () => {
    // Probes 4 s apart are kept apart: wait for a second one.
    const chart = page.getByTestId('gpu-card').getByTestId('gpu-history-chart');
    await chart.waitFor({ timeout: WAIT });
    expect(await chart.getAttribute('data-series')).toBe('memory GB|util %');
    expect(await chart.locator('[role=img]').getAttribute('aria-label')).toMatch(
      /^GPU 0 \(NVIDIA GeForce RTX 3060\) over the last \d+ min: 1 GB of 12 GB in use now, 7% utilisation\.$/,
    );
    // The recommendation is for the whole GPU; the form's is for what other programs leave, and the card says so.
    expect(await page.getByTestId('gpu-held-note').textContent()).toBe(
      'Other programs hold 1 GB of GPU 0: the new-task form recommends and estimates by the 11 GB left.',
    );
    await page.getByTestId('gpu-card').screenshot({ path: join(SHOTS, '40-gpu-history-1400.png') });
  });

  it('names a field in error by its label, marks it for assistive technology and moves the focus to it', async () => {
    await page.getByTestId('field-dataset').fill('/nowhere.jsonl');
    await page.getByTestId('field-batch').fill('0');
    await page.getByTestId('field-maxlen').fill('40000');
    await page.getByTestId('submit-task').click();
    const batch = page.getByTestId('field-error-config.batchSize');
    await batch.waitFor();
    expect(await batch.textContent()).toBe('Batch size must be a whole number from 1 to 256');
    expect(await page.getByTestId('field-error-config.maxLength').textContent()).toBe('Max length must be a whole number from 16 to 32768');
    const input = page.getByTestId('field-batch');
    expect(await input.getAttribute('aria-invalid')).toBe('true');
    expect(await input.getAttribute('aria-describedby')).toBe('f-batch-error');
    expect(await page.locator('#f-batch-error').textContent()).toBe('Batch size must be a whole number from 1 to 256');
    // The first field in error has the focus.
    expect(await page.evaluate(() => document.activeElement?.id)).toBe('f-batch');
    // A field without an error is described by its hint.
    expect(await page.getByTestId('field-name').getAttribute('aria-invalid')).toBe('false');
    expect(await page.getByTestId('field-name').getAttribute('aria-describedby')).toBe('f-name-hint');
    const withErrors = await axe();
    expect(withErrors, described(withErrors)).toEqual([]);
    await page.getByTestId('preset-safe').click();
    await page.getByTestId('field-maxlen').fill('512');
  });

  it('names row buttons with their task, and Enter in the cancel dialog confirms it', async () => {
    const t = await s.client.tasks.create.mutate(simulated({ steps: 100_000, stepMs: 100 }, { name: 'long-one' }));
    const r = page.locator(`[data-testid=task-row][data-task-id="${t.id}"]`);
    await r.waitFor();
    expect(await r.getByTestId('cancel-btn').getAttribute('aria-label')).toBe('Cancel long-one');
    expect(await r.getByTestId('expand').getAttribute('aria-label')).toBe('Expand long-one');
    await r.getByTestId('cancel-btn').click();
    await page.getByTestId('cancel-reason').fill('by keyboard');
    await page.getByTestId('cancel-reason').press('Enter');
    await expect.poll(() => r.getAttribute('data-status'), { timeout: WAIT }).toBe('CANCELLED');
    expect((await s.client.tasks.get.query({ id: t.id })).cancelReason).toBe('by keyboard');
  });

  it('has no WCAG 2 A/AA violation by axe-core, with a task open, at 1400 and 420 px', async () => {
    await page.locator(`[data-testid=task-row][data-name="sql-helper"]`).getByTestId('expand').click();
    await page.getByTestId('task-detail').getByTestId('results').waitFor();
    const wide = await axe();
    expect(wide, described(wide)).toEqual([]);
    await page.setViewportSize({ width: 420, height: 900 });
    const narrow = await axe();
    expect(narrow, described(narrow)).toEqual([]);
    expect(await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth)).toBeLessThanOrEqual(0);
    await page.setViewportSize({ width: 1400, height: 1000 });
    expect(pageErrors).toEqual([]);
  });
});

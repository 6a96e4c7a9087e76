// Seeing training in the panel, in a real headless Chromium (playwright-core, the system's
// /usr/bin/chromium) against the real server (PGlite, the simulated trainer, a fake nvidia-smi
// with one 12 GB GPU): a running task's loss and learning-rate chart grows live, its speed, time
// left, run time, GPU-hours and peak GPU memory show in its detail and the table; a queued task
// says when it starts at the latest; several tasks' loss is compared on one chart. At desktop
// width (1400 px) and phone width (420 px), with screenshots in services/studio/test-results/.
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser, type Locator, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backends } from '@trainyard/store/testing';
import {
  eventually,
  installFakeNvidiaSmi,
  simulated,
  startServer,
  type FakeNvidiaSmi,
  type RunningServer,
} from '@trainyard/server/testing';
import { CHROMIUM, CHROMIUM_ARGS, DIST, ensurePanelBuilt, hasChromium, STUDIO } from './e2e-kit';

const SHOTS = join(STUDIO, 'test-results');
const GPU_UUID = 'GPU-4b1c9f3e-7d2a-5e8b-a1c6-93f0d2e4b7a1';
const WAIT = 60_000;
const MIN = 60_000;

describe.skipIf(!hasChromium)('Studio: seeing training', () => {
  let s: RunningServer;
  let smi: FakeNvidiaSmi;
  let browser: Browser;
  let page: Page;
  let tmp: string;
  const pageErrors: string[] = [];
  const cspViolations: string[] = [];
  const ids: Record<string, string> = {};

  beforeAll(async () => {
    ensurePanelBuilt();
    mkdirSync(SHOTS, { recursive: true });
    tmp = mkdtempSync(join(tmpdir(), 'studio-training-'));
    smi = installFakeNvidiaSmi(tmp, 'one-gpu');
    s = await startServer({
      backend: backends()[0]!,
      env: { TRAINYARD_PANEL_DIR: DIST, TRAINYARD_NVIDIA_SMI: smi.path, TRAINYARD_GPU_REFRESH_MS: '500' },
    });
    // Two finished tasks to compare, one training, one queued behind it.
    for (const [name, lr, steps] of [
      ['fast-lr', 0.001, 12],
      ['slow-lr', 0.0001, 20],
    ] as const) {
      const t = await s.client.tasks.create.mutate(
        simulated({}, { name, config: { epochs: 1, learningRate: lr, simulate: { steps, stepMs: 200 } } }),
      );
      ids[name] = t.id;
      await eventually(async () => (await s.client.tasks.get.query({ id: t.id })).status === 'COMPLETED', `${name} completed`, WAIT);
    }
    const running = await s.client.tasks.create.mutate(simulated({ steps: 2000, stepMs: 250 }, { name: 'live-run', timeoutMs: 30 * MIN }));
    ids['live-run'] = running.id;
    const queued = await s.client.tasks.create.mutate(simulated({ steps: 5 }, { name: 'waits', timeoutMs: 10 * MIN }));
    ids.waits = queued.id;
    // The trainer holds 5 GB of the GPU: the probe sees it as ours.
    const pid = await eventually(async () => (await s.client.tasks.get.query({ id: running.id })).trainer?.pid, 'trainer pid', WAIT);
    smi.set({ 'apps.csv': `${GPU_UUID}, 23817, /usr/bin/python3, 900\n${GPU_UUID}, ${pid}, python3, 5120\n` });

    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
    page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
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
  const detail = (name: string) => page.locator(`[data-testid=task-detail][data-task-id="${ids[name]}"]`);
  const points = async (chart: Locator) => Number((await chart.getAttribute('data-points', { timeout: 5000 }).catch(() => '0')) ?? 0);
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

  it('draws a running task’s loss and learning rate live, with its speed, time left and cost', async () => {
    await row('live-run').getByTestId('expand').click();
    const d = detail('live-run');
    const chart = d.getByTestId('loss-chart');
    await chart.waitFor();
    expect(await chart.getAttribute('data-series')).toBe('loss|learning rate');
    // uPlot draws on a canvas; the figure says what it shows.
    expect(await chart.locator('canvas').count()).toBeGreaterThan(0);
    expect(await chart.locator('[role=img]').getAttribute('aria-label')).toMatch(
      /^Loss by step: [\d.]+ at step \d+, [\d.]+ at step \d+; learning rate on the right axis\.$/,
    );
    // Live: more points arrive while we watch.
    const before = await points(chart);
    await expect.poll(() => points(chart), { timeout: WAIT }).toBeGreaterThan(before + 2);
    await expect.poll(() => d.getByTestId('throughput-chart').count(), { timeout: WAIT }).toBe(1);
    // The figures: steps/s and the time left at that speed, run time and GPU-hours (one device).
    const stats = d.getByTestId('training-stats');
    await expect.poll(() => stats.getByTestId('stat-speed').textContent(), { timeout: WAIT }).toMatch(/^Speed[\d.]+ steps\/s$/);
    expect(await stats.getByTestId('stat-time-left').textContent()).toMatch(/^Time left≈ (\d+m \d\ds|\d+h \d\dm)$/);
    expect(await stats.getByTestId('stat-elapsed').textContent()).toMatch(/^Running for\d+/);
    expect(await stats.getByTestId('stat-gpu-hours').textContent()).toMatch(/^GPU-hours(<0\.01|0\.\d\d) GPU-h \(1 device\)$/);
    await expect
      .poll(
        () =>
          stats
            .getByTestId('stat-peak-memory')
            .textContent({ timeout: 2000 })
            .catch(() => null),
        { timeout: WAIT },
      )
      .toBe('Peak GPU memory5 GB');
    // The table row: speed and time left under the bar, run time and GPU-hours under its start.
    expect(await row('live-run').getByTestId('speed-line').textContent()).toMatch(/^[\d.]+ steps\/s · \d+(m \d\ds|h \d\dm) left$/);
    expect(await row('live-run').getByTestId('cost-line').textContent()).toMatch(/ · (<0\.01|0\.\d\d) GPU-h$/);
    await shot('20-training-chart-1400.png', page.getByTestId('training'));
  });

  it('says when a queued task starts at the latest, as an upper bound', async () => {
    const short = row('waits').getByTestId('expected-start-short');
    await expect
      .poll(() => short.textContent({ timeout: 2000 }).catch(() => null), { timeout: WAIT })
      // (A start past midnight shows its date too.)
      .toMatch(/^starts by ([A-Z][a-z]{2} \d{1,2} )?\d\d:\d\d:\d\d$/);
    expect(await short.getAttribute('title')).toMatch(/^An upper bound: every running task and every task ahead/);
    await row('waits').getByTestId('expand').click();
    const start = detail('waits').getByTestId('expected-start');
    await start.waitFor();
    expect(await start.textContent()).toMatch(
      /^Starts by ([A-Z][a-z]{2} \d{1,2} )?\d\d:\d\d:\d\d at the latest \(from the timeouts of the tasks running and ahead of it\)\.$/,
    );
    // It is the running task's deadline (30 min after it started) plus the kill grace, as the server says.
    const q = await s.client.queue.get.query();
    const expected = q.queued.find((e) => e.task.id === ids.waits)!.expectedStart!;
    expect(Date.parse(expected) - Date.parse(q.devices[0]!.holders[0]!.endsBy!)).toBeGreaterThanOrEqual(0);
    expect(await start.textContent()).toContain(
      new Date(expected).toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit', hourCycle: 'h23' }),
    );
    // No training section before it starts.
    expect(await detail('waits').getByTestId('training').count()).toBe(0);
    await row('waits').getByTestId('expand').click();
  });

  it('compares the loss of several tasks on one chart', async () => {
    await row('fast-lr').getByTestId('compare-toggle').check();
    await row('slow-lr').getByTestId('compare-toggle').check();
    const card = page.getByTestId('compare-card');
    await card.waitFor();
    expect(await card.getByTestId('compare-item').evaluateAll((els) => els.map((e) => e.getAttribute('data-task-id')))).toEqual([
      ids['fast-lr'],
      ids['slow-lr'],
    ]);
    const chart = card.getByTestId('compare-chart');
    await expect
      .poll(() => chart.getAttribute('data-series'))
      .toBe(`fast-lr (${ids['fast-lr']!.slice(-6)})|slow-lr (${ids['slow-lr']!.slice(-6)})`);
    const server = await Promise.all(['fast-lr', 'slow-lr'].map((n) => s.client.tasks.metrics.query({ id: ids[n]! })));
    await expect.poll(() => points(chart)).toBe(server.reduce((n, m) => n + m.points.filter((p) => p.loss !== null).length, 0));
    expect(await chart.locator('[role=img]').getAttribute('aria-label')).toMatch(
      /^Loss by step of 2 tasks: fast-lr .* ends at [\d.]+; slow-lr .* ends at [\d.]+\.$/,
    );
    // The running task joins: its curve grows live.
    await row('live-run').getByTestId('compare-toggle').check();
    await expect.poll(() => card.getByTestId('compare-item').count()).toBe(3);
    const withThree = await points(chart);
    await expect.poll(() => points(chart), { timeout: WAIT }).toBeGreaterThan(withThree);
    await shot('21-compare-1400.png', card);
    // One is removed from the card; Clear removes the rest and the card.
    await card.getByRole('button', { name: 'Remove slow-lr from the comparison' }).click();
    await expect.poll(() => card.getByTestId('compare-item').count()).toBe(2);
    expect(await row('slow-lr').getByTestId('compare-toggle').isChecked()).toBe(false);
    await card.getByTestId('compare-clear').click();
    await expect.poll(() => page.getByTestId('compare-card').count()).toBe(0);
  });

  it('fits a phone’s width (420 px): charts and figures inside the screen', async () => {
    await page.setViewportSize({ width: 420, height: 900 });
    await row('fast-lr').getByTestId('compare-toggle').check();
    await row('slow-lr').getByTestId('compare-toggle').check();
    const training = detail('live-run').getByTestId('training');
    const loss = training.getByTestId('loss-chart');
    // uPlot follows its box's width.
    await expect
      .poll(async () => {
        const w = await loss
          .locator('canvas')
          .first()
          .evaluate((c) => c.getBoundingClientRect().width);
        const box = await training.evaluate((e) => e.getBoundingClientRect().width);
        return w > 0 && w <= box;
      })
      .toBe(true);
    await shot('22-training-chart-420.png', training);
    await shot('23-compare-420.png', page.getByTestId('compare-card'));
    expect(await page.getByTestId('compare-card').evaluate((e) => e.getBoundingClientRect().right)).toBeLessThanOrEqual(420);
    // Nothing runs off the side: the table is cards, the details one column.
    expect(await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth)).toBeLessThanOrEqual(0);
    expect(await page.locator('.tasks thead').isVisible()).toBe(false);
    await page.setViewportSize({ width: 1400, height: 1000 });
    expect(pageErrors).toEqual([]);
    expect(cspViolations).toEqual([]);
  });
});

// Browser notifications of tasks' endings in real Chromium (the page's own Notification, with the
// permission granted to the page's context; an init script records what the page shows): off
// until the user opts in, then a task completing or failing is announced with its name (and why it
// failed); a task followed by itself ("Notify me when it ends") is announced without the opt-in
// for all. At 1400 and 420 px the toggle is there and named.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backends } from '@trainyard/store/testing';
import { eventually, simulated, startServer, type RunningServer } from '@trainyard/server/testing';
import { CHROMIUM, CHROMIUM_ARGS, DIST, ensurePanelBuilt, hasChromium } from './e2e-kit';

const WAIT = 60_000;

/** Record each notification the page shows, then show it as the browser would. */
const RECORD = `(() => {
  const Real = window.Notification;
  window.__notices = [];
  class Recorded extends Real {
    constructor(title, options) {
      super(title, options);
      window.__notices.push({ title, body: (options && options.body) || '', tag: (options && options.tag) || '' });
    }
  }
  Object.defineProperty(Recorded, 'permission', { get: () => Real.permission });
  Recorded.requestPermission = (...a) => Real.requestPermission(...a);
  window.Notification = Recorded;
})();`;

describe.skipIf(!hasChromium)('Studio: browser notifications when tasks end', () => {
  let s: RunningServer;
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;
  let tmp: string;
  const pageErrors: string[] = [];

  beforeAll(async () => {
    ensurePanelBuilt();
    tmp = mkdtempSync(join(tmpdir(), 'studio-notify-'));
    s = await startServer({ backend: backends()[0]!, env: { TRAINYARD_PANEL_DIR: DIST } });
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
    context = await browser.newContext({ viewport: { width: 1400, height: 1000 } });
    await context.grantPermissions(['notifications'], { origin: s.url });
    await context.addInitScript(RECORD);
    page = await context.newPage();
    page.setDefaultTimeout(WAIT);
    page.on('pageerror', (err) => pageErrors.push(err.message));
    await page.goto(s.url);
    await page.getByTestId('notify-toggle').waitFor();
  }, 240_000);

  afterAll(async () => {
    await browser?.close().catch(() => {});
    await s?.dispose();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  }, 60_000);

  const notices = () => page.evaluate(() => (window as unknown as { __notices: { title: string; body: string }[] }).__notices);

  it('says nothing until the user opts in', async () => {
    expect(await page.getByTestId('notify-toggle').getAttribute('aria-pressed')).toBe('false');
    const t = await s.client.tasks.create.mutate(simulated({ steps: 2, stepMs: 10 }, { name: 'unheard' }));
    await page.locator(`[data-testid="task-row"][data-name="unheard"]`).first().waitFor();
    await eventually(async () => (await s.client.tasks.get.query({ id: t.id })).status === 'COMPLETED', 'unheard completed', WAIT);
    // The row's status is its data-status (the badge shows it in words, not the enum).
    await expect
      .poll(() => page.locator(`[data-testid="task-row"][data-name="unheard"]`).first().getAttribute('data-status'), { timeout: WAIT })
      .toBe('COMPLETED');
    expect(await notices()).toEqual([]);
  });

  it('once opted in, announces a completion and a failure (with why) as they arrive on the live feed', async () => {
    await page.getByTestId('notify-toggle').click();
    await expect.poll(() => page.getByTestId('notify-toggle').getAttribute('aria-pressed')).toBe('true');
    expect(await page.getByTestId('notify-toggle').getAttribute('aria-label')).toBe('Notifying when tasks end (click to stop)');
    const ok = await s.client.tasks.create.mutate(simulated({ steps: 3, stepMs: 50 }, { name: 'heard-ok' }));
    const bad = await s.client.tasks.create.mutate(simulated({ steps: 5, stepMs: 50, failAtStep: 2 }, { name: 'heard-bad' }));
    await expect
      .poll(notices, { timeout: WAIT })
      .toEqual(
        expect.arrayContaining([
          expect.objectContaining({ title: 'Completed: heard-ok', body: `Task ${ok.id} finished training.` }),
          expect.objectContaining({ title: 'Failed: heard-bad' }),
        ]),
      );
    const failed = (await notices()).find((n) => n.title === 'Failed: heard-bad')!;
    expect(failed.body).toBe((await s.client.tasks.get.query({ id: bad.id })).error!.message);
    // One notice per ending.
    expect((await notices()).filter((n) => n.title.endsWith('heard-ok'))).toHaveLength(1);
    // Opting out again.
    await page.getByTestId('notify-toggle').click();
    await expect.poll(() => page.getByTestId('notify-toggle').getAttribute('aria-pressed')).toBe('false');
  });

  it('a task followed by itself is announced without the opt-in for all; others are not', async () => {
    const before = (await notices()).length;
    // Long enough (10 min) to be still running when cancelled, however slow the machine; the cancel ends it.
    const followed = await s.client.tasks.create.mutate(simulated({ steps: 6000, stepMs: 100 }, { name: 'followed' }));
    const other = await s.client.tasks.create.mutate(simulated({ steps: 2, stepMs: 10 }, { name: 'not-followed' }));
    const row = page.locator(`[data-testid="task-row"][data-name="followed"]`).first();
    await row.waitFor();
    await row.getByTestId('expand').click();
    const follow = page.locator(`[data-task-id="${followed.id}"]`).getByTestId('follow-btn');
    await follow.click();
    await expect.poll(() => follow.getAttribute('aria-pressed')).toBe('true');
    expect(await follow.getAttribute('aria-label')).toBe('Stop notifying when followed ends');
    // The other waits for the device the followed one holds: it runs once that one is cancelled.
    await s.client.tasks.cancel.mutate({ id: followed.id });
    await expect.poll(async () => (await notices()).slice(before).map((n) => n.title), { timeout: WAIT }).toContain('Cancelled: followed');
    await eventually(async () => (await s.client.tasks.get.query({ id: other.id })).status === 'COMPLETED', 'not-followed completed', WAIT);
    await expect
      .poll(() => page.locator(`[data-testid="task-row"][data-name="not-followed"]`).first().getAttribute('data-status'), { timeout: WAIT })
      .toBe('COMPLETED');
    expect((await notices()).slice(before).map((n) => n.title)).not.toContain('Completed: not-followed');
    expect(pageErrors).toEqual([]);
  });

  it('at 420 px the toggle is there and named', async () => {
    await page.setViewportSize({ width: 420, height: 900 });
    const toggle = page.getByTestId('notify-toggle');
    expect(await toggle.isVisible()).toBe(true);
    expect(await toggle.getAttribute('aria-label')).toBe('Notify me when tasks end');
  });
});

// "Serve" on a completed task's row, in a real headless Chromium against the real server (PGlite,
// the simulated trainer, the scripted vllm on PATH): the button starts a deployment of the task's
// adapter; the row shows its state until SERVING, its endpoint and a curl example through our /v1
// naming the task, which runs as shown and answers with the adapter's name; Copy copies it.
import { delimiter, join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backends } from '@trainyard/store/testing';
import { eventually, simulated, startServer, type RunningServer } from '@trainyard/server/testing';
import { CHROMIUM, CHROMIUM_ARGS, DIST, ensurePanelBuilt, hasChromium } from './e2e-kit';

const WAIT = 60_000;
const FAKE_VLLM_DIR = join(import.meta.dirname, '../../server/test/fixtures/vllm');

describe.skipIf(!hasChromium)('Studio: Serve a completed task', () => {
  let s: RunningServer;
  let browser: Browser;
  let page: Page;
  let taskId = '';
  const pageErrors: string[] = [];

  beforeAll(async () => {
    ensurePanelBuilt();
    s = await startServer({
      backend: backends()[0]!,
      env: { TRAINYARD_PANEL_DIR: DIST, PATH: `${FAKE_VLLM_DIR}${delimiter}${process.env.PATH ?? ''}`, TRAINYARD_TRAINER_ENV: 'FAKE_*' },
    });
    const t = await s.client.tasks.create.mutate(simulated({ steps: 2, stepMs: 10 }, { name: 'adapter-to-serve' }));
    taskId = t.id;
    await eventually(async () => ((await s.client.tasks.get.query({ id: t.id })).status === 'COMPLETED' ? true : null), 'completed', WAIT);
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
    const context = await browser.newContext({ viewport: { width: 1400, height: 1000 } });
    await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: s.url });
    page = await context.newPage();
    page.setDefaultTimeout(WAIT);
    page.on('pageerror', (err) => pageErrors.push(err.message));
    await page.goto(s.url);
  }, 240_000);

  afterAll(async () => {
    for (const d of (await s?.client.deployments.list.query().catch(() => [])) ?? [])
      if (d.status !== 'STOPPED' && d.status !== 'FAILED') await s.client.deployments.stop.mutate({ id: d.id }).catch(() => {});
    await browser?.close().catch(() => {});
    await s?.dispose();
  }, 60_000);

  it('Serve starts a deployment; the row shows its state, endpoint and a curl example that answers with the adapter’s name', async () => {
    const row = page.locator(`[data-testid=task-row][data-name="adapter-to-serve"]`);
    await row.getByRole('button', { name: 'Serve adapter-to-serve' }).click();
    await expect.poll(() => row.getByTestId('serve-state').getAttribute('data-status'), { timeout: WAIT }).toBe('SERVING');
    await expect.poll(async () => (await s.client.deployments.list.query()).map((d) => d.spec.taskId)).toContain(taskId);
    expect(await row.getByTestId('serve-endpoint').textContent()).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/v1$/);
    // The GPU it holds names it by what it serves (the base model and the task's adapter), not by its dep- id.
    await expect
      .poll(() => page.getByTestId('queue-device').first().textContent(), { timeout: WAIT })
      .toContain(`deployment: Qwen/Qwen2.5-Coder-0.5B-Instruct, ${taskId}`);
    expect(await row.getByRole('button', { name: 'Serve adapter-to-serve' }).count()).toBe(0);
    const curl = (await row.getByTestId('serve-curl').textContent())!;
    expect(curl).toContain(`${s.url}/v1/chat/completions`);
    expect(curl).toContain(`"model":"${taskId}"`);
    // The example runs as shown.
    const out = execFileSync('sh', ['-c', curl], { encoding: 'utf8' });
    expect(JSON.parse(out)).toMatchObject({ model: taskId, choices: [{ message: { content: 'echo: Hello!' } }] });
    await row.getByTestId('serve-copy').click();
    await expect.poll(() => row.getByTestId('serve-copy').textContent()).toBe('Copied');
    expect(await page.evaluate(() => navigator.clipboard.readText())).toBe(curl);
    expect(pageErrors).toEqual([]);
  });

  it('follows the deployment live: stopped through the API, it leaves its GPU card and its row before any poll could fire', async () => {
    const deployment = (await s.client.deployments.list.query()).find((d) => d.spec.taskId === taskId && d.status === 'SERVING');
    expect(deployment).toBeDefined();
    // The page's clock stands still from its first script on and moves only by what this test
    // runs: its polls (the queue every 10 s, the deployments every 5 s) cannot fire under 5 s.
    const context = await browser.newContext({ viewport: { width: 1400, height: 1000 } });
    await context.clock.install();
    await context.clock.pauseAt(Date.now() + 1000);
    let ranMs = 0;
    const run = async (ms: number) => {
      await context.clock.runFor(ms);
      ranMs += ms;
    };
    try {
      const live = await context.newPage();
      live.setDefaultTimeout(WAIT);
      live.on('pageerror', (err) => pageErrors.push(err.message));
      await live.goto(s.url);
      const card = live.getByTestId('queue-device').first();
      const row = live.locator(`[data-testid=task-row][data-name="adapter-to-serve"]`);
      const cardText = async () => {
        await run(50);
        return (await card.count()) ? await card.textContent() : '';
      };
      await expect.poll(cardText, { timeout: WAIT }).toContain(`deployment: Qwen/Qwen2.5-Coder-0.5B-Instruct, ${taskId}`);
      await s.client.deployments.stop.mutate({ id: deployment!.id });
      await expect.poll(cardText, { timeout: WAIT }).not.toContain('deployment:');
      await expect
        .poll(
          async () => {
            await run(50);
            return row.getByTestId('serve-state').getAttribute('data-status');
          },
          { timeout: WAIT },
        )
        .toBe('STOPPED');
      expect(ranMs).toBeLessThan(5_000);
    } finally {
      await context.close();
    }
    expect(pageErrors).toEqual([]);
  });
});

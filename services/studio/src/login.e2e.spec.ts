// The panel against a service in tokens mode, in a real headless Chromium (as panel.e2e.spec.ts):
// the login box first, a refused token said so, signing in shows who is signed in and only that
// user's tasks, live (subscriptions carry the token over fetch); the session survives a reload; a
// token revoked meanwhile brings the login box back with the reason; signing out forgets it.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type TrainyardClient } from '@trainyard/client';
import { addUser, createToken, openDatabase, revokeToken, storageFromEnv } from '@trainyard/store';
import { backends } from '@trainyard/store/testing';
import { newServiceData, simulated, startServer, type RunningServer } from '@trainyard/server/testing';
import { CHROMIUM, CHROMIUM_ARGS, DIST, ensurePanelBuilt, hasChromium, STUDIO } from './e2e-kit';

const SHOTS = join(STUDIO, 'test-results');
const WAIT = 60_000;

/** Runs `fn` on the service's database (PGlite: only while no service has it open). */
async function onDatabase<T>(dataDir: string, fn: (db: Awaited<ReturnType<typeof openDatabase>>['db']) => Promise<T>): Promise<T> {
  const database = await openDatabase(storageFromEnv({ TRAINYARD_DATA_DIR: dataDir }));
  try {
    return await fn(database.db);
  } finally {
    await database.close();
  }
}

describe.skipIf(!hasChromium)('Studio panel in tokens mode', () => {
  let s: RunningServer;
  let browser: Browser;
  let page: Page;
  let dataDir: string;
  const tokens: Record<string, string> = {};
  let aliceTokenId = '';
  let alice: TrainyardClient;
  let bob: TrainyardClient;
  const pageErrors: string[] = [];
  const cspViolations: string[] = [];

  beforeAll(async () => {
    ensurePanelBuilt();
    mkdirSync(SHOTS, { recursive: true });
    dataDir = (await newServiceData(backends()[0]!, 'studio-login-')).dataDir;
    await onDatabase(dataDir, async (db) => {
      await addUser(db, { name: 'alice', admin: false });
      await addUser(db, { name: 'bob', admin: false });
      const a = await createToken(db, { userName: 'alice', expiresAt: null });
      tokens.alice = a.token;
      aliceTokenId = a.info.id;
      tokens.bob = (await createToken(db, { userName: 'bob', expiresAt: null })).token;
    });
    s = await startServer({ backend: backends()[0]!, dataDir, env: { TRAINYARD_AUTH: 'tokens', TRAINYARD_PANEL_DIR: DIST } });
    alice = await connect({ url: s.url, token: tokens.alice });
    bob = await connect({ url: s.url, token: tokens.bob });
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
    page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
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
  }, 60_000);

  const row = (name: string) => page.locator(`[data-testid=task-row][data-name="${name}"]`);

  it('asks for a token first, and says so when one is refused', async () => {
    await page.getByTestId('login-box').waitFor();
    expect(await page.getByTestId('login-notice').count()).toBe(0);
    expect(await page.getByTestId('task-row').count()).toBe(0);
    await page.getByTestId('login-token').fill(`ty_${'x'.repeat(43)}`);
    await page.getByTestId('login-submit').click();
    await page.getByTestId('login-notice').waitFor();
    expect(await page.getByTestId('login-notice').textContent()).toMatch(/refused: it is unknown, has expired or was revoked/);
    await page.screenshot({ path: join(SHOTS, 'login-refused.png') });
  });

  it('signs in: shows who is signed in and, live, only their own tasks', async () => {
    await bob.tasks.create.mutate(simulated({ steps: 1, stepMs: 1 }, { name: 'bobs-task' }));
    await page.getByTestId('login-token').fill(tokens.alice!);
    await page.getByTestId('login-submit').click();
    await page.getByTestId('signed-in').waitFor();
    expect(await page.getByTestId('signed-in').getAttribute('data-user')).toBe('alice');
    expect(await page.getByTestId('login-box').count()).toBe(0);
    // A task created elsewhere reaches the table through the subscription, which sends the token.
    await page.getByTestId('conn-pill').and(page.locator('[data-state=online]')).waitFor();
    await alice.tasks.create.mutate(simulated({ steps: 1, stepMs: 1 }, { name: 'alices-task' }));
    await row('alices-task').waitFor();
    expect(await row('bobs-task').count()).toBe(0);
    await page.screenshot({ path: join(SHOTS, 'login-signed-in.png') });
    // The session outlives a reload of the tab.
    await page.reload();
    await page.getByTestId('signed-in').waitFor();
    await row('alices-task').waitFor();
  });

  it('a token revoked meanwhile brings the login box back, saying why; signing out forgets the token', async () => {
    // PGlite is one process at a time: the service stops while the token is revoked.
    await s.stop('SIGTERM');
    await onDatabase(dataDir, (db) => revokeToken(db, aliceTokenId, new Date()));
    s = await s.restart();
    await page.getByTestId('login-notice').waitFor({ timeout: WAIT });
    expect(await page.getByTestId('login-notice').textContent()).toMatch(/refused: it is unknown, has expired or was revoked/);
    expect(await page.evaluate(() => sessionStorage.getItem('trainyard.token'))).toBeNull();

    await page.getByTestId('login-token').fill(tokens.bob!);
    await page.getByTestId('login-submit').click();
    await page.getByTestId('signed-in').waitFor();
    expect(await page.getByTestId('signed-in').getAttribute('data-user')).toBe('bob');
    await row('bobs-task').waitFor();
    expect(await row('alices-task').count()).toBe(0);
    await page.getByTestId('sign-out').click();
    await page.getByTestId('login-box').waitFor();
    expect(await page.getByTestId('login-notice').count()).toBe(0);
    expect(await page.evaluate(() => sessionStorage.getItem('trainyard.token'))).toBeNull();
    expect(pageErrors).toEqual([]);
    expect(cspViolations).toEqual([]);
  });
});

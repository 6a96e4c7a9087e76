// The Studio panel in a real headless Chromium (playwright-core, the system's /usr/bin/chromium)
// against the real server (started by the server's e2e harness, PGlite, simulated trainer, a fake
// nvidia-smi that reports one 12 GB GPU, partly held by another program). One server and one page for the whole file: the
// scenarios follow each other like a user's session. Screenshots of each main view go to
// services/studio/test-results/.
//
// Robust on a loaded machine: every step waits for a condition (generous timeouts), nothing
// asserts on timing.
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser, type Locator, type Page } from 'playwright-core';
import { afterAll, beforeAll, beforeEach, describe, expect, it, onTestFailed } from 'vitest';
import { backends } from '@trainyard/store/testing';
import { DEFAULT_PRESET, PRESET_NAMES } from '@trainyard/catalogue';
import { DATASET, installFakeNvidiaSmi, REPO_ROOT, startServer, type RunningServer } from '@trainyard/server/testing';
import { CHROMIUM, CHROMIUM_ARGS, DIST, ensurePanelBuilt, hasChromium, STUDIO } from './e2e-kit';

const SHOTS = join(STUDIO, 'test-results');
const FIXTURE_GPU = join(REPO_ROOT, 'services/server/test/fixtures/nvidia-smi/one-gpu');
// Long enough that a task is still training while the specs look at it (cancelled well before).
const SIMULATE = '{"steps":400,"stepMs":250,"logLinesPerStep":1}';
const WAIT = 60_000;

describe.skipIf(!hasChromium)('Studio panel in a browser', () => {
  let s: RunningServer;
  let browser: Browser;
  let page: Page;
  let tmp: string;
  const pageErrors: string[] = [];
  // The server's Content-Security-Policy must let the panel do everything it does.
  const cspViolations: string[] = [];

  beforeAll(async () => {
    // Build the panel when dist is missing or older than its sources (as `npm start` does).
    ensurePanelBuilt();
    mkdirSync(SHOTS, { recursive: true });

    tmp = mkdtempSync(join(tmpdir(), 'studio-e2e-'));
    const fakeSmi = join(tmp, 'nvidia-smi');
    writeFileSync(
      fakeSmi,
      `#!/bin/sh\ncase "$1" in\n  --query-gpu=*) cat '${FIXTURE_GPU}/gpus.csv' ;;\n  --query-compute-apps=*) cat '${FIXTURE_GPU}/apps.csv' ;;\n  *) echo "unexpected: $*" >&2; exit 2 ;;\nesac\n`,
    );
    chmodSync(fakeSmi, 0o755);

    s = await startServer({
      backend: backends()[0]!, // PGlite
      env: { TRAINYARD_PANEL_DIR: DIST, TRAINYARD_NVIDIA_SMI: fakeSmi, TRAINYARD_QUEUE_WARN: '1' },
    });
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
    page = await browser.newPage({ viewport: { width: 1480, height: 1000 } });
    page.setDefaultTimeout(WAIT);
    page.on('pageerror', (err) => pageErrors.push(err.message));
    page.on('console', (m) => {
      if (/Content Security Policy/i.test(m.text())) cspViolations.push(m.text());
    });
    await page.goto(s.url);
  }, 240_000);

  // What the server said, for a failure seen only in CI.
  beforeEach(() => onTestFailed(() => console.log(`server output (last 60 lines):\n${s?.output.slice(-60).join('\n')}`)));

  afterAll(async () => {
    await browser?.close().catch(() => {});
    await s?.dispose();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  }, 60_000);

  const row = (name: string) => page.locator(`[data-testid=task-row][data-name="${name}"]`);
  const statusOf = (name: string) =>
    row(name)
      .getAttribute('data-status', { timeout: 5000 })
      .catch(() => null);
  const detail = (id: string) => page.locator(`[data-testid=task-detail][data-task-id="${id}"]`);
  /** The step shown in a row's progress ("step 12/400 · …" → 12), or -1. */
  const stepOf = async (loc: Locator) => {
    const text =
      (await loc
        .getByTestId('progress-detail')
        .textContent({ timeout: 5000 })
        .catch(() => '')) ?? '';
    const m = /step (\d+)/.exec(text);
    return m ? Number(m[1]) : -1;
  };
  const lastLogSeq = async (id: string) => {
    const lines = detail(id).getByTestId('log-line');
    const n = await lines.count();
    return n ? Number(await lines.nth(n - 1).getAttribute('data-seq')) : 0;
  };
  /** The viewport (scrolled to the top), or one element as it lies on the full page (no sticky header over it). */
  async function shot(name: string, target?: Locator) {
    await page.evaluate(() => window.scrollTo(0, 0));
    if (!target) {
      await page.screenshot({ path: join(SHOTS, name) });
      return;
    }
    const box = await target.evaluate((el) => {
      const r = el.getBoundingClientRect();
      return { x: r.x + window.scrollX, y: r.y + window.scrollY, width: r.width, height: r.height };
    });
    const pad = 12;
    await page.screenshot({
      path: join(SHOTS, name),
      fullPage: true,
      clip: { x: Math.max(0, box.x - pad), y: Math.max(0, box.y - pad), width: box.width + 2 * pad, height: box.height + 2 * pad },
    });
  }

  async function fillForm(opts: { name: string; dataset: string }) {
    await page.getByTestId('field-dataset').fill(opts.dataset);
    await page.getByTestId('field-name').fill(opts.name);
    if (!(await page.getByTestId('field-simulate').isVisible())) await page.getByTestId('advanced-toggle').click();
    await page.getByTestId('field-epochs').fill('1');
    await page.getByTestId('field-simulate').fill(SIMULATE);
  }

  async function submit(name: string) {
    await fillForm({ name, dataset: DATASET });
    await page.getByTestId('submit-task').click();
    await expect.poll(() => page.getByTestId('submit-result').textContent(), { timeout: WAIT }).toContain(name);
    await row(name).waitFor();
  }

  const idOf = async (name: string) => (await row(name).getAttribute('data-task-id'))!;

  it('shows the GPU, the recommendation and a memory estimate before anything is submitted', async () => {
    const card = page.getByTestId('gpu-card');
    await card.getByTestId('gpu-device').waitFor();
    await expect.poll(() => card.textContent()).toContain('NVIDIA GeForce RTX 3060');
    expect(await card.getByTestId('gpu-recommendation').textContent()).toContain('3B recommended');
    // The external python process is listed as not ours.
    expect(await card.getByTestId('gpu-external').textContent()).toContain('python3');
    // The model picker follows the recommendation tier of the memory a task can have: 12 GB less
    // the 1 GB another program holds.
    await expect.poll(() => page.getByTestId('field-model').inputValue()).toBe('Qwen/Qwen2.5-Coder-1.5B-Instruct');
    const options = await page.getByTestId('field-model').locator('option').allTextContents();
    expect(options.filter((o) => o.startsWith('★'))).toEqual(['★ Qwen2.5-Coder-1.5B-Instruct', '★ Qwen2.5-Coder-0.5B-Instruct']);
    expect(await page.locator('.field', { has: page.getByTestId('field-model') }).textContent()).toContain(
      '★ recommended for 11 GB of free GPU memory',
    );

    // The form opens on the catalogue's default preset, the one button marked "default" (the CLI
    // sends the same preset when --preset is not given).
    expect(await page.getByTestId(`preset-${DEFAULT_PRESET}`).getAttribute('aria-checked')).toBe('true');
    expect(await page.getByTestId(`preset-${DEFAULT_PRESET}`).textContent()).toContain('default');
    for (const p of PRESET_NAMES.filter((n) => n !== DEFAULT_PRESET)) {
      expect(await page.getByTestId(`preset-${p}`).getAttribute('aria-checked')).toBe('false');
      expect(await page.getByTestId(`preset-${p}`).textContent()).not.toContain('default');
    }
    // Client-side estimate with the server's own function: the safe preset fits a 12 GB GPU…
    await page.getByTestId('preset-safe').click();
    await expect.poll(() => page.getByTestId('estimate').getAttribute('data-level')).toBe('low');
    // …the 7B model on the performance preset does not, and the panel says what to change.
    await page.getByTestId('field-model').selectOption('Qwen/Qwen2.5-Coder-7B-Instruct');
    await page.getByTestId('preset-performance').click();
    await expect.poll(() => page.getByTestId('estimate').getAttribute('data-level')).toBe('high');
    expect(await page.getByTestId('estimate').textContent()).toContain('Likely out of memory');
    expect(await page.getByTestId('estimate').textContent()).toMatch(/^≈ [\d.]+ GB of 11 GB free/);
    expect(await page.getByTestId('estimate-held').textContent()).toBe(
      'Other programs hold 1 GB of the GPU: the estimate counts only what is left.',
    );
    // A batch size the server would refuse is not estimated at all (batch 0 needs no less than batch 1).
    await page.getByTestId('field-batch').fill('0');
    await expect.poll(() => page.getByTestId('estimate').count()).toBe(0);
    await page.getByTestId('preset-performance').click();
    expect(await page.getByTestId('estimate-message').textContent()).toMatch(
      /^To fit: lower max length from 2048 to 1024, batch size to 1/,
    );
    expect(await page.getByTestId('estimate-message').getAttribute('title')).toContain('training will likely run out of memory');
    await shot('01-gpu-and-form-oom-estimate.png', page.locator('.col-side'));
    // Free text is allowed as the model too.
    await page.getByTestId('field-model').selectOption('__other__');
    await page.getByTestId('field-model-custom').fill('my-org/tiny-coder-500M');
    await expect.poll(() => page.getByTestId('estimate').getAttribute('data-level')).toBe('low');
    await page.getByTestId('field-model').selectOption('Qwen/Qwen2.5-Coder-0.5B-Instruct');
    await page.getByTestId('preset-safe').click();
  });

  it('shows a server-side validation error next to its field', async () => {
    await fillForm({ name: 'missing-data', dataset: '/nonexistent/trainyard/data.jsonl' });
    await page.getByTestId('submit-task').click();
    const datasetField = page.locator('.field', { has: page.getByTestId('field-dataset') });
    const error = datasetField.getByTestId('field-error-datasetPath');
    await error.waitFor();
    expect(await error.textContent()).toContain('dataset /nonexistent/trainyard/data.jsonl not found or not allowed');
    expect(await page.getByTestId('field-dataset').getAttribute('aria-invalid')).toBe('true');
    // Nothing was created.
    expect(await page.getByTestId('task-row').count()).toBe(0);
    await shot('02-field-error.png', page.getByTestId('new-task-card'));
    // Editing the field clears its error.
    await page.getByTestId('field-dataset').fill(DATASET);
    await expect.poll(() => error.count()).toBe(0);

    // The Resources group: more GPUs than this host has is refused by the server, under that field.
    await page.getByTestId('field-gpus').fill('2');
    await page.getByTestId('submit-task').click();
    const gpusError = page.locator('.field', { has: page.getByTestId('field-gpus') }).getByTestId('field-error-resources.gpus');
    await gpusError.waitFor();
    expect(await gpusError.textContent()).toContain('asks for 2 GPUs but this host has 1 whole GPU(s)');
    expect(await page.getByTestId('field-gpus').getAttribute('aria-invalid')).toBe('true');
    expect(await page.getByTestId('task-row').count()).toBe(0);
    await shot('02b-resources-field-error.png', page.getByTestId('resources'));
    await page.getByTestId('field-gpus').fill('1');
    await expect.poll(() => gpusError.count()).toBe(0);
  });

  it('uploads a dataset file picked in the form, and shows why a bad one is refused', async () => {
    const picker = page.getByTestId('field-dataset-file');
    const datasetField = page.locator('.field', { has: page.getByTestId('field-dataset') });
    const bad = join(tmp, 'notes.jsonl');
    writeFileSync(bad, 'these are notes, not JSON\n');
    await picker.setInputFiles(bad);
    const error = datasetField.getByTestId('field-error-datasetPath');
    await error.waitFor();
    expect(await error.textContent()).toContain('notes.jsonl: line 1 is not JSON');
    await picker.setInputFiles(DATASET);
    await expect.poll(() => page.getByTestId('field-dataset').inputValue()).toMatch(/\/datasets\/uploads\/[0-9a-f-]+-tiny-dataset\.jsonl$/);
    await expect.poll(() => error.count()).toBe(0);
    expect(await datasetField.textContent()).toContain('Uploaded tiny-dataset.jsonl.');
  });

  it('submits three tasks from the form: one trains, two queue in order', async () => {
    await submit('alpha');
    await submit('beta');
    await submit('gamma');
    // The server's warnings after submitting: with TRAINYARD_QUEUE_WARN=1 the third one is told it waits.
    expect(await page.getByTestId('server-warnings').textContent()).toContain('already queued');
    expect(await page.locator('[data-testid=field-error-datasetPath]').count()).toBe(0);

    await expect.poll(() => statusOf('alpha'), { timeout: WAIT }).toBe('TRAINING');
    await expect.poll(() => statusOf('beta')).toBe('QUEUED');
    await expect.poll(() => statusOf('gamma')).toBe('QUEUED');
    await expect.poll(() => row('beta').getByTestId('queue-pos').textContent()).toBe('#1');
    await expect.poll(() => row('gamma').getByTestId('queue-pos').textContent()).toBe('#2');

    // The queue view: alpha holds the GPU, then beta, then gamma; the too-many-queued warning.
    const [alpha, beta, gamma] = [await idOf('alpha'), await idOf('beta'), await idOf('gamma')];
    const queue = page.getByTestId('queue-view');
    const gpu0 = queue.locator('[data-testid=queue-device][data-device-id=gpu0]');
    await expect.poll(() => gpu0.getByTestId('queue-holder').first().getAttribute('data-task-id')).toBe(alpha);
    expect(await gpu0.getAttribute('data-state')).toBe('busy');
    expect(await gpu0.getByTestId('queue-holder').getAttribute('data-exclusive')).toBe('true');
    // Its memory bar: the python process that is not ours, and alpha's whole device.
    expect(await gpu0.getByTestId('device-external').textContent()).toMatch(/other programs \d+(\.\d)? GB/);
    expect(await gpu0.getByTestId('device-memory').locator('.mem-holder').count()).toBe(1);
    await expect
      .poll(async () => Promise.all((await queue.getByTestId('queue-item').all()).map((i) => i.getAttribute('data-task-id'))))
      .toEqual([beta, gamma]);
    expect(await queue.getByTestId('queue-warning').textContent()).toContain('2 tasks are queued');
    // Why each waits: the head for the GPU, with its reservation; the next one for a device too.
    const waiting = (id: string) => queue.locator(`[data-testid=queue-item][data-task-id="${id}"]`);
    await expect.poll(() => waiting(beta).getAttribute('data-reason')).toBe('WAITING_FOR_DEVICES');
    expect(await waiting(beta).getByTestId('queue-reason-code').textContent()).toBe('Waiting for devices');
    expect(await waiting(beta).getByTestId('queue-reason').textContent()).toMatch(
      /^Needs 1 GPU, 0 free\. First in the queue: reserved gpu0 from \d\d:\d\d UTC/,
    );
    expect(await waiting(beta).getByTestId('queue-reservation').textContent()).toMatch(/^Reserved gpu0: starts by /);
    expect(await waiting(gamma).getAttribute('data-reason')).toBe('WAITING_FOR_DEVICES');
    expect(await waiting(gamma).getByTestId('queue-reason').textContent()).toMatch(/^Needs 1 GPU, 0 free\./);
    expect(await waiting(gamma).getByTestId('queue-reservation').count()).toBe(0);
    await shot('05a-queue-two-waiting.png', queue);
  });

  it('shows progress and log lines live, and the timeline with a replay slider', async () => {
    const alpha = await idOf('alpha');
    await row('alpha').getByTestId('expand').click();
    const d = detail(alpha);
    await d.waitFor();
    // Log lines arrive while we watch (the simulated trainer logs a line per step).
    await expect.poll(() => d.getByTestId('log-line').count(), { timeout: WAIT }).toBeGreaterThanOrEqual(3);
    const seq = await lastLogSeq(alpha);
    await expect.poll(() => lastLogSeq(alpha), { timeout: WAIT }).toBeGreaterThan(seq + 2);
    expect(await d.getByTestId('task-logs').textContent()).toMatch(/step \d+ log 1\/1/);
    // Progress moves in the table (tasks.onUpdate, no polling).
    const step = await stepOf(row('alpha'));
    await expect.poll(() => stepOf(row('alpha')), { timeout: WAIT }).toBeGreaterThan(Math.max(step, 0));

    // Timeline: who did what.
    // What it asked for, the device it holds, and why it started then.
    expect(await d.getByTestId('task-request').textContent()).toBe('1 GPU');
    expect(await d.getByTestId('task-devices-detail').textContent()).toBe('gpu0 whole');
    await expect.poll(() => d.getByTestId('placement-grounds').textContent()).toContain('Placed on gpu0');
    expect(await d.getByTestId('placement-grounds').textContent()).toContain('Started with nothing waiting ahead of it (backfill policy).');
    expect(await d.getByTestId('placement-grounds').getAttribute('data-backfilled')).toBe('false');
    const timeline = d.getByTestId('timeline');
    await expect.poll(() => timeline.getByTestId('timeline-event').first().getAttribute('data-type')).toBe('TaskSubmitted');
    await expect.poll(() => timeline.textContent()).toContain('by studio');
    await expect.poll(() => timeline.locator('[data-type=TrainingStarted]').count()).toBe(1);
    // Replay: the first event's state is a fresh submission; the last is training.
    const slider = d.getByTestId('replay-slider');
    await slider.fill('0');
    await expect.poll(() => d.getByTestId('replay-state').getAttribute('data-status')).toBe('PENDING');
    expect(await d.getByTestId('replay-position').textContent()).toMatch(/^event 1 of \d+/);
    await slider.fill('3');
    await expect.poll(() => d.getByTestId('replay-state').getAttribute('data-status')).not.toBe('PENDING');
    await shot('03-tasks-expanded-logs-timeline.png', page.getByTestId('task-table'));
    // Back to following the latest state: the slider's end. Progress events keep arriving, so
    // the end read a moment ago may no longer be the end when the value lands: read and move again.
    await expect
      .poll(
        async () => {
          await slider.fill((await slider.getAttribute('max')) ?? '0');
          return d.getByTestId('replay-position').textContent();
        },
        { timeout: WAIT },
      )
      .toContain('latest');
  });

  it('cancels the running task after confirmation and the next one starts', async () => {
    // "Keep running" closes the dialog and changes nothing.
    await row('gamma').getByTestId('cancel-btn').click();
    await page.getByTestId('confirm-dialog').getByTestId('confirm-cancel').click();
    await expect.poll(() => page.getByTestId('confirm-dialog').isVisible()).toBe(false);
    expect(await statusOf('gamma')).toBe('QUEUED');

    await row('alpha').getByTestId('cancel-btn').click();
    const dialog = page.getByTestId('confirm-dialog');
    await expect.poll(() => dialog.textContent()).toContain('Cancel “alpha”?');
    await page.getByTestId('cancel-reason').fill('superseded by beta');
    await shot('04-cancel-confirm.png');
    await dialog.getByTestId('confirm-ok').click();

    await expect.poll(() => statusOf('alpha'), { timeout: WAIT }).toBe('CANCELLED');
    await expect.poll(() => statusOf('beta'), { timeout: WAIT }).toBe('TRAINING');
    await expect.poll(() => statusOf('gamma')).toBe('QUEUED');
    await expect.poll(() => row('gamma').getByTestId('queue-pos').textContent()).toBe('#1');
    const beta = await idOf('beta');
    const queue = page.getByTestId('queue-view');
    const holder = queue.locator('[data-testid=queue-device][data-device-id=gpu0]').getByTestId('queue-holder');
    await expect.poll(() => holder.first().getAttribute('data-task-id')).toBe(beta);
    await expect.poll(() => queue.getByTestId('queue-item').count()).toBe(1);
    // gamma is the head now: it waits with the reservation.
    await expect.poll(() => queue.getByTestId('queue-reservation').count()).toBe(1);
    // One queued task is not "too many" any more.
    await expect.poll(() => queue.getByTestId('queue-warning').count()).toBe(0);
    await expect.poll(() => stepOf(holder.first()), { timeout: WAIT }).toBeGreaterThan(0);
    await shot('05b-queue-after-cancel.png', queue);

    // The cancelled task's log keeps its last lines (the trainer's reaction to SIGTERM).
    const alpha = await idOf('alpha');
    await expect.poll(() => detail(alpha).getByTestId('task-logs').textContent(), { timeout: WAIT }).toContain('received SIGTERM');
    // The timeline of the cancelled task says who stopped it.
    await expect.poll(() => detail(alpha).getByTestId('timeline').locator('[data-type=TaskCancelled]').count()).toBe(1);
    expect(await detail(alpha).getByTestId('timeline').textContent()).toContain('superseded by beta');

    // A finished task can be deleted (after confirmation); it leaves the table.
    expect(await row('alpha').getByTestId('cancel-btn').count()).toBe(0);
    await row('alpha').getByTestId('delete-btn').click();
    await dialog.getByTestId('confirm-ok').click();
    await expect.poll(() => row('alpha').count(), { timeout: WAIT }).toBe(0);
    // Running and queued tasks offer no delete.
    expect(await row('beta').getByTestId('delete-btn').count()).toBe(0);
  });

  it('shows the connection loss while the server restarts, then catches up', async () => {
    const beta = await idOf('beta');
    await row('beta').getByTestId('expand').click();
    await expect.poll(() => detail(beta).getByTestId('log-line').count(), { timeout: WAIT }).toBeGreaterThan(0);
    await expect.poll(() => page.getByTestId('conn-pill').getAttribute('data-state')).toBe('online');

    // Same port and data; this time nvidia-smi is missing, so the GPU card changes too.
    const restarting = s.restart({ TRAINYARD_NVIDIA_SMI: join(tmp, 'no-nvidia-smi') });
    const banner = page.getByTestId('conn-banner');
    await expect.poll(() => banner.getAttribute('data-state', { timeout: 1000 }).catch(() => null), { timeout: WAIT }).toBe('lost');
    expect(await banner.textContent()).toContain('Connection lost — reconnecting…');
    await shot('06-reconnecting-banner.png');
    const stepBefore = await stepOf(row('beta'));
    const seqBefore = await lastLogSeq(beta);
    // Back: "Reconnected" (for four seconds), then the banner clears. Watched from now on: on a
    // loaded machine the panel may be back before the harness has seen the server ready.
    const reconnected = expect
      .poll(
        async () => {
          const state = await banner.getAttribute('data-state', { timeout: 1000 }).catch(() => null);
          return state === 'recovered' ? await banner.textContent({ timeout: 1000 }).catch(() => null) : state;
        },
        { timeout: WAIT, interval: 50 },
      )
      .toContain('Reconnected');
    s = await restarting;
    await reconnected;
    await expect.poll(() => banner.count(), { timeout: WAIT }).toBe(0);
    expect(await page.getByTestId('conn-pill').getAttribute('data-state')).toBe('online');
    // New events arrive again on the resumed feed and log.
    await expect.poll(() => stepOf(row('beta')), { timeout: WAIT }).toBeGreaterThan(stepBefore);
    await expect.poll(() => lastLogSeq(beta), { timeout: WAIT }).toBeGreaterThan(seqBefore);
    // What the table shows agrees with the server.
    const server = await s.client.tasks.get.query({ id: beta });
    expect(server.status).toBe('TRAINING');
    await expect.poll(async () => (await stepOf(row('beta'))) >= (server.progress.step ?? 0), { timeout: WAIT }).toBe(true);
    // Lists were refetched on reconnect: the GPU card now reports no GPU.
    await page.getByTestId('gpu-none').waitFor();
    expect(await page.getByTestId('gpu-none').textContent()).toContain('No GPU detected');
    await shot('07-no-gpu.png', page.getByTestId('gpu-card'));
    // A new task submitted after the restart shows up live as well.
    await submit('delta');
    await expect.poll(() => statusOf('delta'), { timeout: WAIT }).toBe('QUEUED');
    await expect.poll(() => row('delta').getByTestId('queue-pos').textContent(), { timeout: WAIT }).toBe('#2');
    // Its detail says why it waits.
    await row('delta').getByTestId('expand').click();
    const waits = detail(await idOf('delta')).getByTestId('task-waits');
    await expect.poll(() => waits.getAttribute('data-reason'), { timeout: WAIT }).toBe('WAITING_FOR_DEVICES');
    expect(await waits.textContent()).toContain('#2 in the queue: Needs 1 GPU, 0 free.');
    await shot('08-full-page.png', page.locator('.app'));
    // A narrower window stacks the columns.
    await page.setViewportSize({ width: 1024, height: 900 });
    await shot('09-narrow-window.png', page.locator('.app'));
    await page.setViewportSize({ width: 1480, height: 1000 });
    expect(pageErrors).toEqual([]);
    expect(cspViolations).toEqual([]);
  });

  it('shows a GPU in MIG mode with its instances under it, in the GPU card and the queue', async () => {
    // The same service again, on a host with four GPUs, the last in MIG mode with three instances.
    const smi = installFakeNvidiaSmi(join(tmp, 'four-gpus-mig'), 'four-gpus-mig');
    s = await s.restart({ TRAINYARD_NVIDIA_SMI: smi.path });
    const card = page.getByTestId('gpu-card');
    await expect.poll(() => card.getByTestId('gpu-device').count(), { timeout: WAIT }).toBe(4);
    const instances = card.getByTestId('gpu-instance');
    await expect
      .poll(() => instances.evaluateAll((els) => els.map((e) => [e.getAttribute('data-device-id'), e.getAttribute('data-profile')])))
      .toEqual([
        ['gpu3/mig0', '3g.40gb'],
        ['gpu3/mig1', '1g.10gb'],
        ['gpu3/mig2', '1g.10gb'],
      ]);
    // Each with its own memory; another program holds some of the first.
    expect(await instances.first().textContent()).toMatch(/11\.9 GB of 39\.3 GB$/);
    const queue = page.getByTestId('queue-view');
    const deviceIds = (loc: Locator) =>
      loc.getByTestId('queue-device').evaluateAll((els) => els.map((e) => e.getAttribute('data-device-id')));
    const all = ['gpu0', 'gpu1', 'gpu2', 'gpu3/mig0', 'gpu3/mig1', 'gpu3/mig2'];
    // The server's queue view first, then the panel's: a failure says which of the two lags.
    await expect.poll(async () => (await s.client.queue.get.query()).devices.map((d) => d.id), { timeout: WAIT }).toEqual(all);
    await expect.poll(() => deviceIds(queue), { timeout: WAIT }).toEqual(all);
    // The instances sit under their GPU; the whole GPUs stand alone.
    const gpu3 = queue.locator('[data-testid=queue-gpu][data-gpu-index="3"]');
    expect(await deviceIds(gpu3)).toEqual(['gpu3/mig0', 'gpu3/mig1', 'gpu3/mig2']);
    expect(await gpu3.textContent()).toContain('MIG mode, 3 instances');
    expect(await queue.getByTestId('queue-gpu').count()).toBe(1);
    // With devices free, the queued tasks start.
    await expect.poll(() => queue.getByTestId('queue-item').count(), { timeout: WAIT }).toBe(0);
    await expect.poll(() => statusOf('delta'), { timeout: WAIT }).toBe('TRAINING');
    await shot('10-mig-gpu-card.png', card);
    await shot('11-mig-queue.png', queue);
    expect(pageErrors).toEqual([]);
    expect(cspViolations).toEqual([]);
  });
});

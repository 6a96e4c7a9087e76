// Operators' files (issue 19): infra/prometheus/alerts.yml passes `promtool check rules`, and
// every trainyard_* metric it and the Grafana dashboards in infra/grafana/ query is one a real
// running service exports at /metrics (its HTTP server scraped, on PGlite). The per-device and
// per-reason series carry values, and an idle gap between two tasks on a device is observed.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { StoredTaskEvent, TaskRecord } from '@trainyard/domain';
import { skipLoudlyOrFail } from '@trainyard/store/testing';
import { loadConfig } from './config';
import { createApiServer } from './http';
import { Metrics } from './metrics';
import { TrainyardService } from './service';

const INFRA = join(import.meta.dirname, '../../../infra');
const ALERTS = join(INFRA, 'prometheus/alerts.yml');

function promtoolMissing(): string | null {
  try {
    execFileSync('promtool', ['--version'], { stdio: 'pipe', timeout: 30_000 });
    return null;
  } catch (err) {
    return `promtool does not run here (${(err as Error).message.split('\n')[0]})`;
  }
}

/** The trainyard_* names a PromQL text uses (histogram series suffixes kept: they are checked as such). */
function metricNames(promql: string): string[] {
  return [...promql.matchAll(/\btrainyard_[a-z0-9_]+/g)].map((m) => m[0]);
}

/** The series names a scrape can hold: each `# TYPE` line's name, a histogram's _bucket, _sum and _count. */
function exported(scrape: string): Set<string> {
  const names = new Set<string>();
  for (const m of scrape.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
    const [, name, type] = m;
    names.add(name!);
    if (type === 'histogram' || type === 'summary') for (const s of ['_bucket', '_sum', '_count']) names.add(name! + s);
  }
  return names;
}

function dashboardExprs(): { file: string; expr: string }[] {
  const out: { file: string; expr: string }[] = [];
  const walk = (file: string, node: unknown): void => {
    if (Array.isArray(node)) for (const n of node) walk(file, n);
    else if (node && typeof node === 'object') {
      for (const [k, v] of Object.entries(node)) {
        if (k === 'expr' && typeof v === 'string') out.push({ file, expr: v });
        else walk(file, v);
      }
    }
  };
  for (const f of readdirSync(join(INFRA, 'grafana')).filter((f) => f.endsWith('.json')))
    walk(f, JSON.parse(readFileSync(join(INFRA, 'grafana', f), 'utf8')));
  return out;
}

const missing = promtoolMissing();
if (missing) skipLoudlyOrFail(`${missing}: the alert rules cannot be checked`, 'apt-get install prometheus');

describe('alerts.yml', () => {
  it.skipIf(missing !== null)('passes promtool check rules', () => {
    const out = execFileSync('promtool', ['check', 'rules', ALERTS], { encoding: 'utf8', timeout: 60_000 });
    expect(out).toContain('SUCCESS');
  });
});

describe('the metrics operators query are the ones a running service exports', () => {
  let service: TrainyardService;
  let metrics: Metrics;
  let server: Server;
  let dataDir: string;
  let scrape: string;

  beforeAll(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'trainyard-metrics-infra-'));
    service = await TrainyardService.start(
      loadConfig({ TRAINYARD_DATA_DIR: dataDir, TRAINYARD_GPU_SLOTS: '2', TRAINYARD_NVIDIA_SMI: join(dataDir, 'no-nvidia-smi') }),
      { info: () => {}, warn: () => {}, error: () => {} },
    );
    metrics = new Metrics(service);
    server = createApiServer(service, metrics);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    const res = await fetch(`http://127.0.0.1:${port}/metrics`);
    expect(res.status).toBe(200);
    scrape = await res.text();
  });

  afterAll(async () => {
    await new Promise((resolve) => server?.close(resolve));
    await service?.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('every trainyard_* metric in alerts.yml is exported', () => {
    const text = readFileSync(ALERTS, 'utf8')
      .split('\n')
      .filter((l) => !l.trimStart().startsWith('#'))
      .join('\n');
    const used = metricNames(text);
    expect(used.length).toBeGreaterThan(4);
    const names = exported(scrape);
    expect(used.filter((n) => !names.has(n))).toEqual([]);
  });

  it('every trainyard_* metric in the Grafana dashboards is exported, and every query names one', () => {
    const exprs = dashboardExprs();
    expect(exprs.length).toBeGreaterThan(5);
    const names = exported(scrape);
    for (const { file, expr } of exprs) {
      const used = metricNames(expr);
      expect(used.length, `${file}: ${expr}`).toBeGreaterThan(0);
      expect(
        used.filter((n) => !names.has(n)),
        `${file}: ${expr}`,
      ).toEqual([]);
    }
  });

  it('each device has its memory, promise, holders and idle time; each queue reason its count; the database is up', () => {
    for (const device of ['0', '1']) {
      for (const name of [
        'trainyard_gpu_memory_bytes',
        'trainyard_gpu_memory_promised_bytes',
        'trainyard_gpu_holders',
        'trainyard_gpu_idle_seconds',
      ])
        expect(scrape, `${name} for slot ${device}`).toMatch(new RegExp(`^${name}\\{device="[^"]+",gpu="${device}"\\} `, 'm'));
    }
    expect(scrape).toMatch(/^trainyard_queue_waiting_tasks\{reason="WAITING_FOR_DEVICES"\} 0$/m);
    expect(scrape).toMatch(/^trainyard_queue_waiting_tasks\{reason="UNCLASSIFIED"\} 0$/m);
    expect(scrape).toMatch(/^trainyard_database_up 1$/m);
    expect(scrape).toMatch(/^trainyard_queue_warn_at \d+$/m);
  });

  it('a device released by one task and assigned to the next records the idle gap between them', async () => {
    const at = (ms: number) => new Date(Date.UTC(2026, 0, 1, 0, 0, 0, ms)).toISOString();
    const grant = { deviceId: 'dev-x', gpuIndex: 0, uuid: null, migProfile: null, memoryMb: 1000 };
    const event = (streamId: string, type: string, ms: number, data: unknown) =>
      ({
        type,
        data,
        streamId,
        position: String(ms),
        version: 1,
        recordedAt: at(ms),
        metadata: { actor: 'spec', schemaVersion: 1 },
      }) as StoredTaskEvent;
    metrics.observe(
      [
        event('t1', 'TaskAssigned', 0, { devices: [grant], runnerId: 'r', attempt: 1, grounds: null }),
        event('t1', 'TaskCompleted', 5000, { exitCode: 0 }),
        event('t2', 'TaskAssigned', 5250, { devices: [grant], runnerId: 'r', attempt: 1, grounds: null }),
      ],
      new Map<string, TaskRecord>(),
    );
    const text = await metrics.registry.metrics();
    expect(text).toMatch(/^trainyard_gpu_idle_gap_seconds_count\{device="dev-x"\} 1$/m);
    expect(text).toMatch(/^trainyard_gpu_idle_gap_seconds_sum\{device="dev-x"\} 0\.25$/m);
  });
});

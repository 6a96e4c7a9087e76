// Helpers for the specs of the REST API (SAGE Studio's contract): plain HTTP calls as Studio's
// panel or any script makes them, and the shape Studio reads.
import { request } from 'node:http';
import { expect } from 'vitest';
import { studioTask, STUDIO_STATUSES } from '../src/studio/shape';

export interface RestAnswer<T = unknown> {
  status: number;
  headers: Headers;
  /** The body as JSON when it is JSON, else its text. */
  body: T;
  text: string;
}

/** One call with fetch, as a browser page or a script would make it. */
export async function rest<T = unknown>(
  base: string,
  method: string,
  path: string,
  opts: { json?: unknown; body?: RequestInit['body']; headers?: Record<string, string> } = {},
): Promise<RestAnswer<T>> {
  const headers: Record<string, string> = { ...(opts.json !== undefined ? { 'content-type': 'application/json' } : {}), ...opts.headers };
  const res = await fetch(`${base}${path}`, {
    method,
    headers,
    body: opts.json !== undefined ? JSON.stringify(opts.json) : opts.body,
  });
  const text = await res.text();
  let body: unknown = text;
  if (/^application\/json/.test(res.headers.get('content-type') ?? '')) body = JSON.parse(text);
  return { status: res.status, headers: res.headers, body: body as T, text };
}

/** One request with exactly these headers (Host included), as curl sends it. */
export function raw(
  port: number,
  opts: { method?: string; path: string; headers?: Record<string, string>; body?: string | Buffer },
): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method: opts.method ?? 'GET', path: opts.path, headers: opts.headers ?? {} }, (res) => {
      let body = '';
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end(opts.body);
  });
}

/** The fields of a task in Studio's panel (FinetuneTask), exactly these. */
const STUDIO_TASK_FIELDS = [
  'task_id',
  'model_name',
  'dataset_path',
  'output_dir',
  'status',
  'progress',
  'current_epoch',
  'total_epochs',
  'loss',
  'created_at',
  'started_at',
  'completed_at',
  'error_message',
  'logs',
  'config',
];

/** Studio's status words, as its panel spells them (its statusConfig). */
const STUDIO_STATUS_WORDS = ['pending', 'queued', 'preparing', 'training', 'completed', 'failed', 'cancelled'];

/**
 * A task as Studio's panel reads it: the wrong type in status, loss, progress, logs or
 * created_at crashes the whole page, so each is checked on every task a spec sees.
 */
export function expectStudioTask(t: Record<string, unknown>, extra: string[] = []): void {
  expect(Object.keys(t).sort()).toEqual([...STUDIO_TASK_FIELDS, ...extra].sort());
  expect(STUDIO_STATUS_WORDS).toContain(t.status);
  expect(STUDIO_STATUSES).toContain(t.status);
  expect(typeof t.loss).toBe('number');
  expect(Number.isFinite(t.loss)).toBe(true);
  expect(typeof t.progress).toBe('number');
  expect(t.progress).toBeGreaterThanOrEqual(0);
  expect(t.progress).toBeLessThanOrEqual(100);
  expect(Array.isArray(t.logs) && (t.logs as unknown[]).every((l) => typeof l === 'string')).toBe(true);
  expect((t.logs as unknown[]).length).toBeLessThanOrEqual(50);
  expect(new Date(t.created_at as string).toISOString()).toBe(t.created_at);
  for (const k of ['started_at', 'completed_at'] as const) if (t[k] !== null) expect(new Date(t[k] as string).toISOString(), k).toBe(t[k]);
  studioTask.parse(t);
}

// Hostile input for every procedure, generated with fast-check: wrong types, huge strings, deep
// objects, unicode (bidi overrides, surrogate halves, NUL), negative numbers, NaN/Infinity (as
// JSON they arrive as null; raw bodies carry 1e999), path traversal in datasetPath/outputDir
// (also through a symlink inside the datasets root), shell metacharacters in every string,
// forged cursors. The promise: only typed tRPC errors (BAD_REQUEST / NOT_FOUND / CONFLICT, and
// PARSE_ERROR / PAYLOAD_TOO_LARGE for bodies that are not JSON or too big), the server never
// falls over (health ok after), nothing is written for a rejected input, and an accepted one is
// stored as given, inside the datasets root and the outputs folder.
// A complement to bad-input.e2e.spec.ts (hand-written cases).
// Issue 13's and later procedures too: tasks.createMany/pause/resume, users.me, quotas.get/set,
// webhooks.* and deployments.*; for those that write outside the log (quotas, webhooks,
// deployments) a refused call must leave their rows as they were, an accepted one be listed whole.
// Hostile request headers (fuzzRequestHeaders): a Host the service does not answer to, a foreign
// Origin, Sec-Fetch-Site: cross-site, a body that is not JSON, each refused (421/403/415) with
// nothing written.
import { realpathSync } from 'node:fs';
import { connect } from 'node:net';
import { isAbsolute, relative, resolve, sep } from 'node:path';
import fc from 'fast-check';
import type { StoredTaskEvent, TaskRecord } from '@trainyard/domain';
import { callApi, MUTATIONS, openSubscription } from './procs';

export interface FuzzTarget {
  url: string;
  /** TRAINYARD_DATASETS_ROOT of the server. */
  datasetsRoot: string;
  /** A dataset inside the root. */
  dataset: string;
  /** The server's outputs folder (<data>/outputs). */
  outputsRoot: string;
  /** Tasks that exist (to aim cancel/delete/logs at something real). */
  knownIds: string[];
}

export interface FuzzStats {
  tried: number;
  accepted: number;
  rawBodies: number;
  byCode: Record<string, number>;
}

interface Call {
  proc: string;
  input?: unknown;
  /** Sent verbatim instead of JSON.stringify(input). */
  rawBody?: string;
}

// ---------------------------------------------------------------------------------------------
// Values

const SHELL = [
  ';',
  '&&',
  '||',
  '|',
  '`id`',
  '$(reboot)',
  '${IFS}',
  '>',
  '<',
  '&',
  "'",
  '"',
  '\\',
  '*',
  '?',
  '~',
  '#',
  '!',
  '\n',
  '\r\n',
  '\t',
];
const TRAVERSAL = [
  '..',
  '../',
  '../../etc/passwd',
  '..\\..\\windows',
  '/etc/passwd',
  '/etc',
  '/',
  '.',
  './',
  '%2e%2e%2f',
  '..%2f',
  '....//',
  '/proc/self/environ',
  '/dev/zero',
  '~/.ssh/id_rsa',
  'C:\\Windows\\system32',
];
const UNICODE = [
  '\u202e',
  '\u200b',
  '\ufeff',
  '\u0000',
  '\u001b[31m',
  '\ud800',
  '\udfff',
  '🦜',
  '名前',
  'é',
  'İ',
  '\u0085',
  '\u2028',
  '\uffff',
];

const fragment = fc.oneof(
  { weight: 3, arbitrary: fc.string({ maxLength: 12 }) },
  { weight: 2, arbitrary: fc.constantFrom(...SHELL) },
  { weight: 2, arbitrary: fc.constantFrom(...TRAVERSAL) },
  { weight: 2, arbitrary: fc.constantFrom(...UNICODE) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 8 }) },
);

/** Strings made of hostile pieces, sometimes huge. */
const hostileString: fc.Arbitrary<string> = fc.oneof(
  { weight: 6, arbitrary: fc.array(fragment, { minLength: 0, maxLength: 6 }).map((xs) => xs.join('')) },
  { weight: 1, arbitrary: fc.constantFrom('', ' ', '   \t ') },
  {
    weight: 1,
    arbitrary: fc
      .tuple(fragment, fc.integer({ min: 200, max: 300_000 }))
      .map(([f, n]) => (f || 'x').repeat(Math.ceil(n / Math.max(1, f.length)))),
  },
);

const hostileNumber = fc.oneof(
  fc.constantFrom(
    -1,
    -0,
    0,
    0.5,
    1.5,
    -(2 ** 31),
    2 ** 31,
    2 ** 53 + 2,
    -9223372036854775808,
    1e308,
    -1e308,
    Number.MAX_SAFE_INTEGER,
    Number.MIN_VALUE,
    NaN,
    Infinity,
    -Infinity,
  ),
  fc.integer(),
  fc.double(),
);

const deep = (n: number, leaf: unknown): unknown => {
  let v = leaf;
  for (let i = 0; i < n; i++) v = i % 2 ? [v] : { a: v };
  return v;
};

/** Anything JSON can carry, hostile leaning. */
const hostileValue: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 4, arbitrary: hostileString },
  { weight: 3, arbitrary: hostileNumber },
  {
    weight: 1,
    arbitrary: fc.constantFrom(null, true, false, [], {}, { __proto__: { polluted: true } }, { constructor: { prototype: { x: 1 } } }),
  },
  { weight: 1, arbitrary: fc.integer({ min: 10, max: 3000 }).map((n) => deep(n, 'x')) },
  { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 4 }) },
  { weight: 1, arbitrary: fc.array(hostileString, { maxLength: 5 }) },
);

/** Maybe replace each field of a good input by a hostile value; maybe drop some; maybe add unknown ones. */
function mutate(good: Record<string, unknown>, fields: Record<string, fc.Arbitrary<unknown>>): fc.Arbitrary<unknown> {
  const keys = Object.keys(fields);
  return fc
    .tuple(
      fc.tuple(
        ...keys.map((k) =>
          fc.option(fc.oneof({ weight: 2, arbitrary: fields[k]! }, { weight: 1, arbitrary: hostileValue }), { freq: 2, nil: undefined }),
        ),
      ),
      fc.subarray(keys),
      fc.option(
        fc.dictionary(fc.oneof(hostileString, fc.constantFrom('__proto__', 'constructor', 'prototype')), hostileValue, { maxKeys: 3 }),
        { freq: 5, nil: undefined },
      ),
    )
    .map(([values, dropped, extra]) => {
      const out: Record<string, unknown> = { ...good };
      keys.forEach((k, i) => {
        if (values[i] !== undefined) out[k] = values[i];
      });
      for (const k of dropped.slice(0, 1)) delete out[k];
      if (extra) Object.assign(out, extra);
      return out;
    });
}

/** base64url(JSON) of a list: a cursor that decodes, with hostile parts. */
const forgedCursor = fc
  .tuple(
    fc.oneof(
      hostileString,
      fc.constantFrom(
        '1',
        '0',
        '2026-13-45T99:99:99Z',
        '0000-01-01T00:00:00Z',
        '275760-09-13T00:00:00Z',
        '-000001-01-01T00:00:00Z',
        'Tue, 01 Jan 2030',
        '2026-01-01',
      ),
      fc.date({ noInvalidDate: true }).map((d) => d.toISOString()),
    ),
    fc.oneof(hostileString, fc.constantFrom('t1', '\u0000', 'a'.repeat(10_000))),
    fc.option(hostileValue, { nil: undefined }),
  )
  .map(([a, b, c]) => Buffer.from(JSON.stringify(c === undefined ? [a, b] : [a, b, c])).toString('base64url'));

const isoish = fc.oneof(
  fc.date({ noInvalidDate: true }).map((d) => d.toISOString()),
  fc.constantFrom(
    '0000-01-01T00:00:00Z',
    '0001-01-01T00:00:00Z',
    '9999-12-31T23:59:59Z',
    '2026-02-30T00:00:00Z',
    '2026-01-01T24:00:00Z',
    '2026-01-01T00:00:00+14:00',
    '2026-01-01T00:00:00-23:59',
    '2026-01-01T00:00:00.123456789Z',
    '1970-01-01T00:00:00Z',
    '2026-01-01',
    'now',
    'yesterday',
  ),
  fc
    .tuple(fc.integer({ min: 0, max: 9999 }), fc.integer({ min: 0, max: 13 }), fc.integer({ min: 0, max: 32 }))
    .map(([y, m, d]) => `${String(y).padStart(4, '0')}-${String(m).padStart(2, '0')}-${String(d).padStart(2, '0')}T00:00:00Z`),
);

const positionish = fc.oneof(
  fc.bigInt({ min: 0n, max: 10n ** 19n - 1n }).map(String),
  fc.constantFrom(
    '9223372036854775807',
    '9223372036854775808',
    '9999999999999999999',
    '0',
    '00000000000000000001',
    '-1',
    '1e5',
    ' 1',
    '１',
  ),
  hostileString,
);

// ---------------------------------------------------------------------------------------------
// Calls

function callArbitrary(t: FuzzTarget): fc.Arbitrary<Call> {
  const id = fc.oneof(
    { weight: 2, arbitrary: fc.constantFrom(...(t.knownIds.length ? t.knownIds : ['tnone'])) },
    { weight: 2, arbitrary: fc.stringMatching(/^[A-Za-z0-9_-]{1,64}$/) },
    { weight: 3, arbitrary: hostileValue },
  );
  const inRoot = fc.oneof(
    fc.constant(t.dataset),
    fc.constant(resolve(t.datasetsRoot, 'escape/passwd')), // a symlink inside the root pointing out of it
    fc.constant(resolve(t.datasetsRoot, 'escape')),
    fc.constant(t.datasetsRoot),
    fc.constant(`${t.datasetsRoot}/../${t.datasetsRoot.split(sep).pop()}/data.jsonl`),
    fc.constant(`${t.datasetsRoot}/./data.jsonl`),
    fc.constant(`${t.datasetsRoot}//data.jsonl`),
    fc.constant(`${t.datasetsRoot}-evil/data.jsonl`),
    fc.constant('/etc/passwd'),
    fc.constant('data.jsonl'),
    fc.constant('/dev/null'),
    fc.constant('/proc/self/environ'),
    fc.constant(`${t.dataset}\u0000.txt`),
    fc.constant(`${t.dataset}; rm -rf /`),
  );
  const goodCreate = {
    model: 'Qwen/Qwen2.5-Coder-0.5B-Instruct',
    datasetPath: t.dataset,
    config: { epochs: 1, simulate: { steps: 1, stepMs: 1 } },
  };
  const config = mutate(
    { epochs: 1, simulate: { steps: 1, stepMs: 1 } },
    {
      epochs: hostileNumber,
      batchSize: hostileNumber,
      gradientAccumulation: hostileNumber,
      learningRate: hostileNumber,
      maxLength: hostileNumber,
      load8bit: fc.boolean(),
      load4bit: fc.boolean(),
      loraRank: hostileNumber,
      loraAlpha: hostileNumber,
      simulate: mutate(
        { steps: 1, stepMs: 1 },
        {
          steps: hostileNumber,
          stepMs: hostileNumber,
          failAtStep: hostileNumber,
          crashSignal: fc.oneof(fc.constantFrom('SIGKILL', 'SIGSTOP', 'SIGTERM', 'SIGHUP', '9', ''), hostileString),
          ignoreSigterm: hostileValue,
          logLinesPerStep: hostileNumber,
          startupMs: hostileNumber,
          hostileOutput: hostileValue,
        },
      ),
    },
  );
  const create = mutate(goodCreate, {
    model: fc.oneof(
      hostileString,
      fc.constantFrom('Qwen/Qwen2.5-Coder-0.5B-Instruct', 'a', '../../x', 'a/../b', 'org/model:tag@rev', '-rf', '--help'),
    ),
    datasetPath: fc.oneof(inRoot, hostileString),
    name: hostileString,
    outputDir: fc.oneof(
      hostileString,
      fc.constantFrom('out', 'a/b/c', '.', '..', 'a/..', 'a/../..', '/abs', 'a//b', 'a/./b', '...', '.hidden', 'a\\..\\b'),
    ),
    config,
    timeoutMs: hostileNumber,
    idempotencyKey: hostileString,
  });
  const queries: fc.Arbitrary<Call>[] = [
    mutate({ id: 'tnone' }, { id }).map((input) => ({ proc: 'tasks.get', input })),
    mutate(
      {},
      {
        status: fc.oneof(fc.constantFrom('QUEUED', 'RUNNING', 'queued', ['QUEUED', 'DONE'], []), hostileValue),
        cursor: fc.oneof(forgedCursor, hostileString),
        limit: hostileNumber,
      },
    ).map((input) => ({ proc: 'tasks.list', input })),
    mutate({ id: 'tnone' }, { id, afterSeq: hostileNumber, limit: hostileNumber, includeProtocol: hostileValue }).map((input) => ({
      proc: 'tasks.logs',
      input,
    })),
    mutate(
      {},
      {
        taskId: id,
        type: fc.oneof(fc.constantFrom('TaskSubmitted', 'TaskExploded', ['TaskQueued', 'x']), hostileValue),
        actor: hostileString,
        from: isoish,
        to: isoish,
        cursor: positionish,
        limit: hostileNumber,
      },
    ).map((input) => ({ proc: 'events.list', input })),
    mutate({ taskId: 'tnone' }, { taskId: id, atPosition: positionish, atTime: isoish }).map((input) => ({ proc: 'events.replay', input })),
    mutate({}, { taskId: id, lastEventId: positionish }).map((input) => ({ proc: 'tasks.onUpdate', input })),
    mutate(
      { id: 'tnone' },
      {
        id,
        lastEventId: fc.oneof(positionish, fc.constantFrom('0', '2147483647', '2147483648', '9999999999')),
        includeProtocol: hostileValue,
      },
    ).map((input) => ({ proc: 'tasks.onLogs', input })),
    fc
      .constantFrom('quotas.get', 'users.me', 'webhooks.list', 'deployments.list', 'system.ping', 'system.gpuHistory')
      .chain((proc) => fc.option(hostileValue, { nil: undefined }).map((input) => ({ proc, input }))),
    mutate({}, { taskId: id, webhookId: id, limit: hostileNumber }).map((input) => ({ proc: 'webhooks.deliveries', input })),
    mutate({ id: 'dnone' }, { id }).map((input) => ({ proc: 'deployments.get', input })),
    mutate({}, { limit: hostileNumber }).map((input) => ({ proc: 'deployments.list', input })),
    fc
      .constantFrom('queue.get', 'system.health', 'system.gpuInfo')
      .chain((proc) => fc.option(hostileValue, { nil: undefined }).map((input) => ({ proc, input }))),
    fc
      .tuple(fc.constantFrom('tasks.nope', 'nope', 'tasks.get.x', '__proto__', 'constructor', 'tasks.create,tasks.get'), hostileValue)
      .map(([proc, input]) => ({ proc, input })),
  ];
  // Path traversal on its own: everything else valid, so only the path decides.
  const traversal = fc.oneof(
    fc.tuple(inRoot, fc.constantFrom('', '/x', '/../../etc/passwd', '/.')).map(([p, tail]) => ({ ...goodCreate, datasetPath: p + tail })),
    fc
      .constantFrom(...TRAVERSAL, '.', 'a/..', 'a/../..', '/abs', 'a//b', 'a/./b', '...', '.hidden', 'a\\..\\b')
      .map((o) => ({ ...goodCreate, outputDir: o })),
  );
  const mutations: fc.Arbitrary<Call>[] = [
    create.map((input) => ({ proc: 'tasks.create', input })),
    traversal.map((input) => ({ proc: 'tasks.create', input })),
    mutate({ id: 'tnone' }, { id, reason: hostileString }).map((input) => ({ proc: 'tasks.cancel', input })),
    mutate({ id: 'tnone' }, { id }).map((input) => ({ proc: 'tasks.delete', input })),
    mutate({ id: 'tnone' }, { id, reason: hostileString }).map((input) => ({ proc: 'tasks.pause', input })),
    mutate({ id: 'tnone' }, { id }).map((input) => ({ proc: 'tasks.resume', input })),
    mutate(
      { tasks: [goodCreate, goodCreate] },
      {
        tasks: fc.oneof(
          fc.array(create, { maxLength: 3 }),
          fc.array(fc.constant(goodCreate), { minLength: 0, maxLength: 60 }),
          hostileValue,
        ),
        idempotencyKey: hostileString,
      },
    ).map((input) => ({ proc: 'tasks.createMany', input })),
    mutate(
      { user: 'torture', maxGpus: 1 },
      {
        user: fc.oneof(hostileString, fc.constantFrom('torture', 'root', 'nobody', '__proto__')),
        maxGpus: hostileNumber,
        gpuHours: hostileNumber,
        gpuHoursWindowHours: hostileNumber,
        maxPriority: fc.oneof(hostileString, fc.constantFrom('low', 'urgent', 'nope', 'URGENT')),
        weight: hostileNumber,
      },
    ).map((input) => ({ proc: 'quotas.set', input })),
    mutate(
      { url: 'http://127.0.0.1:9/hook' },
      {
        url: fc.oneof(
          hostileString,
          fc.constantFrom('http://127.0.0.1:9/hook', 'file:///etc/passwd', 'javascript:alert(1)', 'ftp://x', 'http://', 'http://[::1'),
        ),
        secret: hostileString,
        allUsers: hostileValue,
        events: hostileValue,
      },
    ).map((input) => ({ proc: 'webhooks.create', input })),
    mutate({ id: 'wnone' }, { id }).map((input) => ({ proc: 'webhooks.delete', input })),
    mutate(
      { taskId: 'tnone' },
      {
        taskId: id,
        model: hostileString,
        adapters: fc.oneof(fc.array(id, { maxLength: 20 }), hostileValue),
        gpus: hostileNumber,
        gpuMemoryUtilization: hostileNumber,
        maxModelLen: hostileNumber,
        port: hostileNumber,
        merge: hostileValue,
      },
    ).map((input) => ({ proc: 'deployments.create', input })),
    fc
      .tuple(fc.constantFrom('deployments.stop', 'deployments.delete'), mutate({ id: 'dnone' }, { id }))
      .map(([proc, input]) => ({ proc, input })),
    fc
      .tuple(
        fc.constantFrom('deployments.addAdapter', 'deployments.removeAdapter'),
        mutate({ id: 'dnone', taskId: 'tnone' }, { id, taskId: id }),
      )
      .map(([proc, input]) => ({ proc, input })),
  ];
  // Raw bodies: numbers JSON.stringify cannot write (1e999 → Infinity), broken JSON, odd encodings.
  const rawNumber = fc.constantFrom(
    '1e999',
    '-1e999',
    '1e-999',
    '-0',
    '1.0000000000000002',
    '9007199254740993',
    '1e21',
    '0x10',
    'NaN',
    'Infinity',
    '01',
    '1_000',
    '.5',
  );
  const raw: fc.Arbitrary<Call> = fc.oneof(
    fc.tuple(fc.constantFrom('epochs', 'batchSize', 'learningRate', 'maxLength', 'loraRank'), rawNumber).map(([field, n]) => ({
      proc: 'tasks.create',
      rawBody: `{"model":"Qwen/Qwen2.5-Coder-0.5B-Instruct","datasetPath":${JSON.stringify(t.dataset)},"config":{"epochs":1,"${field}":${n},"simulate":{"steps":1,"stepMs":1}}}`,
    })),
    fc.tuple(fc.constantFrom('timeoutMs'), rawNumber).map(([field, n]) => ({
      proc: 'tasks.create',
      rawBody: `{"model":"Qwen/Qwen2.5-Coder-0.5B-Instruct","datasetPath":${JSON.stringify(t.dataset)},"${field}":${n}}`,
    })),
    rawNumber.map((n) => ({ proc: 'tasks.list', rawBody: `{"limit":${n}}` })),
    rawNumber.map((n) => ({ proc: 'tasks.logs', rawBody: `{"id":"tnone","afterSeq":${n}}` })),
    rawNumber.map((n) => ({ proc: 'events.list', rawBody: `{"limit":${n}}` })),
    fc
      .constantFrom(
        '',
        '{',
        '}',
        '[',
        'null',
        'undefined',
        '{"model":',
        '{"a":1,"a":2}',
        '\u0000',
        '\ufeff{}',
        '{"__proto__":{"admin":true}}',
        '"' + 'x'.repeat(1000) + '"',
        '[' + '['.repeat(100_000),
      )
      .chain((body) =>
        fc.constantFrom('tasks.create', 'tasks.cancel', 'tasks.get', 'events.list').map((proc) => ({ proc, rawBody: body })),
      ),
  );
  return fc.oneof(
    { weight: 4, arbitrary: fc.oneof(...mutations) },
    { weight: 4, arbitrary: fc.oneof(...queries) },
    { weight: 1, arbitrary: raw },
  );
}

// ---------------------------------------------------------------------------------------------
// Running

const OK_CODES = new Set(['BAD_REQUEST', 'NOT_FOUND', 'CONFLICT']);

function inside(root: string, path: string): boolean {
  const rel = relative(root, path);
  return rel === '' || (rel !== '..' && !rel.startsWith(`..${sep}`) && !isAbsolute(rel));
}

async function healthy(url: string): Promise<boolean> {
  const h = await callApi<{ ok: boolean }>(url, 'system.health', undefined);
  return h.ok && h.data.ok;
}

/** The newest event position (to see whether a rejected call wrote anything). */
async function eventsAfter(url: string, position: string): Promise<StoredTaskEvent[]> {
  const out: StoredTaskEvent[] = [];
  let cursor: string | null = position === '0' ? null : position;
  for (;;) {
    const r = await callApi<{ events: StoredTaskEvent[]; nextCursor: string | null }>(url, 'events.list', { limit: 1000, cursor });
    if (!r.ok) throw new Error(`events.list failed: ${r.error.code} ${r.error.message}`);
    out.push(...r.data.events);
    if (!r.data.nextCursor) return out;
    cursor = r.data.nextCursor;
  }
}

/** Calls that write rows outside the event log: every mutation but the tasks' (quotas, webhooks, deployments). */
const SIDE_WRITES = new Set([...MUTATIONS].filter((proc) => !proc.startsWith('tasks.')));

/** What those calls may change, in a form that does not move on its own (no usage, no deployment state). */
async function sideRows(url: string): Promise<string> {
  const read = async (proc: string) => {
    const r = await callApi<Record<string, unknown>[]>(url, proc, undefined);
    if (!r.ok) throw new Error(`${proc} failed: ${r.error.code} ${r.error.message}`);
    return r.data;
  };
  const quotas = (await read('quotas.get')).map(({ name, user, maxGpus, gpuHours, gpuHoursWindowHours, maxPriority, weight }) => ({
    name,
    user,
    maxGpus,
    gpuHours,
    gpuHoursWindowHours,
    maxPriority,
    weight,
  }));
  const webhooks = (await read('webhooks.list')).map((w) => w.id);
  const deployments = (await read('deployments.list')).map((d) => ({
    id: d.id,
    adapters: ((d.spec as { adapters?: { name: string }[] } | undefined)?.adapters ?? []).map((a) => a.name),
  }));
  return JSON.stringify({ quotas, webhooks, deployments });
}

/**
 * fast-check property over every procedure. Throws (with fast-check's seed and the shrunk
 * counterexample) at the first broken promise.
 */
export async function fuzzProcedures(
  t: FuzzTarget,
  opts: { numRuns: number; seed?: number; log?: (m: string) => void },
): Promise<FuzzStats> {
  const stats: FuzzStats = { tried: 0, accepted: 0, rawBodies: 0, byCode: {} };
  const all = await eventsAfter(t.url, '0');
  let head = all.length ? all[all.length - 1]!.position : '0';
  const realRoot = realpathSync(t.datasetsRoot);
  await fc.assert(
    fc.asyncProperty(callArbitrary(t), async (call) => {
      stats.tried++;
      if (call.rawBody !== undefined) stats.rawBodies++;
      const body = call.rawBody ?? (call.input === undefined ? '' : JSON.stringify(call.input));
      const mutation = MUTATIONS.has(call.proc);
      if (call.proc === 'tasks.onUpdate' || call.proc === 'tasks.onLogs') {
        // Subscriptions: an error arrives as a `serialized-error` event of the stream.
        const sub = await openSubscription(t.url, call.proc, body || undefined, 500);
        const code = sub.errorCode ?? (sub.network ? 'NETWORK_ERROR' : 'OK');
        stats.byCode[code] = (stats.byCode[code] ?? 0) + 1;
        const tooLong = encodeURIComponent(body).length > 8000;
        if (sub.errorCode && !OK_CODES.has(sub.errorCode) && !(tooLong && /^HTTP_4/.test(sub.errorCode)))
          throw new Error(
            `subscription ${call.proc} ${body.slice(0, 300)} → ${sub.errorCode}: ${sub.events
              .map((e) => e.data)
              .join(' ')
              .slice(0, 400)}`,
          );
        if (sub.network && !(tooLong && (await healthy(t.url))))
          throw new Error(`subscription ${call.proc} ${body.slice(0, 300)} → ${sub.network}`);
        const written = await eventsAfter(t.url, head);
        if (written.length) throw new Error(`subscription ${call.proc} wrote ${written.map((e) => e.type).join(', ')}`);
        return;
      }
      const side = SIDE_WRITES.has(call.proc) ? await sideRows(t.url) : null;
      const r = await callApi<Record<string, unknown>>(t.url, call.proc, call.input, { rawBody: call.rawBody, timeoutMs: 30_000 });
      const code = r.ok ? 'OK' : r.error.code;
      stats.byCode[code] = (stats.byCode[code] ?? 0) + 1;
      const what = `${call.proc} ${body.length > 300 ? `${body.slice(0, 300)}… (${body.length} chars)` : body}`;
      const written = await eventsAfter(t.url, head);
      if (written.length) head = written[written.length - 1]!.position;
      if (!r.ok) {
        const tooBig = Buffer.byteLength(body) > 1_000_000;
        const urlTooLong = !mutation && encodeURIComponent(body).length > 8000;
        const allowed =
          OK_CODES.has(code) ||
          (code === 'PARSE_ERROR' && call.rawBody !== undefined) ||
          (code === 'PAYLOAD_TOO_LARGE' && tooBig) ||
          // Node's HTTP parser refuses a request line/headers over 16 KiB with 431 and closes the
          // socket, which a client still sending may see as a reset. The server must be fine after.
          (urlTooLong && (code === 'HTTP_431' || code === 'HTTP_414' || (code === 'NETWORK_ERROR' && (await healthy(t.url)))));
        if (!allowed) throw new Error(`${what} → ${code} (HTTP ${r.error.httpStatus}): ${r.error.message.slice(0, 500)}`);
        // A refused input names what is wrong with it, field by field (a throw inside validation
        // also ends as BAD_REQUEST, but with no field and the exception's words).
        if (code === 'BAD_REQUEST' && call.rawBody === undefined && !r.error.fieldErrors)
          throw new Error(`${what} → BAD_REQUEST without field errors: ${r.error.message.slice(0, 300)}`);
        if (written.length)
          throw new Error(`${what} was rejected (${code}) but wrote ${written.map((e) => `${e.type}@${e.position}`).join(', ')}`);
        if (side !== null && (await sideRows(t.url)) !== side) throw new Error(`${what} was rejected (${code}) but changed ${side}`);
        return;
      }
      stats.accepted++;
      if (call.proc === 'webhooks.create' || call.proc === 'deployments.create') {
        // Stored whole: listed at once; then taken away again so the next inputs start alike.
        const id = (call.proc === 'webhooks.create' ? (r.data.webhook as { id: string }).id : r.data.id) as string;
        if (!(await sideRows(t.url)).includes(JSON.stringify(id))) throw new Error(`${what} was accepted as ${id} but is not listed`);
        const undo = call.proc === 'webhooks.create' ? ['webhooks.delete'] : ['deployments.stop', 'deployments.delete'];
        for (const proc of undo) await callApi(t.url, proc, { id });
      } else if (call.proc === 'quotas.set') {
        const set = call.input as { user: string };
        const rows = JSON.parse(await sideRows(t.url)) as { quotas: { name?: string; user?: string }[] };
        if (!rows.quotas.some((q) => (q.name ?? q.user) === set.user))
          throw new Error(`${what} was accepted but ${set.user} has no quota row`);
      }
      const createdTasks =
        call.proc === 'tasks.create'
          ? [r.data as unknown as TaskRecord]
          : call.proc === 'tasks.createMany'
            ? ((r.data as { tasks?: TaskRecord[] }).tasks ?? [])
            : [];
      if (call.proc === 'tasks.createMany' && createdTasks.length !== (call.input as { tasks: unknown[] }).tasks.length)
        throw new Error(`${what} was accepted with ${createdTasks.length} tasks back`);
      for (const task of createdTasks) {
        const ds = task.spec.datasetPath;
        let real: string;
        try {
          real = realpathSync(ds);
        } catch {
          throw new Error(`${what} was accepted with a dataset that does not exist: ${ds}`);
        }
        if (!inside(realRoot, real)) throw new Error(`${what} was accepted with datasetPath ${ds} (really ${real}), outside ${realRoot}`);
        if (!inside(t.outputsRoot, resolve(t.outputsRoot, task.spec.outputDir)))
          throw new Error(`${what} was accepted with outputDir ${task.spec.outputDir}, outside ${t.outputsRoot}`);
        for (const [k, v] of Object.entries({
          name: task.spec.name,
          model: task.spec.model,
          outputDir: task.spec.outputDir,
          // createMany keys each task `<key>\u001f<index>` itself (batchItemKey in service.ts, by design): only the caller's part is checked.
          key: (task.spec.idempotencyKey ?? '').replace(call.proc === 'tasks.createMany' ? /\u001f\d+$/ : /$^/, ''),
        }))
          if (/\p{Cc}/u.test(v)) throw new Error(`${what} was stored with a control character in ${k}: ${JSON.stringify(v)}`);
        // Keep the slot's queue short: cancel what was accepted (it queues behind the blocker).
        if (task.status === 'QUEUED') {
          const c = await callApi(t.url, 'tasks.cancel', { id: task.id });
          if (!c.ok) throw new Error(`cancelling accepted task ${task.id} failed: ${c.error.code} ${c.error.message}`);
        }
      }
      if (createdTasks.length) {
        const more = await eventsAfter(t.url, head);
        if (more.length) head = more[more.length - 1]!.position;
        const strangers = [...written, ...more].filter((e) => !createdTasks.some((c) => c.id === e.streamId));
        if (strangers.length)
          throw new Error(`${what} wrote events of other tasks: ${strangers.map((e) => `${e.type} ${e.streamId}`).join(', ')}`);
      } else if (!mutation && written.length) {
        throw new Error(`query ${what} wrote ${written.map((e) => `${e.type}@${e.position}`).join(', ')}`);
      }
    }),
    {
      numRuns: opts.numRuns,
      ...(opts.seed !== undefined ? { seed: opts.seed } : {}),
      endOnFailure: false,
      interruptAfterTimeLimit: 10 * 60_000,
      markInterruptAsFailure: false,
    },
  );
  opts.log?.(
    `fuzz: ${stats.tried} inputs, ${stats.accepted} accepted, ${stats.rawBodies} raw bodies, codes ${JSON.stringify(stats.byCode)}`,
  );
  return stats;
}

// ---------------------------------------------------------------------------------------------
// Hostile request headers: DNS rebinding and cross-site requests (issue 10, finding 1)

interface HeaderCall {
  method: 'GET' | 'POST';
  path: string;
  headers: Record<string, string>;
  body?: string;
  /** The status the service must answer: the first check that applies refuses it. */
  expect: 421 | 403 | 415;
}

/** `arb` in `weight` cases out of `weight + absent`, undefined in the others. */
const sometimes = <T>(arb: fc.Arbitrary<T>, weight: number, absent: number): fc.Arbitrary<T | undefined> =>
  fc.oneof({ weight: absent, arbitrary: fc.constant(undefined) }, { weight, arbitrary: arb });

/** Printable ASCII only: Node's client refuses control characters in a header before sending. */
const headerText = fc.string({ unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)), maxLength: 60 });

/**
 * Requests a web page could make against the service, each with at least one thing the service
 * must refuse: a Host it does not answer to, a foreign Origin, a cross-site fetch, a body that is
 * not JSON. The body of a POST is a submission the service would accept, so a request that got
 * through would show up as a written event.
 */
function headerCallArbitrary(t: FuzzTarget): fc.Arbitrary<HeaderCall> {
  const port = Number(new URL(t.url).port);
  const own = [`127.0.0.1:${port}`, `localhost:${port}`, `[::1]:${port}`];
  const ownLower = new Set(own);
  const hostileHost = fc
    .oneof(
      fc.constantFrom(
        `attacker.example:${port}`,
        'attacker.example:8080',
        'attacker.example',
        'localhost',
        '127.0.0.1',
        `127.0.0.1:${port + 1}`,
        `localhost.:${port}`,
        `evil@127.0.0.1:${port}`,
        `127.0.0.1:${port}/x`,
        `0.0.0.0:${port}`,
        `[::1]:${port + 1}`,
        `[::2]:${port}`,
        `127.0.0.1:${port}.attacker.example`,
        `localhost:${port}:${port}`,
        `127.0.0.2:${port}`,
        `xn--80ak6aa92e.com:${port}`,
        '',
        ' ',
      ),
      fc.stringMatching(/^[a-z0-9.-]{1,30}(:[0-9]{1,5})?$/),
      headerText,
    )
    .filter((h) => !ownLower.has(h.trim().toLowerCase()));
  const hostileOrigin = fc
    .oneof(
      fc.constantFrom(
        'null',
        'http://attacker.example',
        `http://attacker.example:${port}`,
        `http://localhost:${port + 1}`,
        `http://127.0.0.1`,
        'file://',
        'chrome-extension://abcdef',
        `http://127.0.0.1:${port}.attacker.example`,
        '',
      ),
      headerText.map((s) => `http://${s}`),
      headerText,
    )
    .filter((o) => !own.some((h) => o.trim().toLowerCase() === `http://${h}`));
  const nonJson = fc.oneof(
    fc.constantFrom(
      'multipart/form-data; boundary=x',
      'application/x-www-form-urlencoded',
      'text/plain',
      'text/plain; charset=utf-8',
      'application/octet-stream',
      'text/json',
      'application/jsonx',
      'application/json-patch+json',
      'application/csp-report',
      '',
    ),
    headerText.filter((s) => s.split(';', 1)[0]!.trim().toLowerCase() !== 'application/json'),
  );
  const submission = JSON.stringify({
    model: 'Qwen/Qwen2.5-Coder-0.5B-Instruct',
    datasetPath: t.dataset,
    config: { epochs: 1, simulate: { steps: 1, stepMs: 1 } },
  });
  const route = fc.constantFrom(
    { method: 'POST' as const, path: '/trpc/tasks.create', api: true },
    { method: 'POST' as const, path: '/trpc/tasks.create,tasks.cancel?batch=1', api: true },
    { method: 'GET' as const, path: '/trpc/tasks.list', api: true },
    { method: 'GET' as const, path: '/trpc/tasks.onUpdate', api: true },
    { method: 'GET' as const, path: '/metrics', api: false },
    { method: 'POST' as const, path: '/', api: false },
  );
  return fc
    .record({
      route,
      // Mostly one offence at a time, so that each check is reached, not only the first in line.
      host: sometimes(hostileHost, 1, 3),
      origin: sometimes(fc.oneof(hostileOrigin, fc.constantFrom(...own.map((h) => `http://${h}`))), 1, 2),
      site: sometimes(fc.constantFrom('cross-site', 'Cross-Site', 'same-origin', 'same-site', 'none'), 1, 3),
      type: sometimes(nonJson, 1, 1),
    })
    .map(({ route, host, origin, site, type }) => {
      const headers: Record<string, string> = { host: host ?? own[0]! };
      if (origin !== undefined) headers.origin = origin;
      if (site !== undefined) headers['sec-fetch-site'] = site;
      if (route.method === 'POST') headers['content-type'] = type ?? 'application/json';
      const foreignOrigin = origin !== undefined && !own.some((h) => origin === `http://${h}`);
      const crossSite = site?.toLowerCase() === 'cross-site';
      const checksOrigin = route.api || route.method !== 'GET';
      const expected: HeaderCall['expect'] | null =
        host !== undefined
          ? 421
          : checksOrigin && (foreignOrigin || crossSite)
            ? 403
            : route.api && route.method === 'POST' && type !== undefined
              ? 415
              : null;
      return {
        method: route.method,
        path: route.path,
        headers,
        ...(route.method === 'POST'
          ? { body: route.path === '/' ? 'a=1' : route.path.includes('batch') ? JSON.stringify({ 0: JSON.parse(submission) }) : submission }
          : {}),
        expected,
      };
    })
    .filter((c) => c.expected !== null)
    .map(({ expected, ...call }): HeaderCall => ({ ...call, expect: expected! }));
}

/**
 * The request written on a socket byte for byte: Node's HTTP client would put its own Host in
 * place of an empty one.
 */
function rawRequest(url: string, call: HeaderCall): Promise<{ status: number; contentType: string | undefined; body: string }> {
  const { hostname, port } = new URL(url);
  const body = Buffer.from(call.body ?? '');
  const head = [
    `${call.method} ${call.path} HTTP/1.1`,
    ...Object.entries(call.headers).map(([k, v]) => `${k}: ${v}`),
    'connection: close',
    ...(call.method === 'POST' ? [`content-length: ${body.length}`] : []),
    '',
    '',
  ].join('\r\n');
  return new Promise((resolvePromise, reject) => {
    const socket = connect(Number(port), hostname);
    const chunks: Buffer[] = [];
    // A subscription let through would stream on; a refusal ends at once.
    const timer = setTimeout(() => socket.destroy(), 2000);
    socket.on('data', (c) => chunks.push(c));
    socket.on('error', reject);
    socket.on('close', () => {
      clearTimeout(timer);
      const text = Buffer.concat(chunks).toString('utf8');
      const split = text.indexOf('\r\n\r\n');
      const lines = text.slice(0, split < 0 ? text.length : split).split('\r\n');
      const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? '')?.[1] ?? 0);
      const contentType = lines.find((l) => /^content-type:/i.test(l))?.replace(/^content-type:\s*/i, '');
      resolvePromise({ status, contentType, body: split < 0 ? '' : text.slice(split + 4) });
    });
    socket.end(Buffer.concat([Buffer.from(head), body]));
  });
}

/** Every generated hostile request is refused with the status its first offence calls for, and writes nothing. */
export async function fuzzRequestHeaders(
  t: FuzzTarget,
  opts: { numRuns: number; seed?: number; log?: (m: string) => void },
): Promise<Record<string, number>> {
  const byStatus: Record<string, number> = {};
  const all = await eventsAfter(t.url, '0');
  const head = all.length ? all[all.length - 1]!.position : '0';
  await fc.assert(
    fc.asyncProperty(headerCallArbitrary(t), async (call) => {
      const r = await rawRequest(t.url, call);
      byStatus[r.status] = (byStatus[r.status] ?? 0) + 1;
      const what = `${call.method} ${call.path} ${JSON.stringify(call.headers)}`;
      if (r.status !== call.expect) throw new Error(`${what} → ${r.status}, expected ${call.expect}: ${r.body.slice(0, 300)}`);
      if (!r.contentType?.startsWith('text/plain')) throw new Error(`${what} → ${r.status} with content-type ${r.contentType}`);
      const written = await eventsAfter(t.url, head);
      if (written.length)
        throw new Error(`${what} was refused (${r.status}) but wrote ${written.map((e) => `${e.type}@${e.position}`).join(', ')}`);
    }),
    { numRuns: opts.numRuns, ...(opts.seed !== undefined ? { seed: opts.seed } : {}), endOnFailure: false },
  );
  if (!(await healthy(t.url))) throw new Error('the service is not healthy after the hostile requests');
  opts.log?.(`header fuzz: ${opts.numRuns} requests, statuses ${JSON.stringify(byStatus)}`);
  return byStatus;
}

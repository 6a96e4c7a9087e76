// Bulk history: N finished tasks of 8 events each (submitted, queued, assigned, spawned,
// training, progress, artifact, completed), or N queued tasks of 2 (submitted, queued), written
// by INSERT … SELECT generate_series in a few statements, with the tasks projection that the
// fold of those events gives.
//
// The shapes are not written by hand: one template task is decided and folded by the domain's
// own code (decide/evolve/toRecord), and its events and record are turned into SQL templates by
// replacing the template's ids, times and positions with placeholders. So the generated log is
// exactly what the service would have written, and `npm run rebuild` (compareWithLog) finds no
// difference: the restart benchmark checks that at every size.
import { sql } from 'drizzle-orm';
import {
  CURRENT_SCHEMA_VERSION,
  decide,
  DEFAULT_RESOURCES,
  evolve,
  initialState,
  toRecord,
  type StoredTaskEvent,
  type TaskCommand,
  type TaskSpec,
  type TaskState,
} from '@trainyard/domain';
import { markProjectionCurrent, rowsOf, type Db } from '@trainyard/store';
import { DATASET } from './common';

export const EVENTS_PER_TASK = 8;
/** Events of a generated queued task: submitted, queued. */
const EVENTS_PER_QUEUED_TASK = 2;

const TEMPLATE_ID = 'tTEMPLATEIDzq9';
const TEMPLATE_BASE = Date.parse('2001-02-03T04:05:06.000Z');
/** Template event v (1-based) is recorded at base + v seconds; placeholders replace these. */
const templateTime = (v: number) => new Date(TEMPLATE_BASE + v * 1000).toISOString();
/** Template positions: 9000000000000 + v. */
const templatePosition = (v: number) => String(9_000_000_000_000 + v);
const TIMEOUT_MS = 6 * 3_600_000;

type TemplateKind = 'finished' | 'queued';

interface Template {
  kind: TemplateKind;
  events: { version: number; type: string; data: string }[];
  metadata: string;
  record: string;
  status: string;
  owner: string;
  name: string;
}

function buildTemplate(kind: TemplateKind): Template {
  const spec: TaskSpec = {
    name: `history task ${TEMPLATE_ID}`,
    model: 'Qwen/Qwen2.5-Coder-0.5B-Instruct',
    // A queued task is started by the service under test: its dataset must be there to stage.
    datasetPath: kind === 'queued' ? DATASET : '/bench/history/tiny-dataset.jsonl',
    outputDir: TEMPLATE_ID,
    config: {
      epochs: 1,
      batchSize: 1,
      gradientAccumulation: 16,
      learningRate: 2e-4,
      maxLength: 512,
      load8bit: false,
      load4bit: false,
      loraRank: 8,
      loraAlpha: 16,
      simulate: { steps: 1, stepMs: 0, startupMs: 0 },
    },
    timeoutMs: TIMEOUT_MS,
    resources: { ...DEFAULT_RESOURCES },
    owner: 'bench',
    idempotencyKey: null,
  };
  const queued: TaskCommand[] = [{ type: 'submit', taskId: TEMPLATE_ID, spec }, { type: 'enqueue' }];
  const ran: TaskCommand[] = [
    {
      type: 'assign',
      devices: [{ deviceId: 'gpu0', gpuIndex: 0, uuid: null, migProfile: null, memoryMb: 0, exclusive: true }],
      runnerId: 'bench-history',
      grounds: null,
    },
    { type: 'recordSpawn', pid: 4_000_000, startTime: '1', runDir: `/bench/history/runs/${TEMPLATE_ID}/attempt-1` },
    { type: 'startTraining' },
    { type: 'recordProgress', epoch: 1, totalEpochs: 1, step: 1, totalSteps: 1, loss: 0.5 },
    { type: 'recordArtifact', path: `/bench/history/outputs/${TEMPLATE_ID}` },
    { type: 'recordExit', exitCode: 0, signal: null },
  ];
  const commands = kind === 'queued' ? queued : [...queued, ...ran];
  let state: TaskState = initialState();
  const metadata = { actor: 'bench', correlationId: null, schemaVersion: CURRENT_SCHEMA_VERSION };
  const events: Template['events'] = [];
  for (const command of commands) {
    for (const e of decide(state, command, TEMPLATE_ID)) {
      const version = state.version + 1;
      const stored = {
        ...e,
        streamId: TEMPLATE_ID,
        version,
        position: templatePosition(version),
        recordedAt: templateTime(version),
        metadata,
      } as StoredTaskEvent;
      state = evolve(state, stored);
      events.push({ version, type: e.type, data: JSON.stringify(e.data) });
    }
  }
  const expected = kind === 'queued' ? EVENTS_PER_QUEUED_TASK : EVENTS_PER_TASK;
  if (events.length !== expected) throw new Error(`template has ${events.length} events, expected ${expected}`);
  const record = toRecord(state);
  if (record.status !== (kind === 'queued' ? 'QUEUED' : 'COMPLETED')) throw new Error(`template task ended ${record.status}`);
  const deadline = new Date(TEMPLATE_BASE + 3 * 1000 + TIMEOUT_MS).toISOString();
  const placeholders = (text: string) => {
    let out = text.replaceAll(TEMPLATE_ID, '@@ID@@').replaceAll(deadline, '@@DL@@');
    for (let v = 1; v <= events.length; v++) {
      out = out.replaceAll(templateTime(v), `@@T${v}@@`).replaceAll(templatePosition(v), `@@P${v}@@`);
    }
    if (/2001-02-03|9000000000000/.test(out)) throw new Error(`template value left in ${out}`);
    return out;
  };
  return {
    kind,
    events: events.map((e) => ({ ...e, data: placeholders(e.data) })),
    metadata: JSON.stringify(metadata),
    record: placeholders(JSON.stringify(record)),
    status: record.status,
    owner: spec.owner,
    name: spec.name,
  };
}

const lit = (s: string) => `'${s.replaceAll("'", "''")}'`;
const iso = (ts: string) => `to_char((${ts}) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`;

/** SQL that replaces every placeholder of a template for task row `g`. */
function fill(template: string, events: number): string {
  let expr = `replace(${lit(template)}, '@@ID@@', g.id)`;
  if (template.includes('@@DL@@')) expr = `replace(${expr}, '@@DL@@', ${iso(`g.t0 + interval '2 ms' + interval '${TIMEOUT_MS} ms'`)})`;
  for (let v = 1; v <= events; v++) {
    if (template.includes(`@@T${v}@@`)) expr = `replace(${expr}, '@@T${v}@@', ${iso(`g.t0 + interval '${v - 1} ms'`)})`;
    if (template.includes(`@@P${v}@@`)) expr = `replace(${expr}, '@@P${v}@@', (g.base + ${v})::text)`;
  }
  return expr;
}

export interface HistoryResult {
  tasks: number;
  events: number;
  ms: number;
  /** The id of the i-th task generated (0-based): for queued tasks, the i-th in the queue. */
  firstId(i: number): string;
}

/**
 * Append `tasks` finished tasks (8 events each) after whatever the log holds, with their
 * projection rows. Times are in the past (a ms apart), so they sort before anything the service
 * writes later. Works on Postgres and PGlite (statements go through drizzle one at a time).
 */
export function generateHistory(db: Db, tasks: number, opts: { analyze?: boolean } = {}): Promise<HistoryResult> {
  return generate(db, buildTemplate('finished'), tasks, opts);
}

/**
 * Append `tasks` queued tasks (submitted and queued, 2 events each) after whatever the log holds,
 * with their projection rows: they wait behind every task queued before, in the order generated.
 */
export function generateQueued(db: Db, tasks: number, opts: { analyze?: boolean } = {}): Promise<HistoryResult> {
  return generate(db, buildTemplate('queued'), tasks, opts);
}

async function generate(db: Db, t: Template, tasks: number, opts: { analyze?: boolean }): Promise<HistoryResult> {
  const started = performance.now();
  const prefix = t.kind === 'queued' ? 'q' : 'h';
  const none = () => {
    throw new Error('no task was generated');
  };
  if (tasks <= 0) return { tasks: 0, events: 0, ms: 0, firstId: none };
  const per = t.events.length;
  const run = (text: string) => db.execute(sql.raw(text));
  const [head] = rowsOf<{ p: string | number | null; n: string | number }>(
    await run('SELECT max(position)::text AS p, (SELECT count(*) FROM tasks) AS n FROM events'),
  );
  const offset = Number(head?.p ?? 0);
  const firstTask = Number(head?.n ?? 0) + 1;
  // Task g: events at positions base+1..base+per, recorded t0 .. t0+per-1 ms; tasks per ms
  // apart, ending an hour before now (one anchor for both statements, so events and rows agree).
  const anchor = lit(new Date(Date.now() - 3_600_000).toISOString());
  const gen = `
    SELECT i,
           '${prefix}' || lpad(i::text, 10, '0') || 'bench' AS id,
           ${offset} + (i - ${firstTask}) * ${per} AS base,
           ${anchor}::timestamptz - ((${firstTask + tasks} - i) * interval '${per} ms') AS t0
    FROM generate_series(${firstTask}, ${firstTask + tasks - 1}) AS i`;
  const values = t.events.map((e) => `(${e.version}, ${lit(e.type)}, ${fill(e.data, per)})`).join(',\n      ');
  await run(`
    INSERT INTO events (position, stream_id, stream_version, type, data, metadata, schema_version, recorded_at)
    SELECT g.base + e.v, g.id, e.v, e.type, e.data::jsonb, ${lit(t.metadata)}::jsonb, 1, g.t0 + (e.v - 1) * interval '1 ms'
    FROM (${gen}) AS g
    CROSS JOIN LATERAL (VALUES
      ${values}
    ) AS e(v, type, data)`);
  // A queued task's place in the queue is its TaskQueued's position (event 2).
  const queuedPosition = t.kind === 'queued' ? 'g.base + 2' : 'NULL';
  await run(`
    INSERT INTO tasks (id, status, version, owner, name, idempotency_key, created_at, queued_position, deleted, last_position, record)
    SELECT g.id, ${lit(t.status)}, ${per}, ${lit(t.owner)}, ${fill(t.name, per)}, NULL, g.t0, ${queuedPosition}, false,
           g.base + ${per}, ${fill(t.record, per)}::jsonb
    FROM (${gen}) AS g`);
  await run(`SELECT setval(pg_get_serial_sequence('events', 'position'), (SELECT max(position) FROM events))`);
  // The rows are this code's fold of the events (toRecord above): say so, or the service's
  // start-up would take them for an older fold's and refold the whole log before answering.
  await markProjectionCurrent(db);
  if (opts.analyze !== false) {
    await run('ANALYZE events');
    await run('ANALYZE tasks');
  }
  return {
    tasks,
    events: tasks * per,
    ms: Math.round(performance.now() - started),
    firstId: (i) => `${prefix}${String(firstTask + i).padStart(10, '0')}bench`,
  };
}

// Plain-text rendering: padded tables, times, durations, progress, a task's details.
import { accounting, isTerminal, taskSpeed, type ProgressPoint, type RouterOutputs, type TaskView } from '@trainyard/client';
import { devicesText as describeDevices, requestText as describeRequest } from '@trainyard/catalogue';

export { isTerminal };

export type Column<T> = {
  header: string;
  get: (row: T) => string;
  align?: 'left' | 'right';
  max?: number;
  /** Left out when the table is wider than the terminal: the highest first. */
  drop?: number;
  /** Cut (with …) down to this many characters when the table is still too wide. */
  min?: number;
};

function truncate(s: string, max: number | undefined): string {
  if (max === undefined || s.length <= max) return s;
  return `${s.slice(0, Math.max(1, max - 1))}…`;
}

/**
 * Columns padded to the widest cell, two spaces apart; no trailing spaces. Given a `width` (the
 * terminal's), a wider table leaves out the columns marked `drop` (highest first), then cuts
 * those with a `min` until it fits.
 */
export function table<T>(rows: readonly T[], columns: readonly Column<T>[], width?: number): string {
  let cols = [...columns];
  const cellsOf = (cs: Column<T>[]) => rows.map((r) => cs.map((c) => truncate(oneLine(c.get(r)), c.max)));
  const widthsOf = (cs: Column<T>[], cells: string[][]) =>
    cs.map((c, i) => Math.max(c.header.length, ...cells.map((row) => row[i]!.length)));
  let cells = cellsOf(cols);
  let widths = widthsOf(cols, cells);
  const total = () => widths.reduce((a, b) => a + b, 0) + 2 * (widths.length - 1);
  if (width !== undefined && width > 0) {
    while (total() > width && cols.some((c) => c.drop !== undefined)) {
      const out = cols.reduce((a, c) => ((c.drop ?? -1) > (a.drop ?? -1) ? c : a));
      const keep = cols.map((c) => c !== out);
      cols = cols.filter((_, i) => keep[i]);
      cells = cells.map((row) => row.filter((_, i) => keep[i]));
      widths = widths.filter((_, i) => keep[i]);
    }
    while (total() > width) {
      // Cut the widest column that may still give.
      let at = -1;
      for (let i = 0; i < cols.length; i++)
        if (cols[i]!.min !== undefined && widths[i]! > cols[i]!.min! && (at < 0 || widths[i]! > widths[at]!)) at = i;
      if (at < 0) break;
      widths[at] = Math.max(cols[at]!.min!, widths[at]! - (total() - width), cols[at]!.header.length);
      cells = cells.map((row) => row.map((v, i) => (i === at ? truncate(v, widths[at]) : v)));
    }
  }
  const line = (values: string[]) =>
    values
      .map((v, i) => (cols[i]!.align === 'right' ? v.padStart(widths[i]!) : i === values.length - 1 ? v : v.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(cols.map((c) => c.header)), ...cells.map(line)].join('\n');
}

function oneLine(s: string): string {
  return s.replace(/\s*\n\s*/g, ' ⏎ ');
}

const pad2 = (n: number) => String(n).padStart(2, '0');

/** An ISO time as local "YYYY-MM-DD HH:MM:SS"; "-" for none. */
export function time(iso: string | null | undefined): string {
  if (!iso) return '-';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  return `${d.getFullYear()}-${pad2(d.getMonth() + 1)}-${pad2(d.getDate())} ${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}`;
}

/** 95_000 → "1m35s"; 3_600_000 → "1h"; 1_500 → "1.5s". */
export function duration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)}ms`;
  if (ms < 60_000) return `${Math.round(ms / 100) / 10}s`;
  const parts: string[] = [];
  let rest = Math.round(ms / 1000);
  for (const [unit, size] of [
    ['d', 86_400],
    ['h', 3600],
    ['m', 60],
    ['s', 1],
  ] as const) {
    const n = Math.floor(rest / size);
    rest -= n * size;
    if (n) parts.push(`${n}${unit}`);
  }
  return parts.join('');
}

function between(fromIso: string | null, toIso: string | null): string | null {
  if (!fromIso || !toIso) return null;
  const ms = Date.parse(toIso) - Date.parse(fromIso);
  return Number.isFinite(ms) && ms >= 0 ? duration(ms) : null;
}

export type Progress = TaskView['progress'];

/** "45% epoch 1/3 step 12/30 loss 1.234", omitting what is unknown. */
export function progressText(p: Progress, opts: { percent?: boolean } = {}): string {
  const parts: string[] = [];
  if (opts.percent !== false) parts.push(`${p.percent}%`);
  if (p.epoch != null) parts.push(`epoch ${p.epoch}${p.totalEpochs != null ? `/${p.totalEpochs}` : ''}`);
  if (p.step != null) parts.push(`step ${p.step}${p.totalSteps != null ? `/${p.totalSteps}` : ''}`);
  if (p.loss != null) parts.push(`loss ${p.loss}`);
  return parts.join(' ');
}

type Grant = TaskView['devices'][number];

/** The devices a task holds (catalogue's wording); "-" for none. */
export function devicesText(devices: readonly Pick<Grant, 'deviceId' | 'migProfile'>[]): string {
  return describeDevices(devices) || '-';
}

/** What a task asks for, in the catalogue's wording: `1 GPU, shared 12 GB (estimated)`. */
export function requestText(r: TaskView['spec']['resources']): string {
  return describeRequest(r);
}

/** What the policy saw when it placed a task (TaskAssigned's `grounds`; null before they were recorded). */
export type PlacementGrounds = Extract<RouterOutputs['events']['list']['events'][number], { type: 'TaskAssigned' }>['data']['grounds'];

/**
 * Why the policy started a task when it did: with nothing waiting ahead of it, ahead of tasks
 * that could not start, or backfilled ahead of a blocked head without delaying its reservation;
 * and beside which tasks on a shared device. Empty without grounds.
 */
export function groundsText(g: PlacementGrounds): string {
  if (!g) return '';
  const tasks = (n: number) => `${n} task${n === 1 ? '' : 's'}`;
  const r = g.reservation;
  let why: string;
  if (g.backfilled)
    why = `backfilled ahead of ${tasks(g.ahead)}${r ? ` without delaying task ${r.taskId} (reserved ${r.deviceIds.join(', ')} from ${time(new Date(r.startAt).toISOString())})` : ''}`;
  else if (g.ahead > 0) why = `started ahead of ${tasks(g.ahead)} that could not start`;
  else why = 'nothing waiting ahead of it';
  const beside = g.devices.filter((d) => d.holders > 0).map((d) => `${tasks(d.holders)} on ${d.deviceId}`);
  return `${why}${beside.length ? `, beside ${beside.join(', ')}` : ''} (${g.policy})`;
}

/** Where a task is: "queue #2", its devices ("gpu0+gpu1") while it holds them, or "-". */
export function whereText(t: TaskView, queuePositions: ReadonlyMap<string, number>): string {
  if (t.status === 'QUEUED') {
    const pos = queuePositions.get(t.id);
    return pos ? `queue #${pos}` : 'queued';
  }
  return devicesText(t.devices);
}

export type QueueView = RouterOutputs['queue']['get'];

export function queuePositions(q: QueueView): Map<string, number> {
  return new Map(q.queued.map((e) => [e.task.id, e.position]));
}

/** A queued task's place in the queue, why it waits and when it starts at the latest. */
export type QueueEntry = Pick<QueueView['queued'][number], 'position' | 'reason'> &
  Partial<Pick<QueueView['queued'][number], 'expectedStart'>>;

/** Each queued task's latest start, by id (the tasks the queue page holds). */
export function expectedStarts(q: QueueView): Map<string, string | null> {
  return new Map(q.queued.map((e) => [e.task.id, e.expectedStart]));
}

/** "12 steps/s", "2.4 steps/s", or "6.2 s/step" when slower than a step a second. */
export function speedText(stepsPerSecond: number): string {
  if (stepsPerSecond >= 1) return `${stepsPerSecond >= 10 ? Math.round(stepsPerSecond) : stepsPerSecond.toFixed(1)} steps/s`;
  return `${(1 / stepsPerSecond).toFixed(1)} s/step`;
}

/** "0.42", "12.5", "<0.01" (GPU-hours). */
export function gpuHoursText(h: number): string {
  if (h > 0 && h < 0.01) return '<0.01';
  return h >= 10 ? h.toFixed(1) : h.toFixed(2);
}

const EXPECTED_START_NOTE = 'an upper bound: the tasks running and ahead run to their timeouts';

/** How long a task has held its devices: "4m10s", "-" before it was assigned. */
export function ranText(t: TaskView, now = Date.now()): string {
  const a = accounting(t, now);
  return a.elapsedMs === null ? '-' : duration(a.elapsedMs);
}

/** Its GPU-hours (devices × run time): "0.07", "-" before it was assigned. */
export function gpuHoursOf(t: TaskView, now = Date.now()): string {
  const a = accounting(t, now);
  return a.gpuHours === null ? '-' : gpuHoursText(a.gpuHours);
}

/** What comes next: a training task's time left ("6m10s left"), a queued one's latest start ("by 14:05:00"). */
export function etaText(
  t: TaskView,
  expectedStart: string | null | undefined,
  now = Date.now(),
  points?: readonly ProgressPoint[],
): string {
  if (t.status === 'QUEUED') return expectedStart ? `by ${time(expectedStart).slice(11)}` : '-';
  const speed = taskSpeed(t, now, points);
  return speed?.secondsLeft != null ? `${duration(speed.secondsLeft * 1000)} left` : '-';
}

/** 1536 → "1.5 KB", 12_345_678 → "11.8 MB". */
export function sizeText(bytes: number): string {
  const units = ['bytes', 'KB', 'MB', 'GB', 'TB'];
  let v = bytes;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${bytes} bytes` : `${v.toFixed(1)} ${units[i]}`;
}

const BLOCKS = '▁▂▃▄▅▆▇█';

/**
 * The values as a line of block characters, at most `width` wide: each block is the mean of its
 * share of the values, its height their place between the smallest and the largest.
 */
export function sparkline(values: readonly number[], width: number): string {
  if (!values.length || width < 1) return '';
  const n = Math.min(width, values.length);
  const means: number[] = [];
  for (let i = 0; i < n; i++) {
    const from = Math.floor((i * values.length) / n);
    const to = Math.max(from + 1, Math.floor(((i + 1) * values.length) / n));
    let sum = 0;
    for (let j = from; j < to; j++) sum += values[j]!;
    means.push(sum / (to - from));
  }
  const lo = Math.min(...means);
  const hi = Math.max(...means);
  return means.map((v) => BLOCKS[hi > lo ? Math.round(((v - lo) / (hi - lo)) * (BLOCKS.length - 1)) : 0]).join('');
}

/** "loss 2.61 ▇▆▅▄▃▂▂▁▁ 0.52 (412 reports)"; null without a loss. */
function lossLine(points: readonly ProgressPoint[], width: number): string | null {
  const losses = points.flatMap((p) => (p.loss === null ? [] : [p.loss]));
  if (!losses.length) return null;
  const first = losses[0]!;
  const last = losses[losses.length - 1]!;
  return `${first} ${sparkline(losses, width)} ${last} (${losses.length} report${losses.length === 1 ? '' : 's'})`;
}

/** What `show` adds to a task's record: its progress series and peak memory (tasks.metrics). */
export interface TaskFigures {
  points: readonly ProgressPoint[];
  peakMemoryGb: number | null;
  /** Columns the loss sparkline may take. */
  width: number;
  /** The output folder and artifacts with their sizes (tasks.outputs); null for a task never started. */
  outputs?: RouterOutputs['tasks']['outputs'] | null;
}

/** "12.3 MB", "12.3 MB in 7 files", "at least …", "missing". */
function entrySize(e: RouterOutputs['tasks']['outputs']['folder']): string {
  if (e.kind === 'missing' || e.bytes === null) return 'missing';
  const size = `${e.partial ? 'at least ' : ''}${sizeText(e.bytes)}`;
  return e.kind === 'folder' ? `${size} in ${e.files} file${e.files === 1 ? '' : 's'}` : size;
}

/** `WAITING_FOR_DEVICES: Needs 2 GPUs, 1 free.` */
export function reasonText(r: QueueEntry['reason']): string {
  return `${r.code}: ${r.message}`;
}

function indent(text: string, by = '    '): string {
  return text
    .split('\n')
    .map((l) => by + l)
    .join('\n');
}

/** Every field of a task, labelled; the error message keeps its lines. */
export function taskDetails(t: TaskView, queued: QueueEntry | null, figures?: TaskFigures, now = Date.now()): string {
  const rows: [string, string][] = [];
  const add = (k: string, v: string | number | null | undefined) =>
    rows.push([k, v === null || v === undefined || v === '' ? '-' : String(v)]);
  const c = t.spec.config;
  add('id', t.id);
  add('name', t.spec.name);
  add('status', t.status + (t.stop && !isTerminal(t.status) ? ` (stopping: ${t.stop.reason}, ${t.stop.message})` : ''));
  add('owner', t.spec.owner);
  add('model', t.spec.model);
  add('dataset', t.spec.datasetPath);
  add('output dir', figures?.outputs ? `${figures.outputs.folder.path} (${entrySize(figures.outputs.folder)})` : t.spec.outputDir);
  add('progress', progressText(t.progress));
  if (figures) {
    add('loss', lossLine(figures.points, figures.width));
    const speed = taskSpeed(t, now, figures.points);
    if (speed) {
      add('speed', `${speedText(speed.stepsPerSecond)}${speed.basis === 'average' ? ' (average since training began)' : ''}`);
      add('time left', speed.secondsLeft !== null ? duration(speed.secondsLeft * 1000) : null);
    }
  }
  if (t.status === 'QUEUED') {
    add('queue position', queued?.position);
    add('waits', queued ? reasonText(queued.reason) : null);
    if (queued?.expectedStart !== undefined)
      add('starts by', queued.expectedStart ? `${time(queued.expectedStart)} (${EXPECTED_START_NOTE})` : 'unknown (no time can be told)');
  }
  add('request', requestText(t.spec.resources));
  add('devices', t.devices.length ? devicesText(t.devices) : null);
  add('attempt', t.attempt);
  add('created', time(t.createdAt));
  add('queued', time(t.queuedAt));
  add('started', time(t.startedAt));
  add('training', time(t.trainingAt));
  add('finished', time(t.finishedAt));
  add('ran for', between(t.startedAt, t.finishedAt));
  const cost = accounting(t, now);
  if (cost.elapsedMs !== null && !t.finishedAt) add('running for', duration(cost.elapsedMs));
  add(
    'gpu hours',
    cost.gpuHours === null ? null : `${gpuHoursText(cost.gpuHours)} (${cost.devices} device${cost.devices === 1 ? '' : 's'})`,
  );
  if (figures) add('peak gpu memory', figures.peakMemoryGb === null ? null : `${figures.peakMemoryGb} GB (as the probe saw it)`);
  add('deadline', time(t.deadlineAt));
  add('timeout', duration(t.spec.timeoutMs));
  add('idempotency key', t.spec.idempotencyKey ?? null);
  add('epochs', c.epochs);
  add('batch size', c.batchSize);
  add('grad accumulation', c.gradientAccumulation);
  add('learning rate', c.learningRate);
  add('max length', c.maxLength);
  add('quantization', c.load4bit ? '4-bit' : c.load8bit ? '8-bit' : 'none');
  add('lora rank / alpha', `${c.loraRank} / ${c.loraAlpha}`);
  if (c.simulate) add('simulate', JSON.stringify(c.simulate));
  add('runner', t.runnerId);
  if (t.trainer) add('trainer', `pid ${t.trainer.pid}, run dir ${t.trainer.runDir}`);
  if (t.stop) add('stop requested', `${t.stop.reason} by ${t.stop.by} at ${time(t.stop.at)}: ${t.stop.message}`);
  if (t.cancelReason !== null || t.status === 'CANCELLED') add('cancel reason', t.cancelReason);
  const width = Math.max(...rows.map(([k]) => k.length));
  const out = rows.map(([k, v]) => `${`${k}:`.padEnd(width + 2)}${v}`);
  if (t.error) {
    const e = t.error;
    out.push(`${'error:'.padEnd(width + 2)}${errorHow(e)}`, indent(e.message));
  }
  out.push(`${'artifacts:'.padEnd(width + 2)}${t.artifacts.length ? '' : '-'}`.trimEnd());
  const sizes = new Map(figures?.outputs?.artifacts.map((a) => [a.path, entrySize(a)]) ?? []);
  for (const a of t.artifacts) out.push(`    ${a}${sizes.has(a) ? `  (${sizes.get(a)})` : ''}`);
  return out.join('\n');
}

/** "exit code 1", "signal SIGKILL", "timeout", "lost, signal SIGKILL" ... */
function errorHow(e: NonNullable<TaskView['error']>): string {
  const parts = [e.exitCode !== null ? `exit code ${e.exitCode}` : null, e.signal ? `signal ${e.signal}` : null].filter(Boolean);
  if (e.reason !== 'exit' && e.reason !== 'signal') parts.unshift(e.reason);
  return parts.join(', ');
}

/** One line on how a task ended, e.g. for the end of --follow. */
export function outcomeText(t: TaskView): string {
  const took = between(t.startedAt ?? t.createdAt, t.finishedAt);
  switch (t.status) {
    case 'COMPLETED':
      return `task ${t.id} COMPLETED${took ? ` in ${took}` : ''}${t.artifacts.length ? `; artifacts: ${t.artifacts.join(', ')}` : ''}`;
    case 'FAILED': {
      const e = t.error;
      const how = e ? errorHow(e) : '';
      return `task ${t.id} FAILED${how ? ` (${how})` : ''}${e ? `:\n${indent(e.message, '  ')}` : ''}\nsee its output with \`trainyard logs ${t.id}\``;
    }
    case 'CANCELLED':
      return `task ${t.id} CANCELLED${t.cancelReason ? `: ${t.cancelReason}` : ''}`;
    default:
      return `task ${t.id} is ${t.status}`;
  }
}

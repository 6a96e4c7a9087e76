// `trainyard submit --sweep 'learningRate=1e-4,2e-4 loraRank=8,16'`: a grid of training settings,
// each combination one task, all sent in one tasks.createMany call. Pure: the grid's parse and its
// expansion into tasks.create inputs (the first key varies slowest, as the grid reads).
import { UsageError } from './errors';
import type { CreateInput } from './parse';

type TrainingConfigInput = NonNullable<CreateInput['config']>;

/** The settings a sweep may vary, by their config name; flag spellings map to them. */
const NUMERIC = ['epochs', 'batchSize', 'gradientAccumulation', 'learningRate', 'maxLength', 'loraRank', 'loraAlpha'] as const;
const BOOLEAN = ['load8bit', 'load4bit'] as const;
type SweepKey = (typeof NUMERIC)[number] | (typeof BOOLEAN)[number];
const ALIASES: Record<string, SweepKey> = {
  lr: 'learningRate',
  'learning-rate': 'learningRate',
  'batch-size': 'batchSize',
  'grad-accum': 'gradientAccumulation',
  'max-length': 'maxLength',
  'lora-rank': 'loraRank',
  'lora-alpha': 'loraAlpha',
  '8bit': 'load8bit',
  '4bit': 'load4bit',
};
const KEYS: readonly string[] = [...NUMERIC, ...BOOLEAN];

export interface SweepAxis {
  key: SweepKey;
  values: (number | boolean)[];
}

/** 'learningRate=1e-4,2e-4 loraRank=8,16' → its axes, in the order written. */
export function parseSweep(text: string): SweepAxis[] {
  const parts = text.trim().split(/\s+/).filter(Boolean);
  if (!parts.length) throw new UsageError(`--sweep needs at least one setting, e.g. --sweep 'learningRate=1e-4,2e-4 loraRank=8,16'`);
  const axes: SweepAxis[] = [];
  for (const part of parts) {
    const eq = part.indexOf('=');
    if (eq <= 0) throw new UsageError(`--sweep: "${part}" is not setting=value,value (e.g. loraRank=8,16)`);
    const name = part.slice(0, eq);
    const key = (KEYS.includes(name) ? name : ALIASES[name]) as SweepKey | undefined;
    if (!key) throw new UsageError(`--sweep: no setting called "${name}"; a sweep varies ${KEYS.join(', ')}`);
    if (axes.some((a) => a.key === key)) throw new UsageError(`--sweep: ${key} is given twice`);
    const raw = part.slice(eq + 1).split(',');
    if (raw.some((v) => v === '')) throw new UsageError(`--sweep: ${key} has an empty value ("${part}")`);
    const values = raw.map((v): number | boolean => {
      if ((BOOLEAN as readonly string[]).includes(key)) {
        if (v === 'true' || v === 'false') return v === 'true';
        throw new UsageError(`--sweep: ${key} takes true or false, not "${v}"`);
      }
      const n = Number(v);
      if (!Number.isFinite(n)) throw new UsageError(`--sweep: ${key} takes numbers, not "${v}"`);
      return n;
    });
    axes.push({ key, values });
  }
  return axes;
}

/** Every combination of the axes' values, the first axis varying slowest. */
export function sweepPoints(axes: readonly SweepAxis[]): Record<string, number | boolean>[] {
  let points: Record<string, number | boolean>[] = [{}];
  for (const axis of axes) points = points.flatMap((p) => axis.values.map((v) => ({ ...p, [axis.key]: v })));
  return points;
}

/** A setting's value as the table and task names show it. */
export function sweepValueText(v: number | boolean | undefined): string {
  return v === undefined ? '-' : String(v);
}

/**
 * One tasks.create input per point of the grid: the base input (from submit's other flags) with
 * the point's settings over its config. A --name becomes "<name> key=value …".
 */
export function expandSweep(base: CreateInput, axes: readonly SweepAxis[]): CreateInput[] {
  const { idempotencyKey: _key, ...rest } = base;
  return sweepPoints(axes).map((point) => {
    const config = { ...(base.config ?? {}), ...point } as TrainingConfigInput;
    const input: CreateInput = { ...rest, config };
    if (base.name !== undefined)
      input.name = `${base.name} ${Object.entries(point)
        .map(([k, v]) => `${k}=${sweepValueText(v)}`)
        .join(' ')}`;
    return input;
  });
}

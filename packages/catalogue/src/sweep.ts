// A hyperparameter sweep's grid, as the CLI (`submit --sweep`) and the panel's form take it:
// 'learningRate=1e-4,2e-4 loraRank=8,16' is every combination of the values, the first setting
// varying slowest. One home, so the two read a grid the same way; both send the combinations as
// one tasks.createMany call.

/** The settings a sweep may vary, by their config name; the CLI flags' spellings map to them. */
const NUMERIC = ['epochs', 'batchSize', 'gradientAccumulation', 'learningRate', 'maxLength', 'loraRank', 'loraAlpha'] as const;
const BOOLEAN = ['load8bit', 'load4bit'] as const;
export type SweepKey = (typeof NUMERIC)[number] | (typeof BOOLEAN)[number];
export const SWEEP_KEYS: readonly SweepKey[] = [...NUMERIC, ...BOOLEAN];
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

export interface SweepAxis {
  key: SweepKey;
  values: (number | boolean)[];
}

/** A grid that cannot be read; the message says what is wrong, in words for the person who typed it. */
export class SweepGridError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SweepGridError';
  }
}

/** 'learningRate=1e-4,2e-4 loraRank=8,16' → its axes, in the order written. */
export function parseSweep(text: string): SweepAxis[] {
  const parts = text.trim().split(/\s+/).filter(Boolean);
  if (!parts.length) throw new SweepGridError(`a sweep needs at least one setting, e.g. 'learningRate=1e-4,2e-4 loraRank=8,16'`);
  const axes: SweepAxis[] = [];
  for (const part of parts) {
    const eq = part.indexOf('=');
    if (eq <= 0) throw new SweepGridError(`"${part}" is not setting=value,value (e.g. loraRank=8,16)`);
    const name = part.slice(0, eq);
    const key = ((SWEEP_KEYS as readonly string[]).includes(name) ? name : ALIASES[name]) as SweepKey | undefined;
    if (!key) throw new SweepGridError(`no setting called "${name}"; a sweep varies ${SWEEP_KEYS.join(', ')}`);
    if (axes.some((a) => a.key === key)) throw new SweepGridError(`${key} is given twice`);
    const raw = part.slice(eq + 1).split(',');
    if (raw.some((v) => v === '')) throw new SweepGridError(`${key} has an empty value ("${part}")`);
    const values = raw.map((v): number | boolean => {
      if ((BOOLEAN as readonly string[]).includes(key)) {
        if (v === 'true' || v === 'false') return v === 'true';
        throw new SweepGridError(`${key} takes true or false, not "${v}"`);
      }
      const n = Number(v);
      if (!Number.isFinite(n)) throw new SweepGridError(`${key} takes numbers, not "${v}"`);
      return n;
    });
    axes.push({ key, values });
  }
  return axes;
}

/** Every combination of the axes' values, the first axis varying slowest. */
export function sweepPoints(axes: readonly SweepAxis[]): Partial<Record<SweepKey, number | boolean>>[] {
  let points: Partial<Record<SweepKey, number | boolean>>[] = [{}];
  for (const axis of axes) points = points.flatMap((p) => axis.values.map((v) => ({ ...p, [axis.key]: v })));
  return points;
}

/** A point as a task's name says it: "learningRate=0.0001 loraRank=8". */
export function sweepPointText(point: Partial<Record<SweepKey, number | boolean>>): string {
  return Object.entries(point)
    .map(([k, v]) => `${k}=${String(v)}`)
    .join(' ');
}

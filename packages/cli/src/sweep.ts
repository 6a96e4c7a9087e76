// `trainyard submit --sweep 'learningRate=1e-4,2e-4 loraRank=8,16'`: a grid of training settings,
// each combination one task, all sent in one tasks.createMany call. Pure: the grid's parse and its
// expansion into tasks.create inputs (the first key varies slowest, as the grid reads).
import { parseSweep as parseGrid, SweepGridError, sweepPoints, sweepPointText, type SweepAxis } from '@trainyard/catalogue';
import { UsageError } from './errors';
import type { CreateInput } from './parse';

type TrainingConfigInput = NonNullable<CreateInput['config']>;
export type { SweepAxis };

/** The grid of --sweep (the catalogue's reading, shared with the panel); a bad one is a usage error. */
export function parseSweep(text: string): SweepAxis[] {
  try {
    return parseGrid(text);
  } catch (err) {
    if (err instanceof SweepGridError) throw new UsageError(`--sweep: ${err.message}`);
    throw err;
  }
}

export { sweepPoints };

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
    if (base.name !== undefined) input.name = `${base.name} ${sweepPointText(point)}`;
    return input;
  });
}

// Turning flags into API inputs: durations, numbers, presets. Range checks are the server's
// (one source of truth); here only what cannot be sent at all is refused (not a number, bad JSON).
import { resolve } from 'node:path';
import { InvalidArgumentError } from 'commander';
import { DEFAULT_PRESET, isPresetName, PRESET_NAMES, PRESETS } from '@trainyard/catalogue';
import type { RouterInputs } from '@trainyard/client';
import { UsageError } from './errors';

export type CreateInput = RouterInputs['tasks']['create'];
type TrainingConfigInput = NonNullable<CreateInput['config']>;

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** "6h", "30m", "90s", "1h30m", "500ms", "2d" → milliseconds. A unit is required. */
export function parseDuration(text: string): number {
  const s = text.trim().toLowerCase();
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/gy;
  let total = 0;
  let matched = 0;
  let m: RegExpExecArray | null;
  while ((m = re.exec(s))) {
    total += Number(m[1]) * UNIT_MS[m[2]!]!;
    matched = re.lastIndex;
  }
  if (!s || matched !== s.length) {
    throw new InvalidArgumentError(`"${text}" is not a duration: use a number with a unit, e.g. 90s, 30m, 6h, 1h30m`);
  }
  return Math.round(total);
}

export function intArg(text: string): number {
  if (!/^-?\d+$/.test(text.trim())) throw new InvalidArgumentError(`"${text}" is not a whole number`);
  return Number(text);
}

export function numberArg(text: string): number {
  const n = Number(text);
  if (text.trim() === '' || !Number.isFinite(n)) throw new InvalidArgumentError(`"${text}" is not a number (e.g. 0.0002 or 2e-4)`);
  return n;
}

/** A repeatable / variadic flag whose values may also be comma-separated: `--status QUEUED,TRAINING`. */
export function listArg(text: string, previous: string[] | undefined): string[] {
  return [
    ...(previous ?? []),
    ...text
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean),
  ];
}

export interface SubmitFlags {
  model: string;
  dataset: string;
  name?: string;
  outputDir?: string;
  preset?: string;
  epochs?: number;
  batchSize?: number;
  gradAccum?: number;
  lr?: number;
  maxLength?: number;
  '8bit'?: boolean;
  '4bit'?: boolean;
  loraRank?: number;
  loraAlpha?: number;
  timeout?: number;
  idempotencyKey?: string;
  simulate?: string;
  gpus?: number;
  gpuMemory?: number;
  shared?: boolean;
  priority?: string;
}

/**
 * tasks.create's input from submit's flags: the preset first (without --preset the catalogue's
 * DEFAULT_PRESET, the one the panel's form selects), explicit flags over it; fields left unset
 * take the server's defaults. --4bit over a preset that loads in 8-bit turns the
 * 8-bit off (as the panel's checkbox does); --8bit and --4bit together still reach the server,
 * which refuses them. --gpus, --gpu-memory and --shared go as `resources` (the service checks
 * them against its devices). The dataset path is resolved against the current folder (the service
 * reads it on its machine, normally this one).
 */
export function buildCreateInput(f: SubmitFlags, cwd = process.cwd()): CreateInput {
  const config: Partial<TrainingConfigInput> = {};
  const preset = f.preset ?? DEFAULT_PRESET;
  if (!isPresetName(preset)) throw new UsageError(`--preset must be one of ${PRESET_NAMES.join(', ')} (got "${preset}")`);
  Object.assign(config, PRESETS[preset].config satisfies Partial<TrainingConfigInput>);
  const set = <K extends keyof TrainingConfigInput>(k: K, v: TrainingConfigInput[K] | undefined) => {
    if (v !== undefined) config[k] = v;
  };
  set('epochs', f.epochs);
  set('batchSize', f.batchSize);
  set('gradientAccumulation', f.gradAccum);
  set('learningRate', f.lr);
  set('maxLength', f.maxLength);
  set('load8bit', f['8bit']);
  set('load4bit', f['4bit']);
  if (f['4bit'] === true && f['8bit'] === undefined && config.load8bit) config.load8bit = false;
  set('loraRank', f.loraRank);
  set('loraAlpha', f.loraAlpha);
  if (f.simulate !== undefined) {
    let sim: unknown;
    try {
      sim = JSON.parse(f.simulate);
    } catch (err) {
      throw new UsageError(`--simulate must be a JSON object, e.g. '{"steps":3,"stepMs":30}': ${(err as Error).message}`);
    }
    if (sim === null || typeof sim !== 'object' || Array.isArray(sim))
      throw new UsageError(`--simulate must be a JSON object, e.g. '{"steps":3,"stepMs":30}'`);
    config.simulate = sim as TrainingConfigInput['simulate'];
  }
  const input: CreateInput = { model: f.model, datasetPath: resolve(cwd, f.dataset) };
  if (f.name !== undefined) input.name = f.name;
  if (f.outputDir !== undefined) input.outputDir = f.outputDir;
  if (Object.keys(config).length) input.config = config as TrainingConfigInput;
  if (f.timeout !== undefined) input.timeoutMs = f.timeout;
  if (f.idempotencyKey !== undefined) input.idempotencyKey = f.idempotencyKey;
  const resources: NonNullable<CreateInput['resources']> = {};
  if (f.gpus !== undefined) resources.gpus = f.gpus;
  if (f.gpuMemory !== undefined) resources.gpuMemoryGb = f.gpuMemory;
  if (f.shared !== undefined) resources.shared = f.shared;
  if (Object.keys(resources).length) input.resources = resources;
  if (f.priority !== undefined) input.priority = f.priority;
  return input;
}

/** --url: an http(s) base URL, without a trailing slash. */
export function normalizeUrl(text: string): string {
  let u: URL;
  try {
    u = new URL(text);
  } catch {
    throw new UsageError(`--url / TRAINYARD_URL "${text}" is not a URL: give one like http://127.0.0.1:8080`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:')
    throw new UsageError(`--url / TRAINYARD_URL "${text}" must start with http:// or https://`);
  return text.replace(/\/+$/, '');
}

const USER_RE = /^[A-Za-z0-9._@-]{1,100}$/;

/** --user as the server accepts it (it records anything else as "local"). */
export function checkUser(user: string): string {
  if (!USER_RE.test(user)) throw new UsageError(`--user "${user}" is not a user name: use 1 to 100 letters, digits, . _ @ -`);
  return user;
}

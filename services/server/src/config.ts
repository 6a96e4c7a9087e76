// Service configuration from the environment, validated once at start-up so a typo fails
// loudly with the variable's name instead of misbehaving later.
import { hostname } from 'node:os';
import { delimiter, resolve } from 'node:path';
import { z } from 'zod';
import { storageFromEnv, type OpenOptions } from '@trainyard/store';
import { ENV_PATTERN_RE } from './trainer/env';

const HOUR = 3_600_000;
export const REPO_ROOT = resolve(import.meta.dirname, '../../..');
export const DEFAULT_TRAINER = ['node', 'trainers/simulated-trainer.mjs'];

const intFrom = (name: string, min: number, max: number) =>
  z.coerce.number({ error: `${name} must be a number` }).int(`${name} must be a whole number`).min(min, `${name} must be ≥ ${min}`).max(max, `${name} must be ≤ ${max}`);

export interface ServiceConfig {
  host: string;
  port: number;
  storage: OpenOptions & { dataRoot: string };
  /** Where run directories (spec, output, exit status of each trainer) live. */
  runsDir: string;
  /** argv of the trainer; relative paths resolve against the repository root. */
  trainer: string[];
  trainerCwd: string;
  /** Names (or `PREFIX*`) of the service's variables a trainer gets beyond the allow-list. */
  trainerEnvPassThrough: string[];
  /** Folders a dataset must be inside (after following symbolic links); the uploads folder is one. */
  datasetsRoots: string[];
  /** Where uploaded datasets are stored. */
  uploadsDir: string;
  /** Largest dataset upload accepted, in bytes. */
  uploadMaxBytes: number;
  /** GPU index of each slot; undefined = one slot per detected GPU (at least one). */
  gpuSlots: number[] | undefined;
  queueWarnAt: number;
  /** A slot whose GPU other programs hold beyond this share of memory takes no work. */
  externalGpuShareLimit: number;
  defaultTimeoutMs: number;
  killGraceMs: number;
  runnerId: string;
  /** Poll interval for changes made by other instances on the same database. */
  pollMs: number;
  logMaxLineBytes: number;
  logMaxLinesPerSecond: number;
  nvidiaSmiPath: string | undefined;
  version: string;
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): ServiceConfig {
  const problems: string[] = [];
  const read = <T>(name: string, schema: z.ZodType<T>, fallback: T): T => {
    const raw = env[name];
    if (raw === undefined || raw === '') return fallback;
    const r = schema.safeParse(raw);
    if (!r.success) {
      problems.push(`${name}=${JSON.stringify(raw)}: ${r.error.issues.map((i) => i.message).join('; ')}`);
      return fallback;
    }
    return r.data;
  };
  const json = <T>(name: string, schema: z.ZodType<T>, fallback: T): T => {
    const raw = env[name];
    if (raw === undefined || raw === '') return fallback;
    try {
      return read(name, z.string().transform((s) => JSON.parse(s)).pipe(schema), fallback);
    } catch {
      problems.push(`${name} must be JSON`);
      return fallback;
    }
  };
  const port = read('PORT', intFrom('PORT', 0, 65535), 8080);
  const host = read('HOST', z.string().min(1), '127.0.0.1');
  const trainer = json(
    'TRAINYARD_TRAINER',
    z.array(z.string().min(1), { error: 'TRAINYARD_TRAINER must be a JSON array of strings, e.g. ["python3","trainers/lora_trainer.py"]' }).min(1),
    DEFAULT_TRAINER,
  );
  const gpuSlots = json(
    'TRAINYARD_GPU_SLOTS',
    z.union([
      z.array(z.number().int().min(0)).min(1),
      z.number().int().min(1).max(64).transform((n) => Array.from({ length: n }, (_, i) => i)),
    ]),
    undefined as number[] | undefined,
  );
  const storage = storageFromEnv(env);
  const uploadsDir = resolve(storage.dataRoot, 'datasets', 'uploads');
  const datasetsRoot = env.TRAINYARD_DATASETS_ROOT ?? '';
  const datasetsRoots = datasetsRoot
    ? [...new Set([...datasetsRoot.split(delimiter).filter(Boolean).map((p) => resolve(p)), uploadsDir])]
    : [resolve(storage.dataRoot, 'datasets')];
  const trainerEnvPassThrough = (env.TRAINYARD_TRAINER_ENV ?? '').split(',').map((s) => s.trim()).filter(Boolean);
  const badNames = trainerEnvPassThrough.filter((n) => !ENV_PATTERN_RE.test(n));
  if (badNames.length) problems.push(`TRAINYARD_TRAINER_ENV: ${badNames.map((n) => JSON.stringify(n)).join(', ')} ${badNames.length === 1 ? 'is not a variable name' : 'are not variable names'} (comma-separated names, or prefixes ending in *)`);
  const config: ServiceConfig = {
    host,
    port,
    storage,
    runsDir: resolve(storage.dataRoot, 'runs'),
    trainer,
    trainerCwd: REPO_ROOT,
    trainerEnvPassThrough,
    datasetsRoots,
    uploadsDir,
    uploadMaxBytes: read('TRAINYARD_UPLOAD_MAX_BYTES', intFrom('TRAINYARD_UPLOAD_MAX_BYTES', 1, 64 * 1024 ** 3), 1024 ** 3),
    gpuSlots,
    queueWarnAt: read('TRAINYARD_QUEUE_WARN', intFrom('TRAINYARD_QUEUE_WARN', 0, 1_000_000), 5),
    externalGpuShareLimit: read('TRAINYARD_EXTERNAL_GPU_SHARE', z.coerce.number().min(0).max(1), 0.5),
    defaultTimeoutMs: read('TRAINYARD_TIMEOUT_MS', intFrom('TRAINYARD_TIMEOUT_MS', 1000, 30 * 24 * HOUR), 6 * HOUR),
    killGraceMs: read('TRAINYARD_KILL_GRACE_MS', intFrom('TRAINYARD_KILL_GRACE_MS', 0, HOUR), 30_000),
    // Who may re-attach to a run: the host and the runs folder holding the shepherds' files.
    runnerId: env.TRAINYARD_INSTANCE || `${hostname()}:${resolve(storage.dataRoot, 'runs')}`,
    pollMs: read('TRAINYARD_POLL_MS', intFrom('TRAINYARD_POLL_MS', 10, 60_000), 250),
    logMaxLineBytes: read('TRAINYARD_LOG_LINE_BYTES', intFrom('TRAINYARD_LOG_LINE_BYTES', 80, 1_000_000), 4096),
    logMaxLinesPerSecond: read('TRAINYARD_LOG_LINES_PER_SECOND', intFrom('TRAINYARD_LOG_LINES_PER_SECOND', 1, 1_000_000), 200),
    nvidiaSmiPath: env.TRAINYARD_NVIDIA_SMI || undefined,
    version: '0.1.0',
  };
  if (problems.length) throw new Error(`invalid configuration:\n  ${problems.join('\n  ')}`);
  return config;
}

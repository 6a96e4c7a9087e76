// Service configuration from the environment, validated once at start-up so a typo fails
// loudly with the variable's name instead of misbehaving later.
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { delimiter, resolve } from 'node:path';
import { z } from 'zod';
import { DEFAULT_MEMORY_RESERVE, DEFAULT_PRIORITY_CLASSES, POLICY_NAMES, type Device, type PolicyName } from '@trainyard/domain';
import { DEFAULT_QUEUE_DEPTH, storageFromEnv, type OpenOptions } from '@trainyard/store';
import { AUTH_MODES, isLoopbackHost, type AuthMode } from './auth';
import { parseFixedInventory } from './gpu/inventory';
import { parseAllowedHosts } from './http-guard';
import { CREATE_MANY_LIMIT } from './schemas';
import { DEFAULT_LOG_LINE_BYTES, DEFAULT_LOG_LINES_PER_SECOND } from './trainer/defaults.mjs';
import { ENV_PATTERN_RE, trainerEnv } from './trainer/env';

const HOUR = 3_600_000;
export const REPO_ROOT = resolve(import.meta.dirname, '../../..');
export const DEFAULT_TRAINER = ['node', 'trainers/simulated-trainer.mjs'];
/** The adapter merge for deployments.create({ merge: true }): a Python that has torch. */
export const DEFAULT_MERGE = ['python3', 'trainers/merge_adapter.py'];
/** The release, as package.json names it (one home for the version). */
export const VERSION: string = (JSON.parse(readFileSync(resolve(REPO_ROOT, 'package.json'), 'utf8')) as { version: string }).version;

const intFrom = (name: string, min: number, max: number) =>
  z.coerce
    .number({ error: `${name} must be a number` })
    .int(`${name} must be a whole number`)
    .min(min, `${name} must be ≥ ${min}`)
    .max(max, `${name} must be ≤ ${max}`);

export interface ServiceConfig {
  host: string;
  port: number;
  /** Host names (or host:port) the API answers to besides loopback and the bound address. */
  allowedHosts: string[];
  /** Who may call: local mode's one implicit operator (loopback only), or bearer tokens of users. */
  auth: AuthMode;
  storage: OpenOptions & { dataRoot: string };
  /** Where run directories (spec, output, exit status of each trainer) live. */
  runsDir: string;
  /** argv of the trainer; relative paths resolve against the repository root. */
  trainer: string[];
  trainerCwd: string;
  /** Names (or `PREFIX*`) of the service's variables a trainer gets beyond the allow-list. */
  trainerEnvPassThrough: string[];
  /**
   * The service's variables a trainer (or a vLLM server) inherits: the allow-list and
   * TRAINYARD_TRAINER_ENV's names, read here once like every other variable.
   */
  trainerInheritedEnv: Record<string, string>;
  /** Folders a dataset must be inside (after following symbolic links); the uploads folder is one. */
  datasetsRoots: string[];
  /** Where uploaded datasets are stored. */
  uploadsDir: string;
  /** Largest dataset upload accepted, in bytes. */
  uploadMaxBytes: number;
  /** GPU index of each slot; undefined = one slot per detected GPU (at least one). */
  gpuSlots: number[] | undefined;
  queueWarnAt: number;
  /** Most tasks one tasks.createMany call may submit. */
  createManyMax: number;
  /** A device other programs hold beyond this share of memory takes no work. */
  externalGpuShareLimit: number;
  /** The scheduling policy: strict FIFO, or FIFO with EASY backfill. */
  schedulerPolicy: PolicyName;
  /** Share of each device's memory never given to shared tasks. */
  gpuMemoryReserve: number;
  /** Queued tasks, from the head, each scheduling pass considers. */
  schedulerQueueDepth: number;
  /** How often nvidia-smi is asked again (other programs come and go; devices may change). */
  gpuRefreshMs: number;
  /** Priority classes by name, with their values (higher goes first). */
  priorityClasses: Record<string, number>;
  /** Past use loses half its weight in fair share in this long. */
  fairShareHalfLifeMs: number;
  /** Preempt running tasks for a head that cannot start: off, by priority, or by priority and fair share. */
  preemption: 'off' | 'priority' | 'fair-share';
  /** A preempted trainer's time to checkpoint after SIGUSR1, before SIGTERM. */
  preemptGraceMs: number;
  /** A task preempted this often is no longer chosen as a victim. */
  maxPreemptions: number;
  defaultTimeoutMs: number;
  killGraceMs: number;
  /** A trainer started ahead of need (standby) waits at most this long for a task; 0: none are started. */
  warmTrainerIdleMs: number;
  runnerId: string;
  /** An instance whose lease was not renewed this long is taken over: its tasks go back to the queue. */
  leaseMs: number;
  /** Requeue a lost instance's task that has no checkpoint (else it fails as lost). */
  requeueLost: boolean;
  /** Poll interval for changes made by other instances on the same database. */
  pollMs: number;
  /** Webhook deliveries: attempts in all, the first wait (doubling after each failure, at most maxDelayMs), one attempt's limit. */
  webhooks: { maxAttempts: number; baseDelayMs: number; maxDelayMs: number; timeoutMs: number };
  /** Deployments: serving this long since it last came up gives a deployment its restart budget back; how long /v1 holds a request for one not serving (0: 503 at once). */
  deployments: {
    stableMs: number;
    holdMs: number;
    /** argv of the adapter merge (run in trainerCwd), before `--base … --adapter … --out …`. */
    merge: string[];
  };
  logMaxLineBytes: number;
  logMaxLinesPerSecond: number;
  /** Live subscriptions (tasks.onUpdate, tasks.onLogs) held at once, in all and per client. */
  maxSubscriptions: number;
  maxSubscriptionsPerClient: number;
  /** A subscription is ended after this long; the client reconnects and resumes from its last id. */
  subscriptionMaxMs: number;
  /** Trainer protocol lines (progress, phase, artifact) the shepherd passes per second, and per task. */
  logMaxProtocolLinesPerSecond: number;
  logMaxProtocolLinesPerTask: number;
  /** Output bytes stored per task; past it plain lines are dropped (one marker line counts them). */
  logMaxBytesPerTask: number;
  /** Logs of tasks ended longer ago than this are deleted (their events stay); 0 keeps them. */
  logRetentionDays: number;
  /** Artifacts one task may report, and the longest artifact path (characters). */
  artifactsMaxPerTask: number;
  artifactPathMaxChars: number;
  nvidiaSmiPath: string | undefined;
  /** Devices given by the operator (TRAINYARD_GPU_INVENTORY) instead of found by nvidia-smi; null = probe. */
  gpuInventory: Device[] | null;
  /** The built Studio panel served at `/` (served only when its index.html exists). */
  panelDir: string;
  version: string;
  /** Who runs tasks: this machine's policy and runner, or a Slurm cluster (docs/SLURM.md). */
  executor: ExecutorConfig;
}

/** TRAINYARD_EXECUTOR and, for `slurm`, the TRAINYARD_SLURM_* settings. */
export type ExecutorConfig =
  | { kind: 'local' }
  | {
      kind: 'slurm';
      partition: string | undefined;
      account: string | undefined;
      qos: string | undefined;
      /** Further sbatch options, one argv element each. */
      extraArgs: string[];
      /** How often the states of all active jobs are read (one squeue call); doubled while the controller does not answer. */
      pollMs: number;
      /** The most GPUs one task may ask for (what a request is checked against: the cluster's nodes are not probed). */
      maxGpus: number;
      /** Seconds before its time limit at which a job's trainer gets SIGUSR1 (checkpoint now). */
      checkpointWarningS: number;
    };

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
      return read(
        name,
        z
          .string()
          .transform((s) => JSON.parse(s))
          .pipe(schema),
        fallback,
      );
    } catch {
      problems.push(`${name} must be JSON`);
      return fallback;
    }
  };
  const port = read('PORT', intFrom('PORT', 0, 65535), 8080);
  const host = read('HOST', z.string().min(1), '127.0.0.1');
  const auth = read('TRAINYARD_AUTH', z.enum(AUTH_MODES, { error: 'TRAINYARD_AUTH must be local or tokens' }), 'local');
  // Local mode trusts whoever reaches the port: only this machine may.
  if (auth === 'local' && !isLoopbackHost(host))
    problems.push(
      `HOST=${JSON.stringify(host)} is not a loopback address, and without authentication anyone who reaches the port could do anything: ` +
        'set TRAINYARD_AUTH=tokens to require a bearer token on every call (create the first admin and a token with ' +
        '`trainyard admin user add NAME --admin` and `trainyard admin token create --user NAME`; see docs/SECURITY.md), or set HOST=127.0.0.1',
    );
  const allowedHosts = parseAllowedHosts(env.TRAINYARD_ALLOWED_HOSTS ?? '');
  if (allowedHosts.invalid.length)
    problems.push(
      `TRAINYARD_ALLOWED_HOSTS: ${allowedHosts.invalid.map((h) => JSON.stringify(h)).join(', ')} ${allowedHosts.invalid.length === 1 ? 'is not a host name' : 'are not host names'} (comma-separated host or host:port, e.g. trainyard.lan,gpu-box:8080)`,
    );
  const trainer = json(
    'TRAINYARD_TRAINER',
    z
      .array(z.string().min(1), { error: 'TRAINYARD_TRAINER must be a JSON array of strings, e.g. ["python3","trainers/lora_trainer.py"]' })
      .min(1),
    DEFAULT_TRAINER,
  );
  const merge = json(
    'TRAINYARD_MERGE',
    z
      .array(z.string().min(1), {
        error: 'TRAINYARD_MERGE must be a JSON array of strings, e.g. ["/usr/bin/python3","trainers/merge_adapter.py"]',
      })
      .min(1),
    DEFAULT_MERGE,
  );
  const gpuSlots = json(
    'TRAINYARD_GPU_SLOTS',
    z.union([
      z.array(z.number().int().min(0)).min(1),
      z
        .number()
        .int()
        .min(1)
        .max(64)
        .transform((n) => Array.from({ length: n }, (_, i) => i)),
    ]),
    undefined as number[] | undefined,
  );
  let gpuInventory: Device[] | null = null;
  if (env.TRAINYARD_GPU_INVENTORY) {
    try {
      gpuInventory = parseFixedInventory(env.TRAINYARD_GPU_INVENTORY);
    } catch (e) {
      problems.push(e instanceof Error ? e.message : String(e));
    }
  }
  const executorKind = read(
    'TRAINYARD_EXECUTOR',
    z.enum(['local', 'slurm'], { error: 'TRAINYARD_EXECUTOR must be local or slurm' }),
    'local',
  );
  const executor: ExecutorConfig =
    executorKind === 'local'
      ? { kind: 'local' }
      : {
          kind: 'slurm',
          partition: env.TRAINYARD_SLURM_PARTITION || undefined,
          account: env.TRAINYARD_SLURM_ACCOUNT || undefined,
          qos: env.TRAINYARD_SLURM_QOS || undefined,
          extraArgs: json(
            'TRAINYARD_SLURM_SBATCH_ARGS',
            z.array(z.string().regex(/^-/, 'each sbatch option starts with -, e.g. ["--constraint=a100"]')),
            [] as string[],
          ),
          pollMs: read('TRAINYARD_SLURM_POLL_MS', intFrom('TRAINYARD_SLURM_POLL_MS', 100, 10 * 60_000), 2000),
          maxGpus: read('TRAINYARD_SLURM_MAX_GPUS', intFrom('TRAINYARD_SLURM_MAX_GPUS', 1, 1024), 8),
          checkpointWarningS: read('TRAINYARD_SLURM_SIGNAL_S', intFrom('TRAINYARD_SLURM_SIGNAL_S', 1, 65_535), 120),
        };
  const storage = storageFromEnv(env);
  const uploadsDir = resolve(storage.dataRoot, 'datasets', 'uploads');
  const datasetsRoot = env.TRAINYARD_DATASETS_ROOT ?? '';
  const datasetsRoots = datasetsRoot
    ? [
        ...new Set([
          ...datasetsRoot
            .split(delimiter)
            .filter(Boolean)
            .map((p) => resolve(p)),
          uploadsDir,
        ]),
      ]
    : [resolve(storage.dataRoot, 'datasets')];
  const trainerEnvPassThrough = (env.TRAINYARD_TRAINER_ENV ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  const badNames = trainerEnvPassThrough.filter((n) => !ENV_PATTERN_RE.test(n));
  if (badNames.length)
    problems.push(
      `TRAINYARD_TRAINER_ENV: ${badNames.map((n) => JSON.stringify(n)).join(', ')} ${badNames.length === 1 ? 'is not a variable name' : 'are not variable names'} (comma-separated names, or prefixes ending in *)`,
    );
  const config: ServiceConfig = {
    host,
    port,
    allowedHosts: allowedHosts.hosts,
    auth,
    storage,
    runsDir: resolve(storage.dataRoot, 'runs'),
    trainer,
    trainerCwd: REPO_ROOT,
    trainerEnvPassThrough,
    trainerInheritedEnv: trainerEnv(env, trainerEnvPassThrough),
    datasetsRoots,
    uploadsDir,
    uploadMaxBytes: read('TRAINYARD_UPLOAD_MAX_BYTES', intFrom('TRAINYARD_UPLOAD_MAX_BYTES', 1, 64 * 1024 ** 3), 1024 ** 3),
    gpuSlots,
    queueWarnAt: read('TRAINYARD_QUEUE_WARN', intFrom('TRAINYARD_QUEUE_WARN', 0, 1_000_000), 5),
    createManyMax: read('TRAINYARD_CREATE_MANY_MAX', intFrom('TRAINYARD_CREATE_MANY_MAX', 1, CREATE_MANY_LIMIT), 1000),
    externalGpuShareLimit: read('TRAINYARD_EXTERNAL_GPU_SHARE', z.coerce.number().min(0).max(1), 0.5),
    schedulerPolicy: read('TRAINYARD_SCHEDULER', z.enum(POLICY_NAMES), 'backfill'),
    gpuMemoryReserve: read('TRAINYARD_GPU_MEMORY_RESERVE', z.coerce.number().min(0).max(0.9), DEFAULT_MEMORY_RESERVE),
    schedulerQueueDepth: read('TRAINYARD_SCHEDULER_DEPTH', intFrom('TRAINYARD_SCHEDULER_DEPTH', 1, 100_000), DEFAULT_QUEUE_DEPTH),
    gpuRefreshMs: read('TRAINYARD_GPU_REFRESH_MS', intFrom('TRAINYARD_GPU_REFRESH_MS', 100, HOUR), 5000),
    priorityClasses: read(
      'TRAINYARD_PRIORITY_CLASSES',
      z
        .string()
        .transform((s, ctx) => {
          try {
            return JSON.parse(s) as unknown;
          } catch {
            ctx.addIssue({ code: 'custom', message: 'must be JSON, e.g. {"low":-10,"normal":0,"high":10}' });
            return z.NEVER;
          }
        })
        .pipe(
          z
            .record(z.string().regex(/^[a-z][a-z0-9-]{0,31}$/, 'class names are lower-case words'), z.number().int().min(-1000).max(1000))
            .refine((r) => 'normal' in r, 'a class named normal is required (the default)'),
        ),
      { ...DEFAULT_PRIORITY_CLASSES },
    ),
    preemption: read('TRAINYARD_PREEMPTION', z.enum(['off', 'priority', 'fair-share']), 'priority'),
    preemptGraceMs: read('TRAINYARD_PREEMPT_GRACE_MS', intFrom('TRAINYARD_PREEMPT_GRACE_MS', 0, HOUR), 120_000),
    maxPreemptions: read('TRAINYARD_MAX_PREEMPTIONS', intFrom('TRAINYARD_MAX_PREEMPTIONS', 0, 1000), 3),
    fairShareHalfLifeMs:
      read(
        'TRAINYARD_FAIR_SHARE_HALF_LIFE_HOURS',
        z.coerce
          .number()
          .positive()
          .max(24 * 365),
        24,
      ) * HOUR,
    defaultTimeoutMs: read('TRAINYARD_TIMEOUT_MS', intFrom('TRAINYARD_TIMEOUT_MS', 1000, 30 * 24 * HOUR), 6 * HOUR),
    killGraceMs: read('TRAINYARD_KILL_GRACE_MS', intFrom('TRAINYARD_KILL_GRACE_MS', 0, HOUR), 30_000),
    warmTrainerIdleMs: read('TRAINYARD_WARM_TRAINER_IDLE_MS', intFrom('TRAINYARD_WARM_TRAINER_IDLE_MS', 0, 24 * HOUR), 300_000),
    // Who may re-attach to a run: the host and the runs folder holding the shepherds' files.
    runnerId: env.TRAINYARD_INSTANCE || `${hostname()}:${resolve(storage.dataRoot, 'runs')}`,
    leaseMs: read('TRAINYARD_LEASE_MS', intFrom('TRAINYARD_LEASE_MS', 1000, 24 * HOUR), 120_000),
    requeueLost: read('TRAINYARD_REQUEUE_LOST', z.enum(['true', 'false']), 'true') === 'true',
    pollMs: read('TRAINYARD_POLL_MS', intFrom('TRAINYARD_POLL_MS', 10, 60_000), 250),
    webhooks: {
      maxAttempts: read('TRAINYARD_WEBHOOK_ATTEMPTS', intFrom('TRAINYARD_WEBHOOK_ATTEMPTS', 1, 100), 8),
      baseDelayMs: read('TRAINYARD_WEBHOOK_BACKOFF_MS', intFrom('TRAINYARD_WEBHOOK_BACKOFF_MS', 10, HOUR), 10_000),
      maxDelayMs: HOUR,
      timeoutMs: read('TRAINYARD_WEBHOOK_TIMEOUT_MS', intFrom('TRAINYARD_WEBHOOK_TIMEOUT_MS', 100, 10 * 60_000), 10_000),
    },
    deployments: {
      stableMs: read('TRAINYARD_DEPLOYMENT_STABLE_MS', intFrom('TRAINYARD_DEPLOYMENT_STABLE_MS', 1000, 365 * 24 * HOUR), 24 * HOUR),
      holdMs: read('TRAINYARD_DEPLOYMENT_HOLD_MS', intFrom('TRAINYARD_DEPLOYMENT_HOLD_MS', 0, 10 * 60_000), 0),
      merge,
    },
    logMaxLineBytes: read('TRAINYARD_LOG_LINE_BYTES', intFrom('TRAINYARD_LOG_LINE_BYTES', 80, 1_000_000), DEFAULT_LOG_LINE_BYTES),
    logMaxLinesPerSecond: read(
      'TRAINYARD_LOG_LINES_PER_SECOND',
      intFrom('TRAINYARD_LOG_LINES_PER_SECOND', 1, 1_000_000),
      DEFAULT_LOG_LINES_PER_SECOND,
    ),
    maxSubscriptions: read('TRAINYARD_MAX_SUBSCRIPTIONS', intFrom('TRAINYARD_MAX_SUBSCRIPTIONS', 1, 1_000_000), 1000),
    maxSubscriptionsPerClient: read(
      'TRAINYARD_MAX_SUBSCRIPTIONS_PER_CLIENT',
      intFrom('TRAINYARD_MAX_SUBSCRIPTIONS_PER_CLIENT', 1, 1_000_000),
      200,
    ),
    subscriptionMaxMs: read('TRAINYARD_SUBSCRIPTION_MAX_MS', intFrom('TRAINYARD_SUBSCRIPTION_MAX_MS', 1000, 24 * HOUR), 30 * 60_000),
    logMaxProtocolLinesPerSecond: read(
      'TRAINYARD_LOG_PROTOCOL_LINES_PER_SECOND',
      intFrom('TRAINYARD_LOG_PROTOCOL_LINES_PER_SECOND', 1, 1_000_000),
      100,
    ),
    logMaxProtocolLinesPerTask: read(
      'TRAINYARD_LOG_PROTOCOL_LINES_PER_TASK',
      intFrom('TRAINYARD_LOG_PROTOCOL_LINES_PER_TASK', 1, 2 ** 31 - 1),
      100_000,
    ),
    logMaxBytesPerTask: read(
      'TRAINYARD_LOG_MAX_BYTES_PER_TASK',
      intFrom('TRAINYARD_LOG_MAX_BYTES_PER_TASK', 1024, Number.MAX_SAFE_INTEGER),
      64 * 1024 ** 2,
    ),
    logRetentionDays: read('TRAINYARD_LOG_RETENTION_DAYS', intFrom('TRAINYARD_LOG_RETENTION_DAYS', 0, 100_000), 30),
    artifactsMaxPerTask: read('TRAINYARD_ARTIFACTS_MAX_PER_TASK', intFrom('TRAINYARD_ARTIFACTS_MAX_PER_TASK', 1, 100_000), 100),
    artifactPathMaxChars: read('TRAINYARD_ARTIFACT_PATH_MAX', intFrom('TRAINYARD_ARTIFACT_PATH_MAX', 16, 4096), 1024),
    nvidiaSmiPath: env.TRAINYARD_NVIDIA_SMI || undefined,
    gpuInventory,
    panelDir: resolve(env.TRAINYARD_PANEL_DIR || resolve(REPO_ROOT, 'services/studio/dist')),
    version: VERSION,
    executor,
  };
  if (problems.length) throw new Error(`invalid configuration:\n  ${problems.join('\n  ')}`);
  return config;
}

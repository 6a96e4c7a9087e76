// @ts-check
// Warm trainers: the pure rules shared by the shepherd (plain Node), which starts a trainer in
// standby and hands it its assignment, and the service, which says what the trainer is.
// Types are in warm.d.mts; the protocol is in trainers/README.md ("Standby").
//
// A trainer started in standby (TRAINYARD_STANDBY=1 in its environment) imports what it needs,
// touches no GPU, prints {"type":"ready"} and waits for one line on stdin: its assignment,
// {"type":"assignment","env":{…},"specPath","taskId","outputDir","devices","resumeFrom"}. It sets
// every variable of `env` (CUDA_VISIBLE_DEVICES among them) before anything initialises CUDA,
// removes TRAINYARD_STANDBY, and goes on as a trainer started with that environment would. EOF on
// stdin before an assignment: it exits 0 (it was retired, or its shepherd is gone).

/** The variable that starts a trainer in standby. */
export const STANDBY_ENV = 'TRAINYARD_STANDBY';

/** The standby shepherd's second argument when it also starts a trainer ahead of need. */
export const WARM_FLAG = '--warm';

/**
 * The variables of a trainer's environment that belong to the task it runs, not to the trainer:
 * a warm trainer is started without them and gets them in its assignment.
 */
export const ASSIGNMENT_ENV = Object.freeze([
  'CUDA_VISIBLE_DEVICES',
  'TRAINYARD_TASK_SPEC',
  'TRAINYARD_TASK_ID',
  'TRAINYARD_OUTPUT_DIR',
  'TRAINYARD_RESUME_FROM',
]);

/**
 * `env` without the assignment's variables (and without STANDBY_ENV).
 * @param {Record<string, string>} env
 * @returns {Record<string, string>}
 */
export function trainerLevelEnv(env) {
  /** @type {Record<string, string>} */
  const out = {};
  for (const [k, v] of Object.entries(env)) if (!ASSIGNMENT_ENV.includes(k) && k !== STANDBY_ENV) out[k] = v;
  return out;
}

/**
 * What a warm trainer is started as: the launch's argv, cwd, and environment less the assignment.
 * @param {{ argv: string[], cwd: string, env: Record<string, string> }} launch
 * @returns {import('./warm.d.mts').WarmSpec}
 */
export function warmSpecOf(launch) {
  return { argv: [...launch.argv], cwd: launch.cwd, env: trainerLevelEnv(launch.env) };
}

/**
 * Why a trainer started warm as `warm` cannot run `launch` (null: it can): a different command,
 * folder or environment (anything but the assignment's variables).
 * @param {import('./warm.d.mts').WarmSpec} warm
 * @param {{ argv: string[], cwd: string, env: Record<string, string> }} launch
 * @returns {string | null}
 */
export function warmMismatch(warm, launch) {
  if (warm.argv.length !== launch.argv.length || warm.argv.some((a, i) => a !== launch.argv[i])) return 'another trainer command';
  if ((warm.cwd || '') !== (launch.cwd || '')) return 'another working folder';
  const want = trainerLevelEnv(launch.env);
  const have = trainerLevelEnv(warm.env);
  const keys = new Set([...Object.keys(want), ...Object.keys(have)]);
  for (const k of keys) if (want[k] !== have[k]) return `another environment (${k})`;
  return null;
}

/**
 * The assignment line's message for `launch`: the assignment's variables present in its
 * environment, and the same named for people.
 * @param {{ env: Record<string, string> }} launch
 * @returns {import('./warm.d.mts').AssignmentMessage}
 */
export function assignmentOf(launch) {
  /** @type {Record<string, string>} */
  const env = {};
  for (const k of ASSIGNMENT_ENV) if (launch.env[k] !== undefined) env[k] = launch.env[k];
  return {
    type: 'assignment',
    env,
    specPath: env.TRAINYARD_TASK_SPEC ?? null,
    taskId: env.TRAINYARD_TASK_ID ?? null,
    outputDir: env.TRAINYARD_OUTPUT_DIR ?? null,
    devices: env.CUDA_VISIBLE_DEVICES ? env.CUDA_VISIBLE_DEVICES.split(',') : [],
    resumeFrom: env.TRAINYARD_RESUME_FROM ?? null,
  };
}

/**
 * Whether a stdout line of a trainer in standby is its `{"type":"ready"}`.
 * @param {string} line
 * @returns {boolean}
 */
export function isReadyLine(line) {
  const t = line.trim();
  if (!t.startsWith('{')) return false;
  try {
    const v = JSON.parse(t);
    return typeof v === 'object' && v !== null && !Array.isArray(v) && v.type === 'ready';
  } catch {
    return false;
  }
}

// Types of warm.mjs (plain JavaScript, shared with the trainer shepherd).

/** What a warm trainer was started as. */
export interface WarmSpec {
  argv: string[];
  cwd: string;
  /** Its environment: a launch's, less the assignment's variables. */
  env: Record<string, string>;
}

/** The one line a trainer in standby reads on stdin. */
export interface AssignmentMessage {
  type: 'assignment';
  /** The variables to set before anything initialises CUDA (ASSIGNMENT_ENV's present in the launch). */
  env: Record<string, string>;
  specPath: string | null;
  taskId: string | null;
  outputDir: string | null;
  /** CUDA_VISIBLE_DEVICES as a list. */
  devices: string[];
  resumeFrom: string | null;
}

export const STANDBY_ENV: 'TRAINYARD_STANDBY';
export const WARM_FLAG: '--warm';
export const ASSIGNMENT_ENV: readonly string[];
export function trainerLevelEnv(env: Record<string, string>): Record<string, string>;
export function warmSpecOf(launch: { argv: string[]; cwd: string; env: Record<string, string> }): WarmSpec;
export function warmMismatch(warm: WarmSpec, launch: { argv: string[]; cwd: string; env: Record<string, string> }): string | null;
export function assignmentOf(launch: { env: Record<string, string> }): AssignmentMessage;
export function isReadyLine(line: string): boolean;

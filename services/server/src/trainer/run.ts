// The trainer's run, by role: run-folder.ts (a run folder's files: types, writes, reads),
// launch.ts (starting a shepherd, waiting for its trainer), standby.ts (the shepherd started
// ahead of need), tailer.ts (following output.jsonl), shepherd.mjs (the process that runs the
// trainer) and the .mjs modules it shares with the service (run-files, proc-stat, line-splitter,
// output-limits, defaults). This module gathers their exports for the callers outside trainer/.
export { launchShepherd, waitForTrainerInfo, type LaunchedShepherd, type LaunchSpec } from './launch';
export {
  discardUnstartedLaunch,
  ensurePrivateDir,
  FILES,
  readExit,
  readTrainerInfo,
  writePrivateFile,
  type ExitInfo,
  type LaunchFile,
  type OutputLine,
  type TrainerInfo,
} from './run-folder';
export { SHEPHERD_PATH } from './shepherd-path';
export { StandbyShepherd } from './standby';
export { RunTailer, type RunTailerOptions } from './tailer';

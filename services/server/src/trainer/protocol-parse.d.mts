// Types of protocol-parse.mjs (plain JavaScript, shared with the trainer shepherd).

export interface PhaseMessage {
  type: 'phase';
  phase: 'training';
}

export interface ProgressMessage {
  type: 'progress';
  epoch?: number;
  totalEpochs?: number;
  step?: number;
  totalSteps?: number;
  loss?: number;
  /** The optimizer's learning rate at this step (schedulers change it). */
  learningRate?: number;
}

export interface ArtifactMessage {
  type: 'artifact';
  path: string;
}

/** A checkpoint the trainer has written and can resume from (`TRAINYARD_RESUME_FROM`). */
export interface CheckpointMessage {
  type: 'checkpoint';
  /** Absolute, at most MAX_CHECKPOINT_PATH_CHARS characters. */
  path: string;
  /** The global step it resumes from: a non-negative integer. */
  step: number;
}

export type TrainerMessage = PhaseMessage | ProgressMessage | ArtifactMessage | CheckpointMessage;

export type ParsedLine = { kind: 'message'; message: TrainerMessage } | { kind: 'log' };

/** Longest line even tried as JSON. */
export const MAX_MESSAGE_CHARS: number;

/** Longest checkpoint path a checkpoint message may carry. */
export const MAX_CHECKPOINT_PATH_CHARS: number;

/** Classifies one line of trainer stdout; anything not a well-formed message is a log line. Never throws. */
export function parseTrainerLine(line: string): ParsedLine;

import type { TaskStatus } from './task';

/** A command the lifecycle does not allow in the task's current state. */
export class IllegalCommandError extends Error {
  readonly code = 'ILLEGAL_COMMAND' as const;
  constructor(
    readonly taskId: string,
    readonly status: TaskStatus | null,
    readonly command: string,
    readonly detail: string,
  ) {
    super(
      status === null
        ? `task ${taskId} does not exist (command ${command})`
        : `cannot ${command} task ${taskId}: it is ${status}; ${detail}`,
    );
    this.name = 'IllegalCommandError';
  }
}

/** A command for a task that is not in the log. */
export class TaskNotFoundError extends Error {
  readonly code = 'TASK_NOT_FOUND' as const;
  constructor(readonly taskId: string) {
    super(`task ${taskId} was not found`);
    this.name = 'TaskNotFoundError';
  }
}

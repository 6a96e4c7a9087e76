// Where a task's outputs go, relative to the outputs folder (<data>/outputs). One rule: every
// task writes under a folder named by its own id, and a caller's outputDir names a folder inside
// it. Task ids are unique and hold no '/', so no two tasks can share or nest in each other's
// output folder, whatever outputDir they ask for, without any check against other tasks.

/** The outputDir stored in a task's spec: `<taskId>` or `<taskId>/<requested>`. */
export function taskOutputDir(taskId: string, requested?: string | null): string {
  if (!taskId || taskId.includes('/')) throw new Error(`taskOutputDir: bad task id ${JSON.stringify(taskId)}`);
  return requested ? `${taskId}/${requested}` : taskId;
}

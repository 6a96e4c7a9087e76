// Deadline timers, one per task: `due` is called once the task's deadlineAt has passed.
import type { TaskRecord } from '@trainyard/domain';

export class Deadlines {
  private readonly timers = new Map<string, NodeJS.Timeout>();

  constructor(private readonly due: (task: TaskRecord) => void) {}

  /** Arm the task's deadline unless it has none, is stopping already, or is armed. */
  arm(task: TaskRecord): void {
    if (!task.deadlineAt || task.stop || this.timers.has(task.id)) return;
    const ms = Math.max(0, Date.parse(task.deadlineAt) - Date.now());
    // setTimeout overflows past ~24.8 days: re-arm in steps.
    const timer = setTimeout(
      () => {
        this.timers.delete(task.id);
        if (Date.parse(task.deadlineAt!) > Date.now()) return this.arm(task);
        this.due(task);
      },
      Math.min(ms, 2 ** 31 - 1),
    );
    timer.unref();
    this.timers.set(task.id, timer);
  }

  clear(taskId: string): void {
    const t = this.timers.get(taskId);
    if (t) clearTimeout(t);
    this.timers.delete(taskId);
  }

  close(): void {
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
  }
}

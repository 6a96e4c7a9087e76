// "Clone" and "retry with changes": a task's settings handed to the new-task form, which fills
// itself in with them (NewTaskForm). One at a time; the form takes each once.
import { useSyncExternalStore } from 'react';
import type { Task } from './api';

export interface Prefill {
  /** Counts up with each request, so the same task can be filled in twice. */
  seq: number;
  kind: 'clone' | 'retry';
  task: Task;
  /** Settings to change from the task's (e.g. what fits the GPU after an out-of-memory failure). */
  changes?: Partial<Task['spec']['config']>;
  /** Why, in words, shown above the form. */
  note?: string;
}

let current: Prefill | null = null;
let seq = 0;
const listeners = new Set<() => void>();

export function fillForm(p: Omit<Prefill, 'seq'>): void {
  current = { ...p, seq: ++seq };
  for (const l of listeners) l();
}

export function usePrefill(): Prefill | null {
  return useSyncExternalStore(
    (l) => {
      listeners.add(l);
      return () => listeners.delete(l);
    },
    () => current,
  );
}

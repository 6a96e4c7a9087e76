// The scheduling seam (the seed's "scheduler"): a pure policy that, given the GPU slots and the
// queue, says which queued task starts on which slot. The local FIFO queue is the policy today;
// a cluster scheduler later implements the same interface and nothing else changes.

export interface SlotView {
  slotId: number;
  gpuIndex: number;
  /** The task holding the slot, or null when free. */
  holderTaskId: string | null;
  /** Why a free slot must not take work now (e.g. another program holds the GPU), or null. */
  blockedReason: string | null;
}

export interface QueuedTaskView {
  taskId: string;
  /** FIFO key: the log position of the task's TaskQueued event (null for a task not yet queued). */
  queuedPosition: string | null;
}

export interface Assignment {
  taskId: string;
  slotId: number;
  gpuIndex: number;
}

export interface SchedulingPolicy {
  readonly name: string;
  /** `queue` is in FIFO order, tasks not yet queued (just submitted) last. */
  schedule(input: { slots: readonly SlotView[]; queue: readonly QueuedTaskView[] }): Assignment[];
}

/** One task per GPU slot, first come first served, lowest free slot first. */
export const localFifoPolicy: SchedulingPolicy = {
  name: 'local-fifo',
  schedule({ slots, queue }) {
    const free = slots.filter((s) => s.holderTaskId === null && s.blockedReason === null).sort((a, b) => a.slotId - b.slotId);
    const assignments: Assignment[] = [];
    for (let i = 0; i < free.length && i < queue.length; i++) {
      const slot = free[i]!;
      assignments.push({ taskId: queue[i]!.taskId, slotId: slot.slotId, gpuIndex: slot.gpuIndex });
    }
    return assignments;
  },
};

/** Order queued tasks by their FIFO key; tasks not yet queued come last, in the given order. */
export function fifoOrder<T extends QueuedTaskView>(tasks: readonly T[]): T[] {
  return tasks
    .map((t, i) => ({ t, i }))
    .sort((a, b) => {
      const pa = a.t.queuedPosition,
        pb = b.t.queuedPosition;
      if (pa === null && pb === null) return a.i - b.i;
      if (pa === null) return 1;
      if (pb === null) return -1;
      const d = BigInt(pa) - BigInt(pb);
      return d < 0n ? -1 : d > 0n ? 1 : 0;
    })
    .map(({ t }) => t);
}

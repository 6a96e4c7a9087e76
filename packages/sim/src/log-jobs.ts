// A recorded Trainyard event log as jobs for the what-if replay: each task's submission time, its
// timeout, its resource request, and how long it really held its devices (its last assignment to
// its terminal event). Tasks that never ran (cancelled or failed while queued) and tasks not yet
// finished have no run time to replay: they are left out and counted.
import type { ResourceRequest, StoredTaskEvent } from '@trainyard/domain';
import type { ReplayJob } from './replay';

export interface LogJobs {
  /** In log order (the FIFO order the service used). */
  jobs: ReplayJob[];
  /** Ended without ever being assigned. */
  neverRan: number;
  /** Not ended yet (queued or running when the log was read). */
  unfinished: number;
  /** Distinct GPUs (by index) the log's assignments used: the recorded host's pool, as far as the log shows it. */
  gpusSeen: number;
}

interface Pending {
  submitMs: number;
  timeoutMs: number;
  request: ResourceRequest;
  assignedMs: number | null;
}

const TERMINAL = new Set<StoredTaskEvent['type']>(['TaskCompleted', 'TaskFailed', 'TaskCancelled']);

export function jobsFromLog(events: Iterable<StoredTaskEvent>): LogJobs {
  const pending = new Map<string, Pending>();
  const jobs: ReplayJob[] = [];
  const order = new Map<string, number>();
  const gpus = new Set<number>();
  let neverRan = 0;
  for (const ev of events) {
    const at = Date.parse(ev.recordedAt);
    if (ev.type === 'TaskSubmitted') {
      const r = ev.data.spec.resources;
      order.set(ev.streamId, order.size);
      pending.set(ev.streamId, {
        submitMs: at,
        timeoutMs: ev.data.spec.timeoutMs,
        request: { gpus: r.gpus, memoryMb: r.memoryMb, shared: r.shared },
        assignedMs: null,
      });
      continue;
    }
    const p = pending.get(ev.streamId);
    if (!p) continue;
    if (ev.type === 'TaskAssigned') {
      p.assignedMs = at;
      for (const d of ev.data.devices) gpus.add(d.gpuIndex);
    } else if (TERMINAL.has(ev.type)) {
      pending.delete(ev.streamId);
      if (p.assignedMs === null) neverRan++;
      else
        jobs.push({
          id: ev.streamId,
          submitMs: p.submitMs,
          durationMs: Math.max(0, at - p.assignedMs),
          timeoutMs: p.timeoutMs,
          request: p.request,
        });
    }
  }
  jobs.sort((a, b) => order.get(a.id)! - order.get(b.id)!);
  return { jobs, neverRan, unfinished: pending.size, gpusSeen: gpus.size };
}

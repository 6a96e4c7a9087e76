// What the probe saw lately: each GPU's memory in use and utilisation at each probe over the last
// hour (the GPU card's charts), and the most GPU memory each of our tasks was seen holding (its
// trainer's processes, summed over its devices). In memory: a restarted service starts both
// afresh, and a task's peak is what this service saw of it. Pure bookkeeping: the probe's answer,
// which pid is which task's, and the time come in.
import type { GpuInfo } from './types';

const GPU_HISTORY_WINDOW_MS = 3_600_000;
/** Samples closer together than this are one (the panel's polls probe too). */
const MIN_SPACING_MS = 4_000;
/** Tasks whose peak is kept; the oldest seen go first. */
const MAX_TASKS = 10_000;

interface GpuSample {
  /** Epoch ms. */
  at: number;
  memoryUsedGb: number;
  /** Percent; null where nvidia-smi reports none (MIG mode). */
  utilization: number | null;
}

export interface GpuSeries {
  uuid: string;
  /** nvidia-smi's index. */
  index: number;
  name: string;
  memoryGb: number;
  samples: GpuSample[];
}

export class GpuHistory {
  private readonly series = new Map<string, GpuSeries>();
  private readonly peaks = new Map<string, number>();

  constructor(private readonly windowMs = GPU_HISTORY_WINDOW_MS) {}

  /** One probe's answer at `now`; `taskOfPid` names the task each of our trainer pids runs. */
  record(info: GpuInfo, taskOfPid: ReadonlyMap<number, string>, now: number): void {
    if (!info.available) return;
    const held = new Map<string, number>();
    for (const d of info.devices) {
      let s = this.series.get(d.uuid);
      if (!s) this.series.set(d.uuid, (s = { uuid: d.uuid, index: d.id, name: d.name, memoryGb: d.memoryGb, samples: [] }));
      Object.assign(s, { index: d.id, name: d.name, memoryGb: d.memoryGb });
      // The newest sample always; before it, one every MIN_SPACING_MS: a probe too close to the
      // one kept before the newest replaces the newest.
      const kept = s.samples[s.samples.length - 2];
      const sample = { at: now, memoryUsedGb: d.memoryUsedGb, utilization: d.utilization };
      if (kept && now - kept.at < MIN_SPACING_MS) s.samples[s.samples.length - 1] = sample;
      else s.samples.push(sample);
      const from = s.samples.findIndex((x) => x.at >= now - this.windowMs);
      if (from > 0) s.samples.splice(0, from);
      for (const p of [...d.processes, ...d.instances.flatMap((i) => i.processes)]) {
        const task = taskOfPid.get(p.pid);
        if (task) held.set(task, (held.get(task) ?? 0) + p.memoryUsedGb);
      }
    }
    for (const [task, gb] of held) {
      const before = this.peaks.get(task);
      if (before !== undefined && before >= gb) continue;
      this.peaks.delete(task);
      this.peaks.set(task, gb);
      if (this.peaks.size > MAX_TASKS) this.peaks.delete(this.peaks.keys().next().value!);
    }
  }

  /** Each GPU seen within the window, by index, with its samples of the window. */
  devices(now: number): GpuSeries[] {
    const from = now - this.windowMs;
    return [...this.series.values()]
      .map((s) => ({ ...s, samples: s.samples.filter((x) => x.at >= from) }))
      .filter((s) => s.samples.length > 0)
      .sort((a, b) => a.index - b.index);
  }

  /** The most GPU memory the task's processes were seen holding, in GB; null when never seen. */
  peakOf(taskId: string): number | null {
    const gb = this.peaks.get(taskId);
    return gb === undefined ? null : Math.round(gb * 10) / 10;
  }
}

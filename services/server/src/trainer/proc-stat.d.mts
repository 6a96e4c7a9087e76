// Types of proc-stat.mjs (plain JavaScript, shared with the trainer shepherd).

export interface ProcStat {
  /** Field 3: R, S, D, Z (zombie), T, X (dead), ... */
  state: string;
  /** Field 22, as a string: it may exceed 2^53 on a machine with a long uptime. */
  startTime: string;
}

/** Parses the text of /proc/<pid>/stat; fields are counted from after the last ')'. */
export function parseProcStat(text: string): ProcStat | null;
/** /proc/<pid>/stat of a process, parsed; null if there is no such process (or not Linux). */
export function readProcStat(pid: number): ProcStat | null;
/** Start time of `pid` (field 22 of /proc/<pid>/stat), or null if there is no such process. */
export function readProcessStartTime(pid: number): string | null;

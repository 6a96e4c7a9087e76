// Pure half of the GPU probe: turns nvidia-smi's output into GpuInfo, with the catalogue's
// model recommendation. No IO; the only clock use is the default for `probedAt`, which callers may pass.
//
// Expected input (one line per GPU / per compute process, `--format=csv,noheader,nounits`):
//   --query-gpu=index,uuid,name,memory.total,memory.used,utilization.gpu,mig.mode.current
//     0, GPU-4b1c…, NVIDIA GeForce RTX 3060, 12288, 1024, 7, [N/A]
//   --query-compute-apps=gpu_uuid,pid,process_name,used_memory
//     GPU-4b1c…, 23817, python3, 900
// Memory values are MiB. Any field may be a bracketed placeholder such as `[N/A]` or
// `[Not Supported]` (utilization and per-process memory are `[N/A]` in MIG mode; mig.mode.current
// is `[N/A]` on a GPU without MIG, else `Enabled` or `Disabled`). When a GPU is in MIG mode,
// `nvidia-smi -L` and `nvidia-smi -q -x` describe its instances (parsed in mig.ts).

import { recommend } from '@trainyard/catalogue';
import { NvidiaSmiParseError } from './errors';
import { parseMigList, parseMigQueryXml, type RawListedGpu, type RawQueriedGpu } from './mig';
import type { GpuDevice, GpuInfo, GpuMigInstance, GpuProcess } from './types';

export { NvidiaSmiParseError };

/** One row of the `--query-gpu` output. Unavailable memory values read as 0, utilization as null. */
export interface RawGpu {
  index: number;
  uuid: string;
  name: string;
  memoryTotalMiB: number;
  memoryUsedMiB: number;
  utilization: number | null;
  /** mig.mode.current is `Enabled` (`Disabled` and unavailable read as false). */
  migMode: boolean;
}

/** One row of the `--query-compute-apps` output. Unavailable memory reads as 0. */
export interface RawApp {
  gpuUuid: string;
  pid: number;
  name: string;
  usedMemoryMiB: number;
}

const GPU_FIELDS = 7;
const APP_FIELDS = 4;

/** `[N/A]`, `[Not Supported]`, `[Unknown Error]`, `[Insufficient Permissions]`, … or a bare `N/A`. */
function isUnavailable(value: string): boolean {
  return /^\[[^\]]*\]$/.test(value) || /^n\/a$/i.test(value);
}

/** Non-empty lines, trimmed. */
function lines(text: string): string[] {
  return text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== '');
}

function fail(lineNo: number, line: string, why: string): never {
  const shown = line.length > 80 ? `${line.slice(0, 77)}...` : line;
  throw new NvidiaSmiParseError(`line ${lineNo}: ${why}: "${shown}"`);
}

function integer(value: string, what: string, lineNo: number, line: string): number {
  if (!/^\d+$/.test(value)) fail(lineNo, line, `${what} is not an integer`);
  return Number(value);
}

/** A number, or `fallback` for an unavailable placeholder; anything else is garbage. */
function numberOr<T>(value: string, fallback: T, what: string, lineNo: number, line: string): number | T {
  if (isUnavailable(value)) return fallback;
  if (!/^\d+(\.\d+)?$/.test(value)) fail(lineNo, line, `${what} is not a number`);
  return Number(value);
}

/** `Enabled` / `Disabled`, or unavailable (a GPU without MIG); anything else is garbage. */
function migModeOf(value: string, lineNo: number, line: string): boolean {
  if (value === 'Enabled') return true;
  if (value === 'Disabled' || isUnavailable(value)) return false;
  return fail(lineNo, line, 'mig.mode.current is not Enabled or Disabled');
}

/**
 * Parses `--query-gpu=index,uuid,name,memory.total,memory.used,utilization.gpu,mig.mode.current` output.
 * Empty output gives []. Throws NvidiaSmiParseError when any line is not a well-formed row, so a
 * half-understood output is never mistaken for a working GPU.
 */
export function parseGpuCsv(text: string): RawGpu[] {
  return lines(text).map((line, i) => {
    const lineNo = i + 1;
    const f = line.split(',').map((s) => s.trim());
    if (f.length !== GPU_FIELDS) fail(lineNo, line, `expected ${GPU_FIELDS} fields, got ${f.length}`);
    const [index, uuid, name, total, used, util, mig] = f as [string, string, string, string, string, string, string];
    if (uuid === '' || isUnavailable(uuid)) fail(lineNo, line, 'missing GPU uuid');
    return {
      index: integer(index, 'index', lineNo, line),
      uuid,
      name,
      memoryTotalMiB: numberOr(total, 0, 'memory.total', lineNo, line),
      memoryUsedMiB: numberOr(used, 0, 'memory.used', lineNo, line),
      utilization: numberOr(util, null, 'utilization.gpu', lineNo, line),
      migMode: migModeOf(mig, lineNo, line),
    };
  });
}

/**
 * Parses `--query-compute-apps=gpu_uuid,pid,process_name,used_memory` output. Empty output gives [].
 * A process name is a free-form path and may itself contain commas, so a row with more than four
 * fields keeps the middle ones as the name; fewer than four is garbage and throws.
 */
export function parseAppsCsv(text: string): RawApp[] {
  return (
    lines(text)
      // Older drivers print this instead of nothing when no process uses a GPU.
      .filter((line) => !/^no running (compute )?processes found/i.test(line))
      .map((line, i) => {
        const lineNo = i + 1;
        const f = line.split(',').map((s) => s.trim());
        if (f.length < APP_FIELDS) fail(lineNo, line, `expected ${APP_FIELDS} fields, got ${f.length}`);
        const gpuUuid = f[0]!;
        const pid = f[1]!;
        const used = f[f.length - 1]!;
        const name = f.slice(2, -1).join(', ');
        if (gpuUuid === '') fail(lineNo, line, 'missing gpu_uuid');
        return {
          gpuUuid,
          pid: integer(pid, 'pid', lineNo, line),
          name,
          usedMemoryMiB: numberOr(used, 0, 'used_memory', lineNo, line),
        };
      })
  );
}

/** MiB → GB, one decimal. */
function mibToGb(mib: number): number {
  return round1(mib / 1024);
}

function round1(x: number): number {
  return Math.round(x * 10) / 10;
}

/** Share of the device's memory held by processes that are not ours (0..1; 0 when memory is unknown). */
export function externalShare(device: Pick<GpuDevice, 'externalMemoryGb' | 'memoryGb'>): number {
  return device.memoryGb > 0 ? device.externalMemoryGb / device.memoryGb : 0;
}

/**
 * Memory held by programs that are not ours on one device (a whole GPU or a MIG instance), in MiB:
 * the device's used memory minus the memory of our processes on it. nvidia-smi does not always give
 * a process's memory (MIG instances and some drivers print `[N/A]`): an unknown figure counts as
 * 0, so our share is what is known of it and the rest of the used memory counts as external. That
 * errs towards "busy" (the scheduler may wait needlessly, but never packs a device past what it
 * holds), and it counts programs nvidia-smi cannot list (other containers) and driver overhead.
 * It is never less than what the listed foreign processes are known to use, for drivers that
 * report the device's used memory as unavailable (read as 0).
 */
function externalMiB(usedMiB: number, processes: readonly { ours: boolean; usedMiB: number | null }[]): number {
  const ours = processes.filter((p) => p.ours).reduce((s, p) => s + (p.usedMiB ?? 0), 0);
  const foreign = processes.filter((p) => !p.ours).reduce((s, p) => s + (p.usedMiB ?? 0), 0);
  return Math.max(usedMiB - ours, foreign, 0);
}

/** What `nvidia-smi -L` and `nvidia-smi -q -x` said, parsed; or why they could not be read. */
export type MigAnswers = { list: RawListedGpu[]; query: RawQueriedGpu[] } | { error: string };

/** The MIG instances of one GPU in MIG mode, joined from both answers; problems say what is missing. */
function migInstances(
  gpu: RawGpu,
  answers: { list: RawListedGpu[]; query: RawQueriedGpu[] },
  ourPids: ReadonlySet<number>,
): { instances: GpuMigInstance[]; problems: string[] } {
  const listed = answers.list.find((l) => l.uuid === gpu.uuid);
  const queried = answers.query.find((q) => q.uuid === gpu.uuid);
  if (!listed || !queried) {
    const missing = [!listed && 'nvidia-smi -L', !queried && 'nvidia-smi -q -x'].filter(Boolean).join(' and ');
    return { instances: [], problems: [`GPU ${gpu.index} is in MIG mode but ${missing} does not list it`] };
  }
  const problems: string[] = [];
  const instances: GpuMigInstance[] = [];
  for (const l of [...listed.instances].sort((a, b) => a.index - b.index)) {
    const d = queried.migDevices.find((m) => m.index === l.index);
    if (!d) {
      problems.push(`GPU ${gpu.index} MIG device ${l.index} (${l.profile}) has no memory figures in nvidia-smi -q -x`);
      continue;
    }
    const procs = queried.processes
      .filter((p) => p.gpuInstanceId === d.gpuInstanceId && p.computeInstanceId === d.computeInstanceId)
      .map((p) => ({ ...p, ours: ourPids.has(p.pid) }));
    const external = externalMiB(
      d.memoryUsedMiB,
      procs.map((p) => ({ ours: p.ours, usedMiB: p.usedMemoryMiB })),
    );
    instances.push({
      id: l.index,
      uuid: l.uuid,
      profile: l.profile,
      memoryGb: mibToGb(d.memoryTotalMiB),
      memoryUsedGb: mibToGb(d.memoryUsedMiB),
      externalMemoryGb: mibToGb(external),
      memoryMb: d.memoryTotalMiB,
      externalMemoryMb: external,
      processes: procs.map((p) => ({ pid: p.pid, name: p.name, memoryUsedGb: mibToGb(p.usedMemoryMiB ?? 0), ours: p.ours })),
    });
  }
  for (const d of queried.migDevices) {
    if (!listed.instances.some((l) => l.index === d.index)) {
      problems.push(`GPU ${gpu.index} MIG device ${d.index} has no UUID in nvidia-smi -L`);
    }
  }
  return { instances, problems };
}

/**
 * Joins parsed rows into GpuInfo. Processes are attached to their GPU by uuid; a process whose
 * uuid matches no GPU row (e.g. a MIG instance uuid on some drivers) is left out.
 * A GPU in MIG mode gets its instances from `mig` (when given; without it, or when it failed, it
 * has none and `error` says why). No GPUs → `available: false`.
 */
export function buildGpuInfo(
  gpus: readonly RawGpu[],
  apps: readonly RawApp[],
  ourPids: ReadonlySet<number>,
  probedAt: Date | string = new Date(),
  mig?: MigAnswers,
): GpuInfo {
  const at = typeof probedAt === 'string' ? probedAt : probedAt.toISOString();
  if (gpus.length === 0) return unavailableInfo({ kind: 'no-gpus' }, at);

  const problems: string[] = [];
  const devices: GpuDevice[] = [...gpus]
    .sort((a, b) => a.index - b.index)
    .map((g) => {
      const mine = apps.filter((a) => a.gpuUuid === g.uuid);
      const processes: GpuProcess[] = mine.map((a) => ({
        pid: a.pid,
        name: a.name,
        memoryUsedGb: mibToGb(a.usedMemoryMiB),
        ours: ourPids.has(a.pid),
      }));
      let external = externalMiB(
        g.memoryUsedMiB,
        mine.map((a) => ({ ours: ourPids.has(a.pid), usedMiB: a.usedMemoryMiB })),
      );
      let instances: GpuMigInstance[] = [];
      if (g.migMode && mig && 'list' in mig) {
        const joined = migInstances(g, mig, ourPids);
        instances = joined.instances;
        problems.push(...joined.problems);
        // The GPU's own figure counts per process only where nvidia-smi gives one, which it does
        // not in MIG mode; its instances' figures are the better sum once they are known.
        if (joined.problems.length === 0) external = instances.reduce((s, i) => s + i.externalMemoryMb, 0);
      }
      return {
        id: g.index,
        uuid: g.uuid,
        name: g.name,
        memoryGb: mibToGb(g.memoryTotalMiB),
        memoryUsedGb: mibToGb(g.memoryUsedMiB),
        utilization: g.utilization,
        processes,
        externalMemoryGb: mibToGb(external),
        memoryMb: g.memoryTotalMiB,
        externalMemoryMb: external,
        migMode: g.migMode,
        instances,
      };
    });

  const info: GpuInfo = { available: true, count: devices.length, devices, recommendation: recommend(devices), probedAt: at };
  if (mig && 'error' in mig && devices.some((d) => d.migMode)) info.error = `MIG instances unavailable (${mig.error})`;
  else if (problems.length) info.error = `MIG instances incomplete: ${problems.join('; ')}`;
  return info;
}

// ---------------------------------------------------------------------------------------------
// Failures

/** Why a probe found no usable GPU. Produced by the IO edge, worded here so it can be tested purely. */
export type ProbeFailure =
  | { kind: 'not-found'; command: string; onPath: boolean }
  | { kind: 'not-executable'; command: string; detail: string }
  | { kind: 'exit'; code: number | null; signal: string | null; output: string }
  | { kind: 'timeout'; timeoutMs: number }
  | { kind: 'garbage'; detail: string }
  | { kind: 'no-gpus' }
  | { kind: 'spawn-error'; detail: string };

const WONT_START = 'GPU trainers cannot run without one (the simulated trainer can)';

/** First non-empty line of a tool's output, shortened. */
function firstLine(text: string): string {
  const line = lines(text)[0] ?? '';
  return line.length > 200 ? `${line.slice(0, 197)}...` : line;
}

/** User-facing recommendation (what happened, what to do) and technical error for a failure. */
export function describeFailure(f: ProbeFailure): { recommendation: string; error: string } {
  switch (f.kind) {
    case 'not-found':
      return f.onPath
        ? {
            recommendation: `No NVIDIA GPU detected (nvidia-smi not found on PATH). ${WONT_START}; install the NVIDIA driver or check PATH.`,
            error: `${f.command}: not found on PATH (ENOENT)`,
          }
        : {
            recommendation: `No NVIDIA GPU detected (nvidia-smi not found at ${f.command}). ${WONT_START}; install the NVIDIA driver or fix the configured nvidia-smi path.`,
            error: `${f.command}: no such file (ENOENT)`,
          };
    case 'not-executable':
      return {
        recommendation: `No NVIDIA GPU detected (nvidia-smi at ${f.command} could not be run: ${f.detail}). ${WONT_START}; check the configured nvidia-smi path and its permissions.`,
        error: `${f.command}: ${f.detail}`,
      };
    case 'exit': {
      const how = f.code !== null ? `exited with code ${f.code}` : `was killed by ${f.signal ?? 'a signal'}`;
      const said = firstLine(f.output);
      return {
        recommendation: `NVIDIA GPU not usable: nvidia-smi ${how}${said ? ` ("${said}")` : ''}. ${WONT_START}; check that the NVIDIA driver is installed and loaded (a reboot after a driver update often fixes this).`,
        error: `nvidia-smi ${how}${said ? `: ${said}` : ''}`,
      };
    }
    case 'timeout':
      return {
        recommendation: `NVIDIA GPU not usable: nvidia-smi did not answer within ${f.timeoutMs / 1000}s (the driver may be hung). ${WONT_START}; run nvidia-smi on the host to check the driver, or restart the machine.`,
        error: `nvidia-smi timed out after ${f.timeoutMs}ms`,
      };
    case 'garbage':
      return {
        recommendation: `NVIDIA GPU status unknown: nvidia-smi output could not be parsed. ${WONT_START}; run nvidia-smi on the host to check that it works and the driver is healthy.`,
        error: `nvidia-smi output could not be parsed: ${f.detail}`,
      };
    case 'no-gpus':
      return {
        recommendation: `No NVIDIA GPU detected (nvidia-smi reported no GPUs). ${WONT_START}; check that the GPU is passed through to this machine or container.`,
        error: 'nvidia-smi reported no GPUs',
      };
    case 'spawn-error':
      return {
        recommendation: `NVIDIA GPU status unknown: nvidia-smi could not be run (${f.detail}). ${WONT_START}; run nvidia-smi on the host to check that it works.`,
        error: `nvidia-smi could not be run: ${f.detail}`,
      };
  }
}

/** GpuInfo for a probe that found no usable GPU. */
export function unavailableInfo(f: ProbeFailure, probedAt: Date | string = new Date()): GpuInfo {
  const { recommendation, error } = describeFailure(f);
  const at = typeof probedAt === 'string' ? probedAt : probedAt.toISOString();
  return { available: false, count: 0, devices: [], recommendation, error, probedAt: at };
}

/** Raw stdout of the two MIG queries, or why they could not be run. */
export type MigOutputs = { listText: string; queryText: string } | { error: string };

/**
 * The whole pure pipeline: raw nvidia-smi stdout → GpuInfo. Unparseable GPU output means the GPU
 * state is unknown (`available: false`). The process list only feeds the "external" accounting,
 * and the MIG answers only the instances, so if either is missing (`appsText === null`, or
 * `mig.error`: the query failed) or unparseable, the GPUs are still reported (a MIG GPU with no
 * instances), with `error` saying why.
 */
export function parseNvidiaSmi(
  gpusText: string,
  appsText: string | null,
  ourPids: ReadonlySet<number>,
  probedAt: Date | string = new Date(),
  appsError = 'query failed',
  mig?: MigOutputs,
): GpuInfo {
  let gpus: RawGpu[];
  try {
    gpus = parseGpuCsv(gpusText);
  } catch (e) {
    return unavailableInfo({ kind: 'garbage', detail: errorMessage(e) }, probedAt);
  }
  let apps: RawApp[] = [];
  let appsProblem: string | null = appsText === null ? appsError : null;
  if (appsText !== null) {
    try {
      apps = parseAppsCsv(appsText);
    } catch (e) {
      appsProblem = `output could not be parsed: ${errorMessage(e)}`;
    }
  }
  let migAnswers: MigAnswers | undefined;
  if (mig && 'error' in mig) migAnswers = mig;
  else if (mig) {
    try {
      migAnswers = { list: parseMigList(mig.listText), query: parseMigQueryXml(mig.queryText) };
    } catch (e) {
      migAnswers = { error: `output could not be parsed: ${errorMessage(e)}` };
    }
  }
  const info = buildGpuInfo(gpus, apps, ourPids, probedAt, migAnswers);
  if (info.available && appsProblem !== null) {
    const note = `GPU process list unavailable (${appsProblem})`;
    info.error = info.error ? `${note}; ${info.error}` : note;
  }
  return info;
}

function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

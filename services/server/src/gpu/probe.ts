// IO edge of the GPU probe: runs nvidia-smi (never through a shell) and hands its output to the
// pure parser. It never throws: every failure becomes `available: false` with a recommendation
// that says what happened and what to do.

import { execFile, type ChildProcess, type ExecFileException } from 'node:child_process';
import { describeFailure, parseNvidiaSmi, unavailableInfo, type MigOutputs, type ProbeFailure } from './parse';
import type { GpuInfo } from './types';

export const GPU_QUERY_ARGS = [
  '--query-gpu=index,uuid,name,memory.total,memory.used,utilization.gpu,mig.mode.current',
  '--format=csv,noheader,nounits',
] as const;

export const APPS_QUERY_ARGS = ['--query-compute-apps=gpu_uuid,pid,process_name,used_memory', '--format=csv,noheader,nounits'] as const;

/** Asked only when some GPU is in MIG mode: the MIG devices' profiles and UUIDs… */
export const MIG_LIST_ARGS = ['-L'] as const;
/** …and their memory and processes (no CSV query reports MIG devices). */
export const MIG_QUERY_ARGS = ['-q', '-x'] as const;

export interface GpuProbeOptions {
  /** Explicit nvidia-smi binary; default: `nvidia-smi` looked up on PATH. */
  nvidiaSmiPath?: string;
  /** How long a result is reused (default 2000 ms; 0 = probe on every call). */
  cacheMs?: number;
  /** Per nvidia-smi invocation (default 5000 ms). */
  timeoutMs?: number;
  /** PIDs of the trainer processes this service runs; their GPU processes are marked `ours`. */
  ourPids?: () => Set<number>;
  /** Environment for nvidia-smi, including the PATH it is looked up on; default: process.env at probe time. */
  env?: NodeJS.ProcessEnv;
  /** Clock for the cache (ms); default Date.now. */
  now?: () => number;
}

type RunResult = { ok: true; stdout: string } | { ok: false; failure: ProbeFailure };

export class GpuProbe {
  private readonly command: string;
  private readonly cacheMs: number;
  private readonly timeoutMs: number;
  private readonly ourPids: () => Set<number>;
  private readonly env: NodeJS.ProcessEnv | undefined;
  private readonly now: () => number;

  private cached: { info: GpuInfo; at: number } | null = null;
  private inFlight: Promise<GpuInfo> | null = null;
  /** Bumped by invalidate(), so a probe started before it cannot refill the cache with stale data. */
  private generation = 0;

  constructor(opts: GpuProbeOptions = {}) {
    this.command = opts.nvidiaSmiPath ?? 'nvidia-smi';
    this.cacheMs = opts.cacheMs ?? 2000;
    this.timeoutMs = opts.timeoutMs ?? 5000;
    this.ourPids = opts.ourPids ?? (() => new Set());
    this.env = opts.env;
    this.now = opts.now ?? Date.now;
  }

  /** Current GPU state: cached for `cacheMs`; concurrent callers share one probe. Never rejects. */
  info(): Promise<GpuInfo> {
    if (this.cached && this.now() - this.cached.at < this.cacheMs) {
      return Promise.resolve(structuredClone(this.cached.info));
    }
    if (!this.inFlight) {
      const generation = this.generation;
      const probe = this.probe().then((info) => {
        if (generation === this.generation) this.cached = { info, at: this.now() };
        return info;
      });
      this.inFlight = probe;
      // Clear the slot only if it still holds this probe (invalidate() may have replaced it).
      void probe.finally(() => {
        if (this.inFlight === probe) this.inFlight = null;
      });
    }
    // Each caller gets its own copy, so one caller mutating its result cannot corrupt the cache.
    return this.inFlight.then((info) => structuredClone(info));
  }

  /** Forget the cached result; the next info() probes again (e.g. after a trainer starts or exits). */
  invalidate(): void {
    this.generation++;
    this.cached = null;
    this.inFlight = null;
  }

  private async probe(): Promise<GpuInfo> {
    try {
      const gpus = await this.run(GPU_QUERY_ARGS);
      if (!gpus.ok) return unavailableInfo(gpus.failure);
      // No point asking for processes when the GPU list is garbage or empty: answer from it alone.
      const gpusOnly = parseNvidiaSmi(gpus.stdout, '', new Set());
      if (!gpusOnly.available) return gpusOnly;
      // Only the "external memory" accounting depends on the process list; parseNvidiaSmi keeps the
      // GPUs available if this second query fails.
      const apps = await this.run(APPS_QUERY_ARGS);
      // A host without MIG pays nothing more; a failed MIG query leaves the GPUs, without instances.
      const mig = gpusOnly.devices.some((d) => d.migMode) ? await this.migOutputs() : undefined;
      return parseNvidiaSmi(
        gpus.stdout,
        apps.ok ? apps.stdout : null,
        this.safeOurPids(),
        new Date(),
        apps.ok ? undefined : describeFailure(apps.failure).error,
        mig,
      );
    } catch (e) {
      // Belt and braces: nothing above should throw, but info() must never reject.
      return unavailableInfo({ kind: 'spawn-error', detail: e instanceof Error ? e.message : String(e) });
    }
  }

  private async migOutputs(): Promise<MigOutputs> {
    const list = await this.run(MIG_LIST_ARGS);
    if (!list.ok) return { error: describeFailure(list.failure).error };
    const query = await this.run(MIG_QUERY_ARGS);
    if (!query.ok) return { error: describeFailure(query.failure).error };
    return { listText: list.stdout, queryText: query.stdout };
  }

  private safeOurPids(): Set<number> {
    try {
      return this.ourPids();
    } catch {
      return new Set();
    }
  }

  /** Runs nvidia-smi once; resolves (never rejects) with its stdout or why it failed. */
  private run(args: readonly string[]): Promise<RunResult> {
    return new Promise((resolve) => {
      let child: ChildProcess | undefined;
      let settled = false;
      const settle = (r: RunResult) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve(r);
      };

      // Our own timer instead of execFile's `timeout`: execFile reports only once the child's
      // pipes close, and an nvidia-smi stuck in the driver (uninterruptible sleep) may never
      // close them. We kill it and answer at once without waiting.
      const timer = setTimeout(() => {
        child?.kill('SIGKILL');
        settle({ ok: false, failure: { kind: 'timeout', timeoutMs: this.timeoutMs } });
      }, this.timeoutMs);

      try {
        child = execFile(
          this.command,
          [...args],
          { env: this.env ?? process.env, encoding: 'utf8', maxBuffer: 4 * 1024 * 1024, windowsHide: true },
          (err, stdout, stderr) => {
            if (!err) return settle({ ok: true, stdout });
            settle({ ok: false, failure: this.classify(err, stdout, stderr) });
          },
        );
        // A missing binary surfaces through the callback above; this only guards against an
        // 'error' event arriving with no listener.
        child.on('error', () => {});
      } catch (e) {
        // execFile throws synchronously for invalid arguments (e.g. a path containing NUL).
        settle({ ok: false, failure: { kind: 'spawn-error', detail: e instanceof Error ? e.message : String(e) } });
      }
    });
  }

  private classify(err: ExecFileException, stdout: string, stderr: string): ProbeFailure {
    const code = err.code;
    if (code === 'ENOENT') {
      return { kind: 'not-found', command: this.command, onPath: !this.command.includes('/') };
    }
    if (code === 'EACCES' || code === 'ENOEXEC' || code === 'EISDIR' || code === 'ENOTDIR') {
      return { kind: 'not-executable', command: this.command, detail: err.message };
    }
    if (code === 'ERR_CHILD_PROCESS_STDIO_MAXBUFFER') {
      return { kind: 'garbage', detail: 'output too large' };
    }
    if (typeof code === 'number' || typeof err.signal === 'string') {
      // nvidia-smi writes its "NVIDIA-SMI has failed …" message to stdout; other failures to stderr.
      return {
        kind: 'exit',
        code: typeof code === 'number' ? code : null,
        signal: typeof err.signal === 'string' ? err.signal : null,
        output: stderr.trim() !== '' ? stderr : stdout,
      };
    }
    return { kind: 'spawn-error', detail: err.message };
  }
}

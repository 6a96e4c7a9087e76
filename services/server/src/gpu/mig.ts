// Pure parsing of the two nvidia-smi answers the probe asks for only when a GPU is in MIG mode.
//
//   nvidia-smi -L: each GPU, and under a GPU in MIG mode each MIG device (profile, index, UUID):
//     GPU 3: NVIDIA A100-SXM4-80GB (UUID: GPU-5c9e…)
//       MIG 3g.40gb     Device  0: (UUID: MIG-1f0b…)
//       MIG 1g.10gb     Device  1: (UUID: MIG-8d2e…)
//   nvidia-smi -q -x: per GPU (matched by <uuid>), each MIG device's memory and the processes with
//     the GPU / compute instance they run in:
//     <gpu><uuid>GPU-5c9e…</uuid><mig_devices><mig_device><index>0</index>
//       <gpu_instance_id>2</gpu_instance_id><compute_instance_id>0</compute_instance_id>
//       <fb_memory_usage><total>40192 MiB</total><used>37 MiB</used>…</fb_memory_usage>…
//     <processes><process_info><gpu_instance_id>2</gpu_instance_id>…<pid>…</pid>
//       <process_name>…</process_name><used_memory>N/A</used_memory></process_info>…
// `-L` is the only place that names a MIG device's profile and UUID, `-q -x` the only one that
// gives its memory; the MIG device index (`Device N`, `<index>N</index>`) joins them.

import { XMLParser, XMLValidator } from 'fast-xml-parser';
import { z } from 'zod';
import { NvidiaSmiParseError } from './errors';

/** One GPU in `nvidia-smi -L`, with its MIG devices (none for a GPU not in MIG mode). */
export interface RawListedGpu {
  index: number;
  name: string;
  uuid: string;
  instances: { index: number; profile: string; uuid: string }[];
}

/** One `<gpu>` of `nvidia-smi -q -x`: its MIG devices and its processes. */
export interface RawQueriedGpu {
  uuid: string;
  migDevices: RawMigDevice[];
  processes: RawMigProcess[];
}

interface RawMigDevice {
  index: number;
  gpuInstanceId: number;
  computeInstanceId: number;
  memoryTotalMiB: number;
  /** Unavailable reads as 0. */
  memoryUsedMiB: number;
}

interface RawMigProcess {
  pid: number;
  name: string;
  /** null outside MIG mode (`N/A`). */
  gpuInstanceId: number | null;
  computeInstanceId: number | null;
  /** null when nvidia-smi does not give it (`N/A`, as it does for MIG processes without privileges). */
  usedMemoryMiB: number | null;
}

// Tolerates the wider spacing some drivers print and the R450 UUID form `MIG-GPU-…/gi/ci`.
const GPU_LINE = /^GPU (\d+): (.*) \(UUID: (GPU-[^\s)]+)\)$/;
const MIG_LINE = /^MIG (\S+)\s+Device\s+(\d+): \(UUID: (MIG-[^\s)]+)\)$/;

/**
 * Parses `nvidia-smi -L`. Throws NvidiaSmiParseError on any line that is neither a GPU nor a MIG
 * device line, or a MIG device line before any GPU, so a changed format is never half-read.
 */
export function parseMigList(text: string): RawListedGpu[] {
  const gpus: RawListedGpu[] = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (line === '') return;
    const gpu = GPU_LINE.exec(line);
    if (gpu) {
      gpus.push({ index: Number(gpu[1]), name: gpu[2]!, uuid: gpu[3]!, instances: [] });
      return;
    }
    const mig = MIG_LINE.exec(line);
    const owner = gpus[gpus.length - 1];
    if (mig && owner) {
      owner.instances.push({ index: Number(mig[2]), profile: mig[1]!, uuid: mig[3]! });
      return;
    }
    const shown = line.length > 80 ? `${line.slice(0, 77)}...` : line;
    throw new NvidiaSmiParseError(
      `nvidia-smi -L line ${i + 1}: ${mig ? 'a MIG device before any GPU' : 'not a GPU or MIG device line'}: "${shown}"`,
    );
  });
  return gpus;
}

// ---------------------------------------------------------------------------------------------
// nvidia-smi -q -x

const NA = /^(n\/a|\[[^\]]*\]|not available.*)$/i;

/** A string schema converted by `f`, which returns undefined for a value it does not take. */
const convert = <T>(expected: string, f: (s: string) => T | undefined) =>
  z.string().transform((s, ctx) => {
    const v = f(s);
    if (v === undefined) {
      ctx.addIssue({ code: 'custom', message: `expected ${expected}, got ${JSON.stringify(s.length > 40 ? `${s.slice(0, 37)}...` : s)}` });
      return z.NEVER;
    }
    return v;
  });
const wholeNumber = (s: string) => (/^\d+$/.test(s) ? Number(s) : undefined);
const mebibytes = (s: string) => (/^\d+ MiB$/.test(s) ? Number(s.slice(0, -4)) : undefined);
const int = convert('a whole number', wholeNumber);
const intOrNa = convert('a whole number or N/A', (s) => (NA.test(s) ? null : wholeNumber(s)));
const mib = convert('"<n> MiB"', mebibytes);
const mibOrNa = convert('"<n> MiB" or N/A', (s) => (NA.test(s) ? null : mebibytes(s)));
/** An element holding either `key` children or a placeholder text (`None` when a GPU has no MIG devices). */
const listOf = <T extends z.ZodType>(key: string, item: T) =>
  z.preprocess(
    (v) => (typeof v === 'object' && v !== null ? v : {}),
    z.object({ [key]: z.array(item).default([]) }).transform((o) => o[key] as z.output<T>[]),
  );

const migDeviceXml = z.object({
  index: int,
  gpu_instance_id: int,
  compute_instance_id: int,
  fb_memory_usage: z.object({ total: mib, used: mibOrNa }),
});
const processXml = z.object({
  pid: int,
  process_name: z.string().default(''),
  gpu_instance_id: intOrNa.default(null),
  compute_instance_id: intOrNa.default(null),
  used_memory: mibOrNa.default(null),
});
const logXml = z.object({
  nvidia_smi_log: z.object({
    gpu: z
      .array(
        z.object({
          uuid: z.string().regex(/^GPU-/, 'expected a GPU-… UUID'),
          mig_devices: listOf('mig_device', migDeviceXml),
          processes: listOf('process_info', processXml),
        }),
      )
      .default([]),
  }),
});

const xmlParser = new XMLParser({
  ignoreAttributes: true,
  // Keep every value a string (a process name may look like a number); the schema converts.
  parseTagValue: false,
  trimValues: true,
  isArray: (name) => name === 'gpu' || name === 'mig_device' || name === 'process_info',
});

/**
 * Parses `nvidia-smi -q -x` down to what the MIG accounting needs. Throws NvidiaSmiParseError on
 * output that is not well-formed XML or does not have the expected shape (naming where).
 */
export function parseMigQueryXml(text: string): RawQueriedGpu[] {
  const valid = XMLValidator.validate(text);
  if (valid !== true) {
    throw new NvidiaSmiParseError(`nvidia-smi -q -x: not XML: line ${valid.err.line}: ${valid.err.msg}`);
  }
  const parsed = logXml.safeParse(xmlParser.parse(text));
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const where = issue.path.map((p) => (typeof p === 'number' ? `[${p}]` : `.${String(p)}`)).join('');
    throw new NvidiaSmiParseError(`nvidia-smi -q -x: ${where.replace(/^\./, '') || 'document'}: ${issue.message}`);
  }
  return parsed.data.nvidia_smi_log.gpu.map((g) => ({
    uuid: g.uuid,
    migDevices: g.mig_devices.map((d) => ({
      index: d.index,
      gpuInstanceId: d.gpu_instance_id,
      computeInstanceId: d.compute_instance_id,
      memoryTotalMiB: d.fb_memory_usage.total,
      memoryUsedMiB: d.fb_memory_usage.used ?? 0,
    })),
    processes: g.processes.map((p) => ({
      pid: p.pid,
      name: p.process_name,
      gpuInstanceId: p.gpu_instance_id,
      computeInstanceId: p.compute_instance_id,
      usedMemoryMiB: p.used_memory,
    })),
  }));
}

// The schedulable devices, pure: from what the probe found, or from a fixed list an operator gives
// (TRAINYARD_GPU_INVENTORY, for tests and for hosts without nvidia-smi). A GPU in MIG mode is not
// a device itself (CUDA cannot run on it as a whole); each of its MIG instances is.

import { gpuDeviceId, migDeviceId, type Device } from '@trainyard/domain';
import { z } from 'zod';
import type { GpuInfo } from './types';

/** The setting parseFixedInventory reads; its errors are worded with this name. */
const GPU_INVENTORY_VARIABLE = 'TRAINYARD_GPU_INVENTORY';

/**
 * The devices a probe found, keeping only the GPUs in `allowedGpuIndices` (TRAINYARD_GPU_SLOTS;
 * null or undefined = all) and so only their instances. `externalMemoryMb` maps each device id to
 * the memory programs that are not ours hold on it (the probe's rule: used minus ours).
 * An unavailable probe gives no devices; a MIG GPU whose instances could not be read gives none.
 */
export function inventoryFromGpuInfo(
  info: GpuInfo,
  allowedGpuIndices: readonly number[] | null | undefined,
): { devices: Device[]; externalMemoryMb: Map<string, number> } {
  const devices: Device[] = [];
  const externalMemoryMb = new Map<string, number>();
  if (!info.available) return { devices, externalMemoryMb };
  const allowed = allowedGpuIndices ? new Set(allowedGpuIndices) : null;
  for (const gpu of [...info.devices].sort((a, b) => a.id - b.id)) {
    if (allowed && !allowed.has(gpu.id)) continue;
    if (!gpu.migMode) {
      const id = gpuDeviceId(gpu.id);
      devices.push({ id, gpuIndex: gpu.id, uuid: gpu.uuid, name: gpu.name, memoryMb: gpu.memoryMb, migProfile: null });
      externalMemoryMb.set(id, gpu.externalMemoryMb);
      continue;
    }
    for (const inst of [...gpu.instances].sort((a, b) => a.id - b.id)) {
      const id = migDeviceId(gpu.id, inst.id);
      devices.push({
        id,
        gpuIndex: gpu.id,
        uuid: inst.uuid,
        name: migName(gpu.name, inst.profile),
        memoryMb: inst.memoryMb,
        migProfile: inst.profile,
      });
      externalMemoryMb.set(id, inst.externalMemoryMb);
    }
  }
  return { devices, externalMemoryMb };
}

/** The devices of the GPUs in `allowedGpuIndices` (null or undefined = all), e.g. of a fixed inventory. */
export function restrictToGpus(devices: readonly Device[], allowedGpuIndices: readonly number[] | null | undefined): Device[] {
  if (!allowedGpuIndices) return [...devices];
  const allowed = new Set(allowedGpuIndices);
  return devices.filter((d) => allowed.has(d.gpuIndex));
}

/** As CUDA names a MIG device: the GPU's name, then the profile. */
function migName(gpuName: string, profile: string): string {
  return `${gpuName} MIG ${profile}`;
}

// ---------------------------------------------------------------------------------------------
// TRAINYARD_GPU_INVENTORY

/** Bad TRAINYARD_GPU_INVENTORY: the message names the entry and field, e.g. `TRAINYARD_GPU_INVENTORY[1].memoryGb: …`. */
export class GpuInventoryError extends Error {
  override readonly name = 'GpuInventoryError';
}

/** `1g.10gb`, `3g.40gb`, `1g.10gb+me`, `1c.3g.40gb` (a compute instance of a 3g.40gb): memory is the last `<n>gb`. */
const MIG_PROFILE = /^(?:\d+c\.)?\d+g\.(\d+)gb(?:\+[a-z0-9.]+)*$/;

/** Nominal memory of a MIG profile in GB (`1g.10gb` → 10), or null when the name carries none. */
export function migProfileMemoryGb(profile: string): number | null {
  const m = MIG_PROFILE.exec(profile);
  return m ? Number(m[1]) : null;
}

const positiveGb = z.number({ error: (iss) => (iss.input === undefined ? 'is required (GB)' : 'must be a positive number') }).positive({
  error: 'must be a positive number',
});

const migEntry = z.preprocess(
  (v) => (typeof v === 'string' ? { profile: v } : v),
  z.strictObject(
    {
      profile: z
        .string({ error: (iss) => (iss.input === undefined ? 'is required' : 'must be a MIG profile such as "1g.10gb"') })
        .regex(MIG_PROFILE, { error: 'must be a MIG profile such as "1g.10gb" or "3g.40gb"' }),
      memoryGb: positiveGb.optional(),
      uuid: z
        .string()
        .regex(/^MIG-\S+$/, { error: 'must be a MIG-… UUID' })
        .optional(),
    },
    { error: 'must be a MIG profile ("1g.10gb") or an object {"profile","memoryGb"?,"uuid"?}' },
  ),
);

const gpuEntry = z.strictObject(
  {
    name: z.string({ error: 'must be a GPU name' }).trim().min(1, { error: 'must be a GPU name' }),
    memoryGb: positiveGb,
    uuid: z
      .string()
      .regex(/^GPU-\S+$/, { error: 'must be a GPU-… UUID' })
      .optional(),
    mig: z.array(migEntry, { error: 'must be a list of MIG instances' }).optional(),
  },
  { error: 'must be an object {"name","memoryGb","uuid"?,"mig"?}' },
);

const inventorySchema = z
  .array(gpuEntry, { error: 'must be a JSON array of GPUs, e.g. [{"name":"A100","memoryGb":80}]' })
  .min(1, { error: 'must list at least one GPU' })
  .superRefine((gpus, ctx) => {
    const seen = new Map<string, string>();
    gpus.forEach((g, i) => {
      const uuids: [string | undefined, (string | number)[]][] = [
        [g.uuid, [i, 'uuid']],
        ...(g.mig ?? []).map((m, n): [string | undefined, (string | number)[]] => [m.uuid, [i, 'mig', n, 'uuid']]),
      ];
      for (const [uuid, path] of uuids) {
        if (uuid === undefined) continue;
        const first = seen.get(uuid);
        if (first) ctx.addIssue({ code: 'custom', path, message: `repeats the UUID of ${first}` });
        else seen.set(uuid, `${GPU_INVENTORY_VARIABLE}${fieldPath(path)}`);
      }
      const migGb = (g.mig ?? []).reduce((s, m) => s + (m.memoryGb ?? migProfileMemoryGb(m.profile) ?? 0), 0);
      if (migGb > g.memoryGb * 1.05) {
        ctx.addIssue({ code: 'custom', path: [i, 'mig'], message: `its instances hold ${migGb} GB, more than the GPU's ${g.memoryGb} GB` });
      }
    });
  });

/** `[1, 'mig', 0, 'uuid']` → `[1].mig[0].uuid`. */
function fieldPath(path: readonly PropertyKey[]): string {
  return path.map((p) => (typeof p === 'number' ? `[${p}]` : `.${String(p)}`)).join('');
}

/**
 * Parses TRAINYARD_GPU_INVENTORY: a JSON array of GPUs, each `{"name", "memoryGb", "uuid"?, "mig"?}`,
 * its index the array position. `mig` (present, even empty, = the GPU is in MIG mode) lists its
 * instances as `{"profile", "memoryGb"?, "uuid"?}` or just the profile; an instance's memory
 * defaults to its profile's nominal GB (`1g.10gb` → 10). Throws GpuInventoryError naming each bad
 * entry and field.
 */
export function parseFixedInventory(text: string): Device[] {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new GpuInventoryError(`${GPU_INVENTORY_VARIABLE}: not JSON (${e instanceof Error ? e.message : String(e)})`);
  }
  const parsed = inventorySchema.safeParse(json);
  if (!parsed.success) {
    const problems = parsed.error.issues.flatMap((iss) =>
      iss.code === 'unrecognized_keys'
        ? iss.keys.map((k) => `${GPU_INVENTORY_VARIABLE}${fieldPath([...iss.path, k])}: unknown field`)
        : [`${GPU_INVENTORY_VARIABLE}${fieldPath(iss.path)}: ${iss.message}`],
    );
    throw new GpuInventoryError(problems.join('; '));
  }
  return parsed.data.flatMap((g, gpuIndex): Device[] => {
    if (!g.mig) {
      return [{ id: gpuDeviceId(gpuIndex), gpuIndex, uuid: g.uuid ?? null, name: g.name, memoryMb: gbToMb(g.memoryGb), migProfile: null }];
    }
    return g.mig.map((m, n) => ({
      id: migDeviceId(gpuIndex, n),
      gpuIndex,
      uuid: m.uuid ?? null,
      name: migName(g.name, m.profile),
      // The schema admits only profiles that name their memory.
      memoryMb: gbToMb(m.memoryGb ?? migProfileMemoryGb(m.profile)!),
      migProfile: m.profile,
    }));
  });
}

function gbToMb(gb: number): number {
  return Math.round(gb * 1024);
}

// The service's picture of its devices, pure: which devices tasks may use (the operator's fixed
// inventory, or what the probe found, restricted by TRAINYARD_GPU_SLOTS), what weighs on each
// now (memory other programs hold, and whether that blocks it), and a task's request checked
// against them. The policy (packages/domain/src/scheduling.ts) decides with this.
import { gb, gpuDeviceId, requestFits, type Device, type TaskResources } from '@trainyard/domain';
import type { DeviceCondition } from '@trainyard/store';
import type { ServiceConfig } from './config';
import { FieldError } from './field-error';
import { inventoryFromGpuInfo, restrictToGpus, type GpuInfo } from './gpu';
import type { ResourcesInput } from './schemas';

export interface DevicePicture {
  devices: Device[];
  conditions: Map<string, DeviceCondition>;
  /** Where the devices came from: the operator's list, the probe, or neither (memory unknown). */
  source: 'fixed' | 'probe' | 'unprobed';
}

/**
 * Whether a probe's device list may replace the current one (once a second probe agrees, as
 * refreshDevices asks). A failed or partial probe never may, nor one that finds no GPU where GPUs
 * were: either would stop every task on a driver hiccup. Finding GPUs where none had been probed
 * may: an nvidia-smi too slow at start-up must not leave the service on its fallback device for good.
 */
export function mayReplaceDevices(before: DevicePicture['source'], next: DevicePicture['source'], probeFailed: boolean): boolean {
  if (probeFailed) return false;
  return next === before || (before === 'unprobed' && next === 'probe');
}

type PictureConfig = Pick<ServiceConfig, 'gpuInventory' | 'gpuSlots' | 'externalGpuShareLimit'>;

export function devicePicture(gpu: GpuInfo | null, config: PictureConfig): DevicePicture {
  if (config.gpuInventory) return { devices: restrictToGpus(config.gpuInventory, config.gpuSlots), conditions: new Map(), source: 'fixed' };
  const found = gpu ? inventoryFromGpuInfo(gpu, config.gpuSlots) : { devices: [], externalMemoryMb: new Map<string, number>() };
  if (!found.devices.length) {
    // No GPU seen (a laptop, CI, the simulated trainer): the configured indices, or one device,
    // of unknown memory (0): exclusive tasks run one per device, memory-aware placement needs an inventory.
    const devices = (config.gpuSlots ?? [0]).map((i) => ({
      id: gpuDeviceId(i),
      gpuIndex: i,
      uuid: null,
      name: 'GPU (not probed)',
      memoryMb: 0,
      migProfile: null,
    }));
    return { devices, conditions: new Map(), source: 'unprobed' };
  }
  const conditions = new Map<string, DeviceCondition>();
  for (const d of found.devices) {
    const external = found.externalMemoryMb.get(d.id) ?? 0;
    conditions.set(d.id, { externalMemoryMb: external, blockedReason: blockedBy(d, external, gpu!, config.externalGpuShareLimit) });
  }
  return { devices: found.devices, conditions, source: 'probe' };
}

/** A device other programs hold beyond the configured share takes no work: why, in one sentence. */
function blockedBy(d: Device, externalMb: number, gpu: GpuInfo, limit: number): string | null {
  if (d.memoryMb <= 0 || externalMb / d.memoryMb <= limit) return null;
  const parent = gpu.devices.find((g) => g.id === d.gpuIndex);
  const procs = d.migProfile ? (parent?.instances.find((i) => i.uuid === d.uuid)?.processes ?? []) : (parent?.processes ?? []);
  const who = procs
    .filter((p) => !p.ours)
    .map((p) => `${p.name} (pid ${p.pid}${p.memoryUsedGb ? `, ${p.memoryUsedGb} GB` : ''})`)
    .join(', ');
  const label = d.migProfile ? `GPU ${d.gpuIndex} MIG ${d.migProfile}` : `GPU ${d.gpuIndex}`;
  return (
    `${label} (${d.name}): ${gb(externalMb)} of ${gb(d.memoryMb)} GB held by other programs${who ? `: ${who}` : ''}, ` +
    `over the ${Math.round(limit * 100)}% limit. Tasks wait until that memory is freed ` +
    '(stop the other program, e.g. a vLLM server) or TRAINYARD_EXTERNAL_GPU_SHARE is raised.'
  );
}

/**
 * A task's request from its input and the memory estimate, checked against the devices: more GPUs
 * than the host has, memory above the largest device, a shared request with no memory figure.
 * Exclusive tasks take whole devices: only a memory figure the user gave is a requirement for
 * them (the estimate is for packing shared tasks and for warnings).
 */
export function resolveResources(
  input: ResourcesInput | undefined,
  estimateGb: number | null,
  devices: readonly Device[],
  reserve: number,
): TaskResources {
  const gpus = input?.gpus ?? 1;
  const shared = input?.shared ?? false;
  const given = input?.gpuMemoryGb;
  const whole = devices.filter((d) => d.migProfile === null).length;
  if (gpus > (gpus === 1 ? devices.length : whole))
    throw new FieldError(
      'resources.gpus',
      `asks for ${gpus} GPUs but this host has ${gpus === 1 ? devices.length : whole} ${gpus === 1 ? 'device(s)' : 'whole GPU(s) (a task on several GPUs cannot use MIG instances)'}. Ask for fewer.`,
    );
  const memoryMb = given !== undefined ? Math.ceil(given * 1024) : shared && estimateGb !== null ? Math.ceil(estimateGb * 1024) : null;
  const memorySource = given !== undefined ? 'given' : memoryMb !== null ? 'estimate' : null;
  if (shared && memoryMb === null)
    throw new FieldError(
      'resources.shared',
      'a shared task needs a memory figure to be packed beside others, and none could be estimated for this model: give resources.gpuMemoryGb.',
    );
  if (memoryMb !== null) {
    const known = devices.filter((d) => d.memoryMb > 0);
    const field = given !== undefined ? 'resources.gpuMemoryGb' : 'resources.shared';
    if (!known.length)
      throw new FieldError(
        field,
        "the memory of this host's GPUs is not known (no nvidia-smi): drop the memory figure, or give TRAINYARD_GPU_INVENTORY.",
      );
    const request = { gpus, memoryMb, shared };
    if (!requestFits(known, request, reserve)) {
      const largest = Math.max(...known.map((d) => d.memoryMb));
      throw new FieldError(
        field,
        `${gb(memoryMb)} GB per GPU${given === undefined ? ' (estimated)' : ''} does not fit ${gpus === 1 ? 'any device' : `${gpus} GPUs`} of this host ` +
          `(largest ${gb(largest)} GB${shared ? `, of which ${Math.round((1 - reserve) * 100)}% may be shared` : ''}). ` +
          (shared ? 'Run it exclusively (shared: false), or ' : '') +
          'ask for less memory (smaller batch, shorter sequences, 8-bit or 4-bit loading).',
      );
    }
  }
  return {
    gpus,
    memoryMb: shared || given !== undefined ? memoryMb : null,
    shared,
    memorySource: shared || given !== undefined ? memorySource : null,
  };
}

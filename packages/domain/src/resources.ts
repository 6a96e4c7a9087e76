// GPUs as resources: the devices a task can run on, what a task asks for, and what it was given.
// Plain data shared by the probe (which finds devices), the policy (which places tasks) and the
// runner (which points a trainer at its devices).

/** Share of a device's memory never handed to shared tasks (the seed's 20 %), unless configured. */
export const DEFAULT_MEMORY_RESERVE = 0.2;

/**
 * One schedulable device: a whole GPU, or one MIG instance of a GPU in MIG mode. A MIG instance
 * is its own device with its own memory; the GPU that holds it is not schedulable itself.
 */
export interface Device {
  /** Stable key: `gpu<index>` for a whole GPU, `gpu<index>/mig<n>` for its n-th MIG instance. */
  id: string;
  /** nvidia-smi's index of the GPU (of the parent GPU for a MIG instance). */
  gpuIndex: number;
  /** `GPU-…` or `MIG-…`: what CUDA_VISIBLE_DEVICES is given; null when not known (fixed inventory). */
  uuid: string | null;
  name: string;
  memoryMb: number;
  /** MIG profile such as `1g.18gb`; null for a whole GPU. */
  migProfile: string | null;
}

/** A device as the policy sees it now: who holds it and what else weighs on it. */
export interface DeviceView extends Device {
  /** Memory held by programs that are not ours (the device's used memory minus ours). */
  externalMemoryMb: number;
  /** Set when the device must take no new work now (e.g. another program holds it); a sentence. */
  blockedReason: string | null;
  holders: readonly DeviceHolder[];
}

export interface DeviceHolder {
  taskId: string;
  /** Memory the holder was granted on this device. */
  memoryMb: number;
  /** An exclusive holder takes the whole device. */
  exclusive: boolean;
  /** When the holder is sure to have let go: its deadline (assignment + timeout), epoch ms; null = unknown. */
  endsBy: number | null;
  /** The user whose task it is (quotas and fair share); absent: not counted for anyone. */
  owner?: string;
  /** Its priority value (preemption picks lower ones), when it started (epoch ms), */
  priority?: number;
  startedAt?: number;
  /** whether it may be preempted (not too often already), and whether it is stopping now. */
  preemptible?: boolean;
  stopping?: boolean;
}

/** What a task asks for. */
export interface ResourceRequest {
  /** A gang: all on as many devices at once, or none. */
  gpus: number;
  /** Memory per device: given by the user, else the estimate; null = unknown (whole device). */
  memoryMb: number | null;
  /** May run beside other shared tasks on one device when the memory fits. */
  shared: boolean;
}

/** Whether the memory figure came from the user or from the estimate (shown with the request). */
export type MemorySource = 'given' | 'estimate' | null;

export const DEFAULT_REQUEST: ResourceRequest = { gpus: 1, memoryMb: null, shared: false };

/** One device given to a task. */
export interface DeviceGrant {
  deviceId: string;
  gpuIndex: number;
  uuid: string | null;
  migProfile: string | null;
  /** Memory reserved on the device for the task (the whole device for an exclusive task). */
  memoryMb: number;
  exclusive: boolean;
}

/** The value CUDA_VISIBLE_DEVICES takes for a set of devices: UUIDs where known, else indices. */
export function cudaVisibleDevices(grants: readonly Pick<DeviceGrant, 'uuid' | 'gpuIndex'>[]): string {
  return grants.map((g) => g.uuid ?? String(g.gpuIndex)).join(',');
}

/** A whole GPU's device id. */
export const gpuDeviceId = (gpuIndex: number): string => `gpu${gpuIndex}`;
/** A MIG instance's device id. */
export const migDeviceId = (gpuIndex: number, n: number): string => `gpu${gpuIndex}/mig${n}`;

/** Memory in GB as shown to people (one decimal). */
export const gb = (mb: number): number => Math.round((mb / 1024) * 10) / 10;

/** `count` whole GPUs of one kind, indices 0…count-1 (simulation, tests, a host without a probe). */
export function uniformInventory(count: number, memoryMb = 81_920, name = 'GPU'): Device[] {
  return Array.from({ length: count }, (_, i) => ({ id: gpuDeviceId(i), gpuIndex: i, uuid: null, name, memoryMb, migProfile: null }));
}

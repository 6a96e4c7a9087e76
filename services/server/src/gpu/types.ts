// Shapes the GPU probe reports. Memory is in GB (MiB / 1024, one decimal), as shown to users, and
// also in MiB (`…Mb` fields, nvidia-smi's unit) for the inventory, which must not round.

export interface GpuProcess {
  pid: number;
  name: string;
  memoryUsedGb: number;
  /** True when the pid is one of the trainer processes this service runs; false = "external". */
  ours: boolean;
}

/** One MIG instance of a GPU in MIG mode: a device of its own (its memory, its `MIG-…` UUID). */
export interface GpuMigInstance {
  /** The MIG device's index on its GPU (`Device N` in `nvidia-smi -L`). */
  id: number;
  /** `MIG-…`: what CUDA_VISIBLE_DEVICES takes for this instance. */
  uuid: string;
  /** Profile such as `3g.40gb` or `1g.10gb+me`. */
  profile: string;
  memoryGb: number;
  memoryUsedGb: number;
  /** Memory held by programs that are not ours (see `externalMiB` in parse.ts for the rule). */
  externalMemoryGb: number;
  memoryMb: number;
  externalMemoryMb: number;
  /** Processes on this instance (per-process memory is 0 where nvidia-smi reports it unavailable). */
  processes: GpuProcess[];
}

export interface GpuDevice {
  /** nvidia-smi's index (what CUDA_VISIBLE_DEVICES takes with CUDA_DEVICE_ORDER=PCI_BUS_ID). */
  id: number;
  uuid: string;
  name: string;
  memoryGb: number;
  memoryUsedGb: number;
  /** GPU utilization in percent; null when nvidia-smi reports it as unavailable (e.g. MIG mode). */
  utilization: number | null;
  processes: GpuProcess[];
  /** Memory held by programs that are not ours (see `externalMiB` in parse.ts for the rule). */
  externalMemoryGb: number;
  /** Total memory in MiB. */
  memoryMb: number;
  /** externalMemoryGb in MiB. */
  externalMemoryMb: number;
  /** The GPU is in MIG mode: only its instances can run work, the GPU as a whole cannot. */
  migMode: boolean;
  /** Its MIG instances (empty unless `migMode`, and when they could not be read: see GpuInfo.error). */
  instances: GpuMigInstance[];
}

export interface GpuInfo {
  available: boolean;
  count: number;
  devices: GpuDevice[];
  /** One human-readable sentence: what GPU there is and which model to pick, or what went wrong and what to do. */
  recommendation: string;
  /** Technical detail of a failure (also set when the GPU works but its process list or MIG instances could not be read). */
  error?: string;
  /** ISO timestamp of the probe. */
  probedAt: string;
}

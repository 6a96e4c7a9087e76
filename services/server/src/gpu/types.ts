// Shapes the GPU probe reports. Memory is in GB (MiB / 1024, one decimal), as shown to users.

export interface GpuProcess {
  pid: number;
  name: string;
  memoryUsedGb: number;
  /** True when the pid is one of the trainer processes this service runs; false = "external". */
  ours: boolean;
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
  /** Memory held by processes that are not ours. */
  externalMemoryGb: number;
}

export interface GpuInfo {
  available: boolean;
  count: number;
  devices: GpuDevice[];
  /** One human-readable sentence: what GPU there is and which model to pick, or what went wrong and what to do. */
  recommendation: string;
  /** Technical detail of a failure (also set when the GPU works but its process list could not be read). */
  error?: string;
  /** ISO timestamp of the probe. */
  probedAt: string;
}

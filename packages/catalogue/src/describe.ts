// How the CLI and the panel put a task's devices and its request into words (one wording, two
// separators: the panel's " · ", the terminal's ", ").

/** Memory in GB as people read it (one decimal), from MiB. */
export function gbText(mb: number): string {
  return `${Math.round((mb / 1024) * 10) / 10} GB`;
}

/** The devices a task holds: `gpu0+gpu1`, `gpu3/mig1 (1g.10gb)`; empty for none. */
export function devicesText(devices: readonly { deviceId: string; migProfile: string | null }[]): string {
  return devices.map((d) => (d.migProfile ? `${d.deviceId} (${d.migProfile})` : d.deviceId)).join('+');
}

/**
 * What a task asks for: `1 GPU`, `2 GPUs`, `1 GPU, 30 GB`, `1 GPU, shared 12 GB (estimated)`.
 * The memory is per device; "(estimated)" when the service estimated it from the model.
 */
export function requestText(
  r: { gpus: number; memoryMb: number | null; shared: boolean; memorySource: 'given' | 'estimate' | null },
  separator = ', ',
): string {
  const parts = [r.gpus === 1 ? '1 GPU' : `${r.gpus} GPUs`];
  const mem =
    r.memoryMb !== null ? `${gbText(r.memoryMb)}${r.gpus > 1 ? ' each' : ''}${r.memorySource === 'estimate' ? ' (estimated)' : ''}` : null;
  if (r.shared) parts.push(mem ? `shared ${mem}` : 'shared');
  else if (mem) parts.push(mem);
  return parts.join(separator);
}

// The command line a deployment's vLLM server is started with, and its environment: pure, so a
// unit spec holds it against vLLM's documented CLI (`vllm serve <model> …`). Sleep mode is on so
// that the scheduler can ask a serving deployment to give its GPU memory back; vLLM exposes
// /sleep, /wake_up and /is_sleeping only with VLLM_SERVER_DEV_MODE=1, on the loopback port only.

interface LoraModule {
  /** The model name clients ask for (a task's adapter: the task id). */
  name: string;
  /** The adapter's folder (a completed task's artifact). */
  path: string;
}

export interface VllmServeSpec {
  /** The base model: a Hugging Face id or a local folder. */
  model: string;
  host: string;
  port: number;
  /** Fraction of each device's memory vLLM may take, in (0, 1]. */
  gpuMemoryUtilization: number;
  maxModelLen: number | null;
  /** Devices it runs on: tensor parallel across them. */
  tensorParallelSize: number;
  loras: LoraModule[];
  /** The name clients ask for, when not the model's path (a merged model: its task's id). */
  servedModelName?: string;
}

/** argv after the executable (`vllm`). */
export function vllmServeArgv(spec: VllmServeSpec): string[] {
  const argv = [
    'serve',
    spec.model,
    '--host',
    spec.host,
    '--port',
    String(spec.port),
    '--gpu-memory-utilization',
    String(spec.gpuMemoryUtilization),
    '--tensor-parallel-size',
    String(spec.tensorParallelSize),
    '--enable-sleep-mode',
  ];
  if (spec.maxModelLen !== null) argv.push('--max-model-len', String(spec.maxModelLen));
  if (spec.servedModelName !== undefined) argv.push('--served-model-name', spec.servedModelName);
  for (const l of spec.loras) {
    // vLLM splits `name=path` at the first '=' and the list at spaces.
    if (!/^[A-Za-z0-9][A-Za-z0-9._:-]*$/.test(l.name))
      throw new Error(`vllmServeArgv: LoRA module name ${JSON.stringify(l.name)} is not a plain name`);
  }
  if (spec.loras.length > 0) {
    // One flag, then every module (argparse nargs='+'), each `name=path`.
    argv.push('--enable-lora', '--max-loras', String(spec.loras.length), '--lora-modules', ...spec.loras.map((l) => `${l.name}=${l.path}`));
  }
  return argv;
}

/**
 * Variables the vLLM server needs beyond the service's allow-listed environment. `devices` are
 * nvidia-smi's indices, which follow the PCI bus order; CUDA's own default order is fastest
 * first, so without CUDA_DEVICE_ORDER=PCI_BUS_ID a host with mixed GPUs would serve on other
 * GPUs than the ones the deployment holds (as the launcher sets it for trainers).
 */
export function vllmServeEnv(devices: number[]): Record<string, string> {
  // VLLM_ALLOW_RUNTIME_LORA_UPDATING: /v1/load_lora_adapter and /v1/unload_lora_adapter (deployments.addAdapter).
  return {
    VLLM_SERVER_DEV_MODE: '1',
    VLLM_ALLOW_RUNTIME_LORA_UPDATING: 'True',
    CUDA_DEVICE_ORDER: 'PCI_BUS_ID',
    CUDA_VISIBLE_DEVICES: devices.join(','),
  };
}

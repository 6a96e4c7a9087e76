import { describe, expect, it } from 'vitest';
import { vllmServeArgv, vllmServeEnv, type VllmServeSpec } from './vllm-argv';

// vLLM's documented `vllm serve` engine arguments we use (docs.vllm.ai, "Engine Arguments";
// sleep mode: docs/features/sleep_mode.md), each with whether it takes a value.
const DOCUMENTED: Record<string, 'value' | 'flag' | 'list'> = {
  '--host': 'value',
  '--port': 'value',
  '--gpu-memory-utilization': 'value',
  '--max-model-len': 'value',
  '--tensor-parallel-size': 'value',
  '--enable-lora': 'flag',
  '--max-loras': 'value',
  '--lora-modules': 'list',
  '--enable-sleep-mode': 'flag',
  '--served-model-name': 'list',
};

/** Reads an argv the way vLLM's argparse does for the flags above. */
function parse(argv: string[]): { command: string; model: string; flags: Record<string, string[] | true> } {
  const [command, model, ...rest] = argv;
  const flags: Record<string, string[] | true> = {};
  for (let i = 0; i < rest.length; i++) {
    const name = rest[i]!;
    const kind = DOCUMENTED[name];
    if (!kind) throw new Error(`undocumented flag ${name}`);
    if (kind === 'flag') flags[name] = true;
    else if (kind === 'value') flags[name] = [rest[++i]!];
    else {
      const values: string[] = [];
      while (i + 1 < rest.length && !rest[i + 1]!.startsWith('--')) values.push(rest[++i]!);
      flags[name] = values;
    }
  }
  return { command: command!, model: model!, flags };
}

const base: VllmServeSpec = {
  model: 'Qwen/Qwen2.5-0.5B-Instruct',
  host: '127.0.0.1',
  port: 18001,
  gpuMemoryUtilization: 0.3,
  maxModelLen: null,
  tensorParallelSize: 1,
  loras: [],
};

describe('vllmServeArgv', () => {
  it('given a base model alone, when built, then it is `vllm serve <model>` on the loopback port with sleep mode and no LoRA flags', () => {
    const { command, model, flags } = parse(vllmServeArgv(base));
    expect(command).toBe('serve');
    expect(model).toBe('Qwen/Qwen2.5-0.5B-Instruct');
    expect(flags).toEqual({
      '--host': ['127.0.0.1'],
      '--port': ['18001'],
      '--gpu-memory-utilization': ['0.3'],
      '--tensor-parallel-size': ['1'],
      '--enable-sleep-mode': true,
    });
  });

  it('given adapters, tensor parallel and a context length, when built, then one --lora-modules lists every name=path after --enable-lora', () => {
    const argv = vllmServeArgv({
      ...base,
      gpuMemoryUtilization: 0.8,
      maxModelLen: 4096,
      tensorParallelSize: 2,
      loras: [
        { name: 'task-a1', path: '/data/outputs/task-a1/adapter' },
        { name: 'task-b2', path: '/data/outputs/task-b2/adapter' },
      ],
    });
    const { flags } = parse(argv);
    expect(flags['--enable-lora']).toBe(true);
    expect(flags['--max-loras']).toEqual(['2']);
    expect(flags['--lora-modules']).toEqual(['task-a1=/data/outputs/task-a1/adapter', 'task-b2=/data/outputs/task-b2/adapter']);
    expect(flags['--tensor-parallel-size']).toEqual(['2']);
    expect(flags['--max-model-len']).toEqual(['4096']);
    expect(argv.indexOf('--enable-lora')).toBeLessThan(argv.indexOf('--lora-modules'));
  });

  it('given a merged model (a folder) served under its task’s name, when built, then --served-model-name names it and no LoRA flag is there', () => {
    const { model, flags } = parse(vllmServeArgv({ ...base, model: '/runs/deployments/dep-1/merged', servedModelName: 'task-a1' }));
    expect(model).toBe('/runs/deployments/dep-1/merged');
    expect(flags['--served-model-name']).toEqual(['task-a1']);
    expect(flags['--enable-lora']).toBeUndefined();
  });

  it('given a LoRA name vLLM would split, when built, then it is refused', () => {
    expect(() => vllmServeArgv({ ...base, loras: [{ name: 'a=b', path: '/x' }] })).toThrow(/not a plain name/);
    expect(() => vllmServeArgv({ ...base, loras: [{ name: 'a b', path: '/x' }] })).toThrow(/not a plain name/);
  });

  it('the environment turns on the sleep routes and names the devices', () => {
    expect(vllmServeEnv([0, 2])).toEqual({
      VLLM_SERVER_DEV_MODE: '1',
      VLLM_ALLOW_RUNTIME_LORA_UPDATING: 'True',
      CUDA_DEVICE_ORDER: 'PCI_BUS_ID',
      CUDA_VISIBLE_DEVICES: '0,2',
    });
  });
});

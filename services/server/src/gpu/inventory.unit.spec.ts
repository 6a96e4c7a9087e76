import { describe, expect, it } from 'vitest';
import { loadConfig } from '../config';
import {
  GpuInventoryError,
  inventoryFromGpuInfo,
  migProfileMemoryGb,
  parseFixedInventory,
  restrictToGpus,
  unavailableInfo,
  type GpuDevice,
  type GpuInfo,
  type GpuMigInstance,
} from './index';

const AT = '2025-01-01T00:00:00.000Z';

function gpu(id: number, memoryMb: number, over: Partial<GpuDevice> = {}): GpuDevice {
  return {
    id,
    uuid: `GPU-${id}`,
    name: 'NVIDIA A100 80GB PCIe',
    memoryGb: memoryMb / 1024,
    memoryUsedGb: 0,
    utilization: 0,
    processes: [],
    externalMemoryGb: 0,
    memoryMb,
    externalMemoryMb: 0,
    migMode: false,
    instances: [],
    ...over,
  };
}

function instance(id: number, profile: string, memoryMb: number, externalMemoryMb = 0): GpuMigInstance {
  return {
    id,
    uuid: `MIG-${id}`,
    profile,
    memoryGb: memoryMb / 1024,
    memoryUsedGb: externalMemoryMb / 1024,
    externalMemoryGb: externalMemoryMb / 1024,
    memoryMb,
    externalMemoryMb,
    processes: [],
  };
}

function info(devices: GpuDevice[]): GpuInfo {
  return { available: true, count: devices.length, devices, recommendation: '', probedAt: AT };
}

const FOUR = info([
  gpu(0, 81920),
  gpu(1, 81920, { externalMemoryMb: 2048 }),
  gpu(2, 40960, { name: 'NVIDIA A100-PCIE-40GB' }),
  gpu(3, 81920, {
    migMode: true,
    externalMemoryMb: 12239,
    instances: [instance(0, '3g.40gb', 40192, 12213), instance(1, '1g.10gb', 9728, 13), instance(2, '1g.10gb', 9728, 13)],
  }),
]);

describe('inventoryFromGpuInfo', () => {
  it('whole GPUs are devices; a GPU in MIG mode gives its instances instead of itself', () => {
    const { devices, externalMemoryMb } = inventoryFromGpuInfo(FOUR, null);
    expect(devices).toEqual([
      { id: 'gpu0', gpuIndex: 0, uuid: 'GPU-0', name: 'NVIDIA A100 80GB PCIe', memoryMb: 81920, migProfile: null },
      { id: 'gpu1', gpuIndex: 1, uuid: 'GPU-1', name: 'NVIDIA A100 80GB PCIe', memoryMb: 81920, migProfile: null },
      { id: 'gpu2', gpuIndex: 2, uuid: 'GPU-2', name: 'NVIDIA A100-PCIE-40GB', memoryMb: 40960, migProfile: null },
      { id: 'gpu3/mig0', gpuIndex: 3, uuid: 'MIG-0', name: 'NVIDIA A100 80GB PCIe MIG 3g.40gb', memoryMb: 40192, migProfile: '3g.40gb' },
      { id: 'gpu3/mig1', gpuIndex: 3, uuid: 'MIG-1', name: 'NVIDIA A100 80GB PCIe MIG 1g.10gb', memoryMb: 9728, migProfile: '1g.10gb' },
      { id: 'gpu3/mig2', gpuIndex: 3, uuid: 'MIG-2', name: 'NVIDIA A100 80GB PCIe MIG 1g.10gb', memoryMb: 9728, migProfile: '1g.10gb' },
    ]);
    expect([...externalMemoryMb]).toEqual([
      ['gpu0', 0],
      ['gpu1', 2048],
      ['gpu2', 0],
      ['gpu3/mig0', 12213],
      ['gpu3/mig1', 13],
      ['gpu3/mig2', 13],
    ]);
  });

  it('the slots restrict which GPUs are used, and so which instances', () => {
    expect(inventoryFromGpuInfo(FOUR, [2, 0]).devices.map((d) => d.id)).toEqual(['gpu0', 'gpu2']);
    expect(inventoryFromGpuInfo(FOUR, [3]).devices.map((d) => d.id)).toEqual(['gpu3/mig0', 'gpu3/mig1', 'gpu3/mig2']);
    const { devices, externalMemoryMb } = inventoryFromGpuInfo(FOUR, [1, 1, 7]);
    expect(devices.map((d) => d.id)).toEqual(['gpu1']); // repeated and absent indices change nothing
    expect([...externalMemoryMb.keys()]).toEqual(['gpu1']);
    expect(inventoryFromGpuInfo(FOUR, []).devices).toEqual([]);
    expect(inventoryFromGpuInfo(FOUR, undefined).devices).toHaveLength(6);
  });

  it('devices come in GPU order, instances in MIG device order', () => {
    const shuffled = info([
      gpu(1, 81920, { migMode: true, instances: [instance(1, '1g.10gb', 9728), instance(0, '3g.40gb', 40192)] }),
      gpu(0, 81920),
    ]);
    expect(inventoryFromGpuInfo(shuffled, null).devices.map((d) => d.id)).toEqual(['gpu0', 'gpu1/mig0', 'gpu1/mig1']);
  });

  it('no devices from an unavailable probe, none from a MIG GPU whose instances are unknown', () => {
    expect(inventoryFromGpuInfo(unavailableInfo({ kind: 'no-gpus' }, AT), null)).toEqual({ devices: [], externalMemoryMb: new Map() });
    const unread = info([gpu(0, 40960), gpu(1, 81920, { migMode: true, instances: [] })]);
    expect(inventoryFromGpuInfo(unread, null).devices.map((d) => d.id)).toEqual(['gpu0']);
  });
});

describe('parseFixedInventory (TRAINYARD_GPU_INVENTORY)', () => {
  it('GPUs by array position; MIG instances as objects or profiles, memory defaulting from the profile', () => {
    const devices = parseFixedInventory(
      JSON.stringify([
        { name: 'A100', memoryGb: 80, uuid: 'GPU-aa' },
        { name: 'A100 40GB', memoryGb: 40 },
        {
          name: 'H100',
          memoryGb: 80,
          mig: [{ profile: '3g.40gb', memoryGb: 39.25, uuid: 'MIG-bb' }, '1g.10gb', { profile: '1g.10gb+me' }],
        },
      ]),
    );
    expect(devices).toEqual([
      { id: 'gpu0', gpuIndex: 0, uuid: 'GPU-aa', name: 'A100', memoryMb: 81920, migProfile: null },
      { id: 'gpu1', gpuIndex: 1, uuid: null, name: 'A100 40GB', memoryMb: 40960, migProfile: null },
      { id: 'gpu2/mig0', gpuIndex: 2, uuid: 'MIG-bb', name: 'H100 MIG 3g.40gb', memoryMb: 40192, migProfile: '3g.40gb' },
      { id: 'gpu2/mig1', gpuIndex: 2, uuid: null, name: 'H100 MIG 1g.10gb', memoryMb: 10240, migProfile: '1g.10gb' },
      { id: 'gpu2/mig2', gpuIndex: 2, uuid: null, name: 'H100 MIG 1g.10gb+me', memoryMb: 10240, migProfile: '1g.10gb+me' },
    ]);
  });

  it('a GPU with an empty MIG list is in MIG mode with no instances: no devices', () => {
    expect(parseFixedInventory('[{"name":"A100","memoryGb":80,"mig":[]},{"name":"T4","memoryGb":16}]').map((d) => d.id)).toEqual(['gpu1']);
  });

  it('the slots restrict a fixed inventory too', () => {
    const devices = parseFixedInventory('[{"name":"A","memoryGb":80},{"name":"B","memoryGb":80,"mig":["1g.10gb","1g.10gb"]}]');
    expect(restrictToGpus(devices, [1]).map((d) => d.id)).toEqual(['gpu1/mig0', 'gpu1/mig1']);
    expect(restrictToGpus(devices, null)).toEqual(devices);
  });

  it.each([
    ['not JSON', '[{name: A100}]', /^TRAINYARD_GPU_INVENTORY: not JSON \(/],
    [
      'not an array',
      '{"name":"A100","memoryGb":80}',
      'TRAINYARD_GPU_INVENTORY: must be a JSON array of GPUs, e.g. [{"name":"A100","memoryGb":80}]',
    ],
    ['no GPU', '[]', 'TRAINYARD_GPU_INVENTORY: must list at least one GPU'],
    [
      'a GPU that is not an object',
      '[{"name":"A","memoryGb":1}, "A100"]',
      'TRAINYARD_GPU_INVENTORY[1]: must be an object {"name","memoryGb","uuid"?,"mig"?}',
    ],
    [
      'memory not positive',
      '[{"name":"A","memoryGb":80},{"name":"B","memoryGb":0}]',
      'TRAINYARD_GPU_INVENTORY[1].memoryGb: must be a positive number',
    ],
    ['memory a string', '[{"name":"A","memoryGb":"80"}]', 'TRAINYARD_GPU_INVENTORY[0].memoryGb: must be a positive number'],
    ['memory missing', '[{"name":"A"}]', 'TRAINYARD_GPU_INVENTORY[0].memoryGb: is required (GB)'],
    ['name missing', '[{"memoryGb":80}]', 'TRAINYARD_GPU_INVENTORY[0].name: must be a GPU name'],
    ['name blank', '[{"name":"  ","memoryGb":80}]', 'TRAINYARD_GPU_INVENTORY[0].name: must be a GPU name'],
    ['a misspelt field', '[{"name":"A","memoryGb":80,"memoryGB":80}]', 'TRAINYARD_GPU_INVENTORY[0].memoryGB: unknown field'],
    ['a GPU uuid that is not one', '[{"name":"A","memoryGb":80,"uuid":"MIG-x"}]', 'TRAINYARD_GPU_INVENTORY[0].uuid: must be a GPU-… UUID'],
    ['mig not a list', '[{"name":"A","memoryGb":80,"mig":"1g.10gb"}]', 'TRAINYARD_GPU_INVENTORY[0].mig: must be a list of MIG instances'],
    [
      'a profile that is not one',
      '[{"name":"A","memoryGb":80,"mig":["1g.10gb","big"]}]',
      'TRAINYARD_GPU_INVENTORY[0].mig[1].profile: must be a MIG profile such as "1g.10gb" or "3g.40gb"',
    ],
    [
      'an instance that is a number',
      '[{"name":"A","memoryGb":80,"mig":[10]}]',
      'TRAINYARD_GPU_INVENTORY[0].mig[0]: must be a MIG profile ("1g.10gb") or an object {"profile","memoryGb"?,"uuid"?}',
    ],
    [
      'an instance without profile',
      '[{"name":"A","memoryGb":80,"mig":[{"memoryGb":10}]}]',
      'TRAINYARD_GPU_INVENTORY[0].mig[0].profile: is required',
    ],
    [
      'an instance memory not positive',
      '[{"name":"A","memoryGb":80,"mig":[{"profile":"1g.10gb","memoryGb":-1}]}]',
      'TRAINYARD_GPU_INVENTORY[0].mig[0].memoryGb: must be a positive number',
    ],
    [
      'a MIG uuid that is not one',
      '[{"name":"A","memoryGb":80,"mig":[{"profile":"1g.10gb","uuid":"GPU-x"}]}]',
      'TRAINYARD_GPU_INVENTORY[0].mig[0].uuid: must be a MIG-… UUID',
    ],
    [
      'a repeated uuid',
      '[{"name":"A","memoryGb":80,"uuid":"GPU-a"},{"name":"B","memoryGb":80,"uuid":"GPU-a"}]',
      'TRAINYARD_GPU_INVENTORY[1].uuid: repeats the UUID of TRAINYARD_GPU_INVENTORY[0].uuid',
    ],
    [
      'instances larger than their GPU',
      '[{"name":"A","memoryGb":40,"mig":["3g.40gb","1g.10gb"]}]',
      "TRAINYARD_GPU_INVENTORY[0].mig: its instances hold 50 GB, more than the GPU's 40 GB",
    ],
  ])('names the entry and field: %s', (_what, text, message) => {
    expect(() => parseFixedInventory(text)).toThrow(GpuInventoryError);
    expect(() => parseFixedInventory(text)).toThrow(message);
  });

  it('the setting is read and checked at start-up with the others', () => {
    expect(loadConfig({}).gpuInventory).toBeNull();
    expect(loadConfig({ TRAINYARD_GPU_INVENTORY: '[{"name":"Tesla T4","memoryGb":16}]' }).gpuInventory).toEqual([
      { id: 'gpu0', gpuIndex: 0, uuid: null, name: 'Tesla T4', memoryMb: 16384, migProfile: null },
    ]);
    expect(() => loadConfig({ TRAINYARD_GPU_INVENTORY: '[{"name":"Tesla T4","memoryGb":0}]', PORT: 'x' })).toThrow(
      /^invalid configuration:\n {2}PORT="x": PORT must be a number\n {2}TRAINYARD_GPU_INVENTORY\[0\]\.memoryGb: must be a positive number$/,
    );
  });

  it('several problems are all named', () => {
    expect(() => parseFixedInventory('[{"name":"A","memoryGb":0},{"name":"","memoryGb":80}]')).toThrow(
      'TRAINYARD_GPU_INVENTORY[0].memoryGb: must be a positive number; TRAINYARD_GPU_INVENTORY[1].name: must be a GPU name',
    );
  });
});

describe('migProfileMemoryGb', () => {
  it.each([
    ['1g.10gb', 10],
    ['3g.40gb', 40],
    ['1g.18gb', 18],
    ['7g.141gb', 141],
    ['1g.10gb+me', 10],
    ['1c.3g.40gb', 40],
    ['big', null],
    ['3g.40', null],
  ])('%s → %s', (profile, gb) => {
    expect(migProfileMemoryGb(profile)).toBe(gb);
  });
});

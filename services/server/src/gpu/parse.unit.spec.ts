import { describe, expect, it } from 'vitest';
import {
  buildGpuInfo,
  describeFailure,
  externalShare,
  NvidiaSmiParseError,
  parseAppsCsv,
  parseGpuCsv,
  parseNvidiaSmi,
  type GpuDevice,
} from './index';
import { parseMigList, parseMigQueryXml } from './mig';

const AT = '2025-01-01T00:00:00.000Z';

describe('parseGpuCsv', () => {
  it('parses rows with extra whitespace and CRLF line ends', () => {
    const text = '  0 ,  GPU-a ,  NVIDIA GeForce RTX 3060 , 12288 ,1024,  7 , [N/A] \r\n\r\n1, GPU-b, Tesla T4, 15360, 0, 0,[N/A]\r\n';
    expect(parseGpuCsv(text)).toEqual([
      {
        index: 0,
        uuid: 'GPU-a',
        name: 'NVIDIA GeForce RTX 3060',
        memoryTotalMiB: 12288,
        memoryUsedMiB: 1024,
        utilization: 7,
        migMode: false,
      },
      { index: 1, uuid: 'GPU-b', name: 'Tesla T4', memoryTotalMiB: 15360, memoryUsedMiB: 0, utilization: 0, migMode: false },
    ]);
  });

  it('reads [N/A] / [Not Supported] as unavailable (MIG mode)', () => {
    expect(
      parseGpuCsv(
        '0, GPU-h, NVIDIA H100 80GB HBM3, 81559, [N/A], [N/A], Enabled\n1, GPU-g, GeForce GT 710, 2048, 300, [Not Supported], [N/A]',
      ),
    ).toEqual([
      { index: 0, uuid: 'GPU-h', name: 'NVIDIA H100 80GB HBM3', memoryTotalMiB: 81559, memoryUsedMiB: 0, utilization: null, migMode: true },
      { index: 1, uuid: 'GPU-g', name: 'GeForce GT 710', memoryTotalMiB: 2048, memoryUsedMiB: 300, utilization: null, migMode: false },
    ]);
  });

  it('reads mig.mode.current: Enabled, Disabled, unavailable', () => {
    const modes = parseGpuCsv(
      '0, GPU-a, A100, 81920, 0, 0, Enabled\n1, GPU-b, A100, 81920, 0, 0, Disabled\n2, GPU-c, T4, 15360, 0, 0, [N/A]',
    );
    expect(modes.map((g) => g.migMode)).toEqual([true, false, false]);
  });

  it('empty output is no GPUs', () => {
    expect(parseGpuCsv('')).toEqual([]);
    expect(parseGpuCsv('\n  \n')).toEqual([]);
  });

  it.each([
    ['random text', 'Segmentation fault (core dumped)'],
    ['too few fields', '0, GPU-a, RTX 3060, 12288, 1024, 7'],
    ['too many fields', '0, GPU-a, RTX 3060, 12288, 1024, 7, [N/A], 8'],
    ['a header line', 'index, uuid, name, memory.total [MiB], memory.used [MiB], utilization.gpu [%], mig.mode.current'],
    ['units left in', '0, GPU-a, RTX 3060, 12288 MiB, 1024 MiB, 7 %, [N/A]'],
    ['a MIG mode that is neither', '0, GPU-a, A100, 81920, 0, 0, Maybe'],
    ['one bad line among good ones', '0, GPU-a, RTX 3060, 12288, 1024, 7, [N/A]\nwhat, is, this, even, doing, here, now'],
  ])('throws on garbage: %s', (_what, text) => {
    expect(() => parseGpuCsv(text)).toThrow(NvidiaSmiParseError);
  });
});

describe('parseAppsCsv', () => {
  it('parses processes, [N/A] memory reads as 0', () => {
    expect(parseAppsCsv('GPU-a, 23817, /usr/bin/python3, 900\nGPU-h, 51202, python3, [N/A]\n')).toEqual([
      { gpuUuid: 'GPU-a', pid: 23817, name: '/usr/bin/python3', usedMemoryMiB: 900 },
      { gpuUuid: 'GPU-h', pid: 51202, name: 'python3', usedMemoryMiB: 0 },
    ]);
  });

  it('keeps commas inside a process name', () => {
    expect(parseAppsCsv('GPU-a, 7, /opt/a,b/python, 10')[0]!.name).toBe('/opt/a, b/python');
  });

  it('empty output and "No running processes found" are no processes', () => {
    expect(parseAppsCsv('')).toEqual([]);
    expect(parseAppsCsv('No running processes found\n')).toEqual([]);
  });

  it('throws on garbage', () => {
    expect(() => parseAppsCsv('lorem ipsum')).toThrow(NvidiaSmiParseError);
    expect(() => parseAppsCsv('GPU-a, not-a-pid, python, 10')).toThrow(NvidiaSmiParseError);
    expect(() => parseAppsCsv('GPU-a, 12, python, lots')).toThrow(NvidiaSmiParseError);
  });
});

describe('buildGpuInfo / parseNvidiaSmi', () => {
  const gpus = '0, GPU-a, NVIDIA GeForce RTX 3060, 12288, 3000, 40, [N/A]\n1, GPU-b, Tesla T4, 15360, 0, [N/A], [N/A]';
  const apps = 'GPU-a, 100, /srv/trainer/python, 1500\nGPU-a, 200, python3, 900\nGPU-a, 300, Xorg, 60\nGPU-x, 400, orphan, 5';

  it('attaches processes by uuid, flags ours, counts used memory minus ours as external', () => {
    const info = parseNvidiaSmi(gpus, apps, new Set([100]), AT);
    expect(info.available).toBe(true);
    expect(info.count).toBe(2);
    expect(info.error).toBeUndefined();
    expect(info.probedAt).toBe(AT);
    const [a, b] = info.devices as [GpuDevice, GpuDevice];
    expect(a).toEqual({
      id: 0,
      uuid: 'GPU-a',
      name: 'NVIDIA GeForce RTX 3060',
      memoryGb: 12,
      memoryUsedGb: 2.9,
      utilization: 40,
      processes: [
        { pid: 100, name: '/srv/trainer/python', memoryUsedGb: 1.5, ours: true },
        { pid: 200, name: 'python3', memoryUsedGb: 0.9, ours: false },
        { pid: 300, name: 'Xorg', memoryUsedGb: 0.1, ours: false },
      ],
      externalMemoryGb: 1.5, // 3000 MiB used − 1500 ours: python3, Xorg and what nvidia-smi does not list
      memoryMb: 12288,
      externalMemoryMb: 1500,
      migMode: false,
      instances: [],
    });
    expect(b).toMatchObject({ id: 1, memoryGb: 15, utilization: null, processes: [], externalMemoryGb: 0, externalMemoryMb: 0 });
    expect(info.recommendation).toBe(
      '2 GPUs, 27GB in total; each task uses one GPU: Tesla T4 (15GB): Qwen 2.5 Coder 3B recommended, or 1.5B for faster training',
    );
  });

  it('exactly 12 GB (12288 MiB) gets the 3B tier', () => {
    const info = buildGpuInfo(parseGpuCsv('0, GPU-a, NVIDIA GeForce RTX 3060, 12288, 0, 0, [N/A]'), [], new Set(), AT);
    expect(info.devices[0]!.memoryGb).toBe(12);
    expect(info.recommendation).toBe('NVIDIA GeForce RTX 3060 (12GB): Qwen 2.5 Coder 3B recommended, or 1.5B for faster training');
  });

  it('sorts devices by index', () => {
    const info = buildGpuInfo(parseGpuCsv('1, GPU-b, B, 1024, 0, 0, [N/A]\n0, GPU-a, A, 2048, 0, 0, [N/A]'), [], new Set(), AT);
    expect(info.devices.map((d) => d.id)).toEqual([0, 1]);
  });

  it('no GPUs → unavailable', () => {
    const info = parseNvidiaSmi('', '', new Set(), AT);
    expect(info).toMatchObject({ available: false, count: 0, devices: [], error: 'nvidia-smi reported no GPUs' });
    expect(info.recommendation).toMatch(/^No NVIDIA GPU detected \(nvidia-smi reported no GPUs\)\. GPU trainers cannot run without one/);
  });

  it('garbage GPU output → unavailable, says it could not be parsed', () => {
    const info = parseNvidiaSmi('lorem ipsum\ndolor', '', new Set(), AT);
    expect(info.available).toBe(false);
    expect(info.devices).toEqual([]);
    expect(info.recommendation).toContain('nvidia-smi output could not be parsed');
    expect(info.error).toMatch(/^nvidia-smi output could not be parsed: line 1: expected 7 fields, got 1/);
  });

  it('garbage or missing process list keeps the GPUs, with an error', () => {
    const garbled = parseNvidiaSmi(gpus, 'lorem ipsum', new Set(), AT);
    expect(garbled.available).toBe(true);
    expect(garbled.devices[0]!.processes).toEqual([]);
    expect(garbled.error).toMatch(/^GPU process list unavailable \(output could not be parsed/);
    const missing = parseNvidiaSmi(gpus, null, new Set(), AT, 'nvidia-smi timed out after 5000ms');
    expect(missing.available).toBe(true);
    expect(missing.error).toBe('GPU process list unavailable (nvidia-smi timed out after 5000ms)');
  });

  it('external memory is never less than what listed foreign processes use (used memory unavailable)', () => {
    const info = parseNvidiaSmi('0, GPU-a, RTX, 12288, [N/A], 3, [N/A]', 'GPU-a, 7, python3, 2048\nGPU-a, 8, ours, 1024', new Set([8]), AT);
    expect(info.devices[0]!.externalMemoryMb).toBe(2048);
  });

  it('externalShare', () => {
    expect(externalShare({ memoryGb: 12, externalMemoryGb: 3 })).toBe(0.25);
    expect(externalShare({ memoryGb: 12, externalMemoryGb: 0 })).toBe(0);
    expect(externalShare({ memoryGb: 0, externalMemoryGb: 1 })).toBe(0);
  });
});

describe('describeFailure', () => {
  it('says what happened and what to do', () => {
    expect(describeFailure({ kind: 'not-found', command: 'nvidia-smi', onPath: true }).recommendation).toBe(
      'No NVIDIA GPU detected (nvidia-smi not found on PATH). GPU trainers cannot run without one (the simulated trainer can); install the NVIDIA driver or check PATH.',
    );
    expect(describeFailure({ kind: 'not-found', command: '/opt/nv/nvidia-smi', onPath: false }).recommendation).toContain(
      'nvidia-smi not found at /opt/nv/nvidia-smi',
    );
    const exit = describeFailure({ kind: 'exit', code: 9, signal: null, output: '\nNVIDIA-SMI has failed\nsecond line' });
    expect(exit.error).toBe('nvidia-smi exited with code 9: NVIDIA-SMI has failed');
    expect(exit.recommendation).toContain('check that the NVIDIA driver is installed and loaded');
    expect(describeFailure({ kind: 'exit', code: null, signal: 'SIGSEGV', output: '' }).error).toBe('nvidia-smi was killed by SIGSEGV');
    expect(describeFailure({ kind: 'timeout', timeoutMs: 5000 }).recommendation).toContain('did not answer within 5s');
  });
});

// ---------------------------------------------------------------------------------------------
// MIG: `nvidia-smi -L` and `nvidia-smi -q -x`, as a driver prints them (cut to the parts read).

const A100 = 'GPU-5e91b2d7-3a48-c6f0-7d15-9e2c0b4a86f1';
const MIG_GPUS_CSV = `0, GPU-2f6c, NVIDIA A100 80GB PCIe, 81920, 4, 0, Disabled\n1, ${A100}, NVIDIA A100 80GB PCIe, 81920, 12241, [N/A], Enabled\n`;
const MIG_APPS_CSV = `${A100}, 48213, /opt/venvs/vllm/bin/python3, [N/A]\n${A100}, 7001, /srv/trainyard/python, [N/A]\n`;
const MIG_LIST = `GPU 0: NVIDIA A100 80GB PCIe (UUID: GPU-2f6c)
GPU 1: NVIDIA A100 80GB PCIe (UUID: ${A100})
  MIG 3g.40gb     Device  0: (UUID: MIG-7d0c)
  MIG 1g.10gb     Device  1: (UUID: MIG-a3e8)
  MIG 1g.10gb     Device  2: (UUID: MIG-1b6f)
`;
const migDevice = (index: number, gi: number, total: number, used: number) =>
  `<mig_device><index>${index}</index><gpu_instance_id>${gi}</gpu_instance_id><compute_instance_id>0</compute_instance_id>` +
  `<device_attributes><shared><multiprocessor_count>14</multiprocessor_count></shared></device_attributes>` +
  `<fb_memory_usage><total>${total} MiB</total><reserved>0 MiB</reserved><used>${used} MiB</used><free>${total - used} MiB</free></fb_memory_usage></mig_device>`;
const proc = (gi: string, pid: number, name: string, used: string) =>
  `<process_info><gpu_instance_id>${gi}</gpu_instance_id><compute_instance_id>${gi === 'N/A' ? 'N/A' : 0}</compute_instance_id>` +
  `<pid>${pid}</pid><type>C</type><process_name>${name}</process_name><used_memory>${used}</used_memory></process_info>`;
const migXml = (processes: string, devices = migDevice(0, 2, 40192, 12213) + migDevice(1, 9, 9728, 13) + migDevice(2, 10, 9728, 2061)) =>
  `<?xml version="1.0" ?>
<!DOCTYPE nvidia_smi_log SYSTEM "nvsmi_device_v12.dtd">
<nvidia_smi_log>
  <driver_version>535.161.08</driver_version>
  <gpu id="00000000:17:00.0"><uuid>GPU-2f6c</uuid><mig_mode><current_mig>Disabled</current_mig></mig_mode>
    <mig_devices>
      None
    </mig_devices><processes></processes></gpu>
  <gpu id="00000000:CA:00.0"><uuid>${A100}</uuid><mig_mode><current_mig>Enabled</current_mig></mig_mode>
    <mig_devices>${devices}</mig_devices>
    <fb_memory_usage><total>81920 MiB</total><used>12241 MiB</used></fb_memory_usage>
    <processes>${processes}</processes></gpu>
</nvidia_smi_log>
`;

describe('parseMigList', () => {
  it('reads GPUs and their MIG devices, with +me profiles and the R450 UUID form', () => {
    const text = `${MIG_LIST}GPU 2: NVIDIA A100-SXM4-40GB (UUID: GPU-9f1e)\n  MIG 1g.10gb+me  Device  0: (UUID: MIG-GPU-9f1e/7/0)\n`;
    expect(parseMigList(text)).toEqual([
      { index: 0, name: 'NVIDIA A100 80GB PCIe', uuid: 'GPU-2f6c', instances: [] },
      {
        index: 1,
        name: 'NVIDIA A100 80GB PCIe',
        uuid: A100,
        instances: [
          { index: 0, profile: '3g.40gb', uuid: 'MIG-7d0c' },
          { index: 1, profile: '1g.10gb', uuid: 'MIG-a3e8' },
          { index: 2, profile: '1g.10gb', uuid: 'MIG-1b6f' },
        ],
      },
      {
        index: 2,
        name: 'NVIDIA A100-SXM4-40GB',
        uuid: 'GPU-9f1e',
        instances: [{ index: 0, profile: '1g.10gb+me', uuid: 'MIG-GPU-9f1e/7/0' }],
      },
    ]);
  });

  it.each([
    ['random text', 'Segmentation fault (core dumped)', /line 1: not a GPU or MIG device line/],
    ['a MIG device before any GPU', '  MIG 1g.10gb     Device  0: (UUID: MIG-a)', /line 1: a MIG device before any GPU/],
    ['a MIG line without a UUID', 'GPU 0: A100 (UUID: GPU-a)\n  MIG 1g.10gb Device 0:', /line 2: not a GPU or MIG device line/],
  ])('throws on garbage: %s', (_what, text, message) => {
    expect(() => parseMigList(text)).toThrow(NvidiaSmiParseError);
    expect(() => parseMigList(text)).toThrow(message);
  });
});

describe('parseMigQueryXml', () => {
  it('reads each GPU by uuid: MIG devices with memory, processes with their instance ids', () => {
    const gpus = parseMigQueryXml(migXml(proc('2', 48213, 'a &amp; b', 'N/A') + proc('10', 7001, '12345', '2048 MiB')));
    expect(gpus).toEqual([
      { uuid: 'GPU-2f6c', migDevices: [], processes: [] },
      {
        uuid: A100,
        migDevices: [
          { index: 0, gpuInstanceId: 2, computeInstanceId: 0, memoryTotalMiB: 40192, memoryUsedMiB: 12213 },
          { index: 1, gpuInstanceId: 9, computeInstanceId: 0, memoryTotalMiB: 9728, memoryUsedMiB: 13 },
          { index: 2, gpuInstanceId: 10, computeInstanceId: 0, memoryTotalMiB: 9728, memoryUsedMiB: 2061 },
        ],
        processes: [
          { pid: 48213, name: 'a & b', gpuInstanceId: 2, computeInstanceId: 0, usedMemoryMiB: null },
          // A name that looks like a number stays the name.
          { pid: 7001, name: '12345', gpuInstanceId: 10, computeInstanceId: 0, usedMemoryMiB: 2048 },
        ],
      },
    ]);
  });

  it.each([
    ['not XML', 'lorem ipsum', /^nvidia-smi -q -x: not XML: line 1/],
    ['cut off', migXml('').slice(0, 200), /^nvidia-smi -q -x: not XML/],
    [
      'memory with no unit',
      migXml('', migDevice(0, 2, 40192, 1).replace('40192 MiB', 'lots')),
      /mig_devices\.mig_device\[0\]\.fb_memory_usage\.total: expected "<n> MiB", got "lots"/,
    ],
    [
      'a pid that is not a number',
      migXml(proc('2', 1, 'x', 'N/A').replace('<pid>1</pid>', '<pid>one</pid>')),
      /processes\.process_info\[0\]\.pid: expected a whole number/,
    ],
    ['a GPU without its uuid', '<nvidia_smi_log><gpu><product_name>A100</product_name></gpu></nvidia_smi_log>', /gpu\[0\]\.uuid/],
  ])('throws on garbage: %s', (_what, text, message) => {
    expect(() => parseMigQueryXml(text)).toThrow(NvidiaSmiParseError);
    expect(() => parseMigQueryXml(text)).toThrow(message);
  });
});

describe('parseNvidiaSmi with a GPU in MIG mode', () => {
  const ours = new Set([7001]);
  const parse = (xml: string, list = MIG_LIST) =>
    parseNvidiaSmi(MIG_GPUS_CSV, MIG_APPS_CSV, ours, AT, undefined, { listText: list, queryText: xml });

  it('shows the instances under their GPU: profile, UUID, memory total and used', () => {
    const info = parse(migXml(proc('2', 48213, '/opt/venvs/vllm/bin/python3', 'N/A')));
    expect(info.error).toBeUndefined();
    const [whole, mig] = info.devices as [GpuDevice, GpuDevice];
    expect(whole).toMatchObject({ id: 0, migMode: false, instances: [] });
    expect(mig).toMatchObject({ id: 1, migMode: true, memoryMb: 81920 });
    expect(mig.instances.map((i) => [i.id, i.profile, i.uuid, i.memoryMb, i.memoryGb, i.memoryUsedGb])).toEqual([
      [0, '3g.40gb', 'MIG-7d0c', 40192, 39.3, 11.9],
      [1, '1g.10gb', 'MIG-a3e8', 9728, 9.5, 0],
      [2, '1g.10gb', 'MIG-1b6f', 9728, 9.5, 2],
    ]);
    expect(mig.instances[0]!.processes).toEqual([{ pid: 48213, name: '/opt/venvs/vllm/bin/python3', memoryUsedGb: 0, ours: false }]);
  });

  it('[N/A] process memory: our share is unknown, so all of the used memory counts as external', () => {
    const info = parse(migXml(proc('2', 48213, 'vllm', 'N/A') + proc('10', 7001, 'trainer', 'N/A')));
    const inst = info.devices[1]!.instances;
    expect(inst.map((i) => i.externalMemoryMb)).toEqual([12213, 13, 2061]);
    expect(inst[2]!.processes).toEqual([{ pid: 7001, name: 'trainer', memoryUsedGb: 0, ours: true }]);
    // The GPU's own figure is its instances' sum.
    expect(info.devices[1]!.externalMemoryMb).toBe(12213 + 13 + 2061);
  });

  it('a known figure for our process is taken off the used memory', () => {
    const info = parse(migXml(proc('2', 48213, 'vllm', '12180 MiB') + proc('10', 7001, 'trainer', '2048 MiB')));
    expect(info.devices[1]!.instances.map((i) => i.externalMemoryMb)).toEqual([12213, 13, 13]);
    expect(info.devices[1]!.externalMemoryGb).toBe(12.0);
  });

  it('a broken MIG answer keeps the GPUs: the MIG GPU without instances, and error says why', () => {
    for (const [list, xml] of [
      ['Segmentation fault', migXml('')],
      [MIG_LIST, '<nvidia_smi_log><gpu>'],
    ] as const) {
      const info = parse(xml, list);
      expect(info.available).toBe(true);
      expect(info.count).toBe(2);
      expect(info.devices[1]).toMatchObject({ migMode: true, instances: [] });
      // Without its instances' figures the GPU's external memory is its used memory minus ours (unknown: [N/A]).
      expect(info.devices[1]!.externalMemoryMb).toBe(12241);
      expect(info.error).toMatch(/^MIG instances unavailable \(output could not be parsed: nvidia-smi -(L line 1|q -x: not XML)/);
    }
  });

  it('a MIG query that failed keeps the GPUs, and a process-list failure is reported beside it', () => {
    const info = parseNvidiaSmi(MIG_GPUS_CSV, null, ours, AT, 'nvidia-smi timed out after 5000ms', {
      error: 'nvidia-smi exited with code 2: unknown option',
    });
    expect(info.available).toBe(true);
    expect(info.devices[1]!.instances).toEqual([]);
    expect(info.error).toBe(
      'GPU process list unavailable (nvidia-smi timed out after 5000ms); MIG instances unavailable (nvidia-smi exited with code 2: unknown option)',
    );
  });

  it('answers that disagree: what can be joined is kept, the rest is named', () => {
    const devices = migDevice(0, 2, 40192, 12213) + migDevice(2, 10, 9728, 13) + migDevice(5, 13, 9728, 13);
    const info = parse(migXml('', devices));
    expect(info.devices[1]!.instances.map((i) => i.id)).toEqual([0, 2]);
    expect(info.error).toBe(
      'MIG instances incomplete: GPU 1 MIG device 1 (1g.10gb) has no memory figures in nvidia-smi -q -x; GPU 1 MIG device 5 has no UUID in nvidia-smi -L',
    );
  });

  it('without MIG answers (not asked) a MIG GPU has no instances and no error', () => {
    const info = parseNvidiaSmi(MIG_GPUS_CSV, '', ours, AT);
    expect(info.devices[1]).toMatchObject({ migMode: true, instances: [] });
    expect(info.error).toBeUndefined();
  });
});

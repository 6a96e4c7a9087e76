import { describe, expect, it } from 'vitest';
import {
  decideDeployment,
  defaultGpuMemoryUtilization,
  deploymentHolds,
  DeploymentCommandError,
  deploymentStateFromRecord,
  deploymentStatusOf,
  evolveDeployment,
  foldDeployment,
  initialDeploymentState,
  restartsCounted,
  toDeploymentRecord,
  type DeploymentCommand,
  type DeploymentSpec,
  type DeploymentState,
  type NewDeploymentEvent,
  type StoredDeploymentEvent,
} from '.';

const ID = 'dep-a1';
const T0 = Date.parse('2026-01-01T00:00:00Z');
const spec = (over: Partial<DeploymentSpec> = {}): DeploymentSpec => ({
  model: 'Qwen/Qwen2.5-0.5B-Instruct',
  taskId: 'task-1',
  adapters: [{ name: 'task-1', path: '/out/task-1/adapter', taskId: 'task-1' }],
  gpus: 1,
  gpuMemoryUtilization: 0.3,
  maxModelLen: null,
  port: null,
  onTrainingDemand: 'sleep',
  ...over,
});
const server = { pid: 4242, startTime: '99', runDir: '/runs/dep-a1', port: 18001, devices: [0] };

/** Stores decided events as the log would, one version and one second apart. */
function apply(state: DeploymentState, events: NewDeploymentEvent[]): DeploymentState {
  return events.reduce((s, e, i) => {
    const version = s.version + 1;
    const stored = {
      ...e,
      streamId: ID,
      version,
      position: String(version),
      recordedAt: new Date(T0 + (version + i * 0) * 1000).toISOString(),
    };
    return evolveDeployment(s, stored as StoredDeploymentEvent);
  }, state);
}
/** Given these commands have happened … */
const given = (...commands: DeploymentCommand[]): DeploymentState =>
  commands.reduce((s, c) => apply(s, decideDeployment(s, c, ID)), initialDeploymentState());
const when = (state: DeploymentState, command: DeploymentCommand) => decideDeployment(state, command, ID);

const create: DeploymentCommand = { type: 'create', deploymentId: ID, spec: spec() };
const hold = { deviceId: 'gpu0', gpuIndex: 0, uuid: null, memoryMb: 24_576 };
const place: DeploymentCommand = { type: 'place', devices: [hold] };
const launch: DeploymentCommand = { type: 'recordLaunch', server };
const serve: DeploymentCommand = {
  type: 'markServing',
  endpoint: 'http://127.0.0.1:18001/v1',
  servedModels: ['Qwen/Qwen2.5-0.5B-Instruct', 'task-1'],
};

describe('deployment lifecycle', () => {
  it('given nothing, when created, then it is STARTING with its spec', () => {
    const s = given(create);
    expect(deploymentStatusOf(s)).toBe('STARTING');
    expect(toDeploymentRecord(s)).toMatchObject({ id: ID, spec: spec(), server: null, endpoint: null, version: 1 });
  });

  it('given a stream id without the dep- prefix, when created, then it is refused', () => {
    expect(() => decideDeployment(initialDeploymentState(), create, 'task-1')).toThrow(/starts with dep-/);
  });

  it('given STARTING and launched, when health is confirmed, then it is SERVING with its endpoint and served models', () => {
    const s = given(create, place, launch, serve);
    const r = toDeploymentRecord(s);
    expect(r.status).toBe('SERVING');
    expect(r.endpoint).toBe('http://127.0.0.1:18001/v1');
    expect(r.servedModels).toEqual(['Qwen/Qwen2.5-0.5B-Instruct', 'task-1']);
    expect(r.server).toEqual(server);
    expect(r.servingAt).not.toBeNull();
  });

  it('given STARTING but not launched, when marked serving, then it is refused naming why', () => {
    expect(() => when(given(create), serve)).toThrow(/its server has not been launched/);
  });

  it('given launched once, when launched again, then it is refused', () => {
    expect(() => when(given(create, place, launch), launch)).toThrow(DeploymentCommandError);
  });

  it('given SERVING, when it sleeps and wakes, then SERVING ⇄ SLEEPING', () => {
    const asleep = given(create, place, launch, serve, { type: 'recordSleep', level: 1 });
    expect(deploymentStatusOf(asleep)).toBe('SLEEPING');
    expect(() => when(asleep, { type: 'recordSleep', level: 1 })).toThrow(/not allowed while it is SLEEPING/);
    const awake = apply(asleep, when(asleep, { type: 'recordWake' }));
    expect(deploymentStatusOf(awake)).toBe('SERVING');
  });

  it('given STARTING, when asked to sleep, then it is refused', () => {
    expect(() => when(given(create, place, launch), { type: 'recordSleep', level: 1 })).toThrow(
      /cannot recordSleep deployment dep-a1: it is STARTING/,
    );
  });

  it('given SERVING, when stopped, then a stop is requested and its exit makes it STOPPED (not FAILED), without an endpoint', () => {
    const stopping = given(create, place, launch, serve, { type: 'stop', reason: 'asked by operator' });
    expect(deploymentStatusOf(stopping)).toBe('SERVING');
    expect(toDeploymentRecord(stopping).stopReason).toBe('asked by operator');
    expect(() => when(stopping, { type: 'stop', reason: 'again' })).toThrow(/a stop was already requested/);
    const done = apply(stopping, when(stopping, { type: 'recordExit', exitCode: 0, signal: null }));
    const r = toDeploymentRecord(done);
    expect(r.status).toBe('STOPPED');
    expect(r.endpoint).toBeNull();
    expect(r.finishedAt).not.toBeNull();
  });

  it('given STARTING and never launched, when stopped, then it is STOPPED at once', () => {
    const events = when(given(create), { type: 'stop', reason: 'x' });
    expect(events.map((e) => e.type)).toEqual(['DeploymentStopped']);
  });

  it('given SERVING and no stop asked, when its server exits, then it is started again (STARTING, unplaced), and FAILED once restarts run out', () => {
    const died: DeploymentCommand = { type: 'recordExit', exitCode: null, signal: 'SIGKILL', detail: 'out of memory' };
    const once = given(create, place, launch, serve, died);
    expect(toDeploymentRecord(once)).toMatchObject({
      status: 'STARTING',
      server: null,
      holding: false,
      devices: [],
      restarts: 1,
      endpoint: null,
    });
    expect(toDeploymentRecord(once).error).toMatch(/ended on its own \(signal SIGKILL\): out of memory; started again \(1 of 2\)/);
    const twice = given(create, place, launch, serve, died, place, launch, died);
    expect(toDeploymentRecord(twice)).toMatchObject({ status: 'STARTING', restarts: 2 });
    const last = given(create, place, launch, serve, died, place, launch, died, place, launch, died);
    const r = toDeploymentRecord(last);
    expect(r.status).toBe('FAILED');
    expect(r.error).toBe('the vLLM server ended on its own (signal SIGKILL): out of memory, after 2 restart(s)');
    expect(r.signal).toBe('SIGKILL');
    expect(r.holding).toBe(false);
  });

  describe('adapters on a running deployment', () => {
    const extra = { name: 'task-2', path: '/out/task-2/adapter', taskId: 'task-2' };
    it('given SERVING with LoRA, when an adapter is added, then it is served and kept in the spec (a restart serves it too); removed, it is gone', () => {
      const s = given(create, place, launch, serve);
      const added = apply(s, when(s, { type: 'addAdapter', adapter: extra }));
      expect(toDeploymentRecord(added).spec.adapters.map((a) => a.name)).toEqual(['task-1', 'task-2']);
      expect(toDeploymentRecord(added).servedModels).toContain('task-2');
      expect(() => when(added, { type: 'addAdapter', adapter: extra })).toThrow(/already serves task-2/);
      const removed = apply(added, when(added, { type: 'removeAdapter', name: 'task-2' }));
      expect(toDeploymentRecord(removed).spec.adapters.map((a) => a.name)).toEqual(['task-1']);
      expect(toDeploymentRecord(removed).servedModels).not.toContain('task-2');
      expect(() => when(removed, { type: 'removeAdapter', name: 'task-2' })).toThrow(/serves no adapter named task-2/);
    });
    it('given not SERVING, or started without LoRA, when an adapter is added, then it is refused saying why', () => {
      const asleep = given(create, place, launch, serve, { type: 'recordSleep', level: 1 });
      expect(() => when(asleep, { type: 'addAdapter', adapter: extra })).toThrow(/not allowed while it is SLEEPING/);
      const plain = given({ ...create, spec: spec({ taskId: null, adapters: [] }) } as DeploymentCommand, place, launch, serve);
      expect(() => when(plain, { type: 'addAdapter', adapter: extra })).toThrow(/started without LoRA/);
    });
  });

  describe('restart budget back after serving stably', () => {
    const STABLE = 7 * 24 * 3600_000;
    const died = (now?: string): DeploymentCommand => ({
      type: 'recordExit',
      exitCode: null,
      signal: 'SIGKILL',
      ...(now ? { now, stableMs: STABLE } : {}),
    });
    // Died twice, started again, and serving since its third start.
    const servingAgain = () => given(create, place, launch, serve, died(), place, launch, died(), place, launch, serve);
    const at = (state: DeploymentState, ms: number) => new Date(Date.parse(toDeploymentRecord(state).servingAt!) + ms).toISOString();

    it('given restarts used up and serving for the stable time, when its server dies, then it is started again, counted as the first of a fresh budget', () => {
      const s = servingAgain();
      expect(toDeploymentRecord(s)).toMatchObject({ status: 'SERVING', restarts: 2 });
      const r = toDeploymentRecord(apply(s, when(s, died(at(s, STABLE)))));
      expect(r).toMatchObject({ status: 'STARTING', restarts: 1 });
      expect(r.error).toMatch(/started again \(1 of 2 after serving stably since .*, its restart budget back\)/);
    });

    it('given restarts used up and serving for less than the stable time, when its server dies, then it is FAILED', () => {
      const s = servingAgain();
      expect(toDeploymentRecord(apply(s, when(s, died(at(s, STABLE - 1)))))).toMatchObject({ status: 'FAILED', restarts: 2 });
    });

    it('given asleep for training since long, when its server dies, then the time asleep counts as stable', () => {
      const s = given(create, place, launch, serve, died(), place, launch, died(), place, launch, serve, { type: 'recordSleep', level: 1 });
      expect(toDeploymentRecord(apply(s, when(s, died(at(s, STABLE + 60_000)))))).toMatchObject({ status: 'STARTING', restarts: 1 });
    });

    it('given restarted and not serving again yet, when its server dies long after it last served, then the restart counts (no budget back)', () => {
      const s = given(create, place, launch, serve, died(), place, launch);
      expect(toDeploymentRecord(apply(s, when(s, died(at(s, 10 * STABLE)))))).toMatchObject({ status: 'STARTING', restarts: 2 });
    });

    it('restartsCounted: none once served stably, else those used; no stable time configured keeps the count', () => {
      const r = { restarts: 2, status: 'SERVING' as const, servingAt: '2026-01-01T00:00:00.000Z' };
      expect(restartsCounted(r, '2026-01-08T00:00:00.000Z', STABLE)).toBe(0);
      expect(restartsCounted(r, '2026-01-07T23:59:59.999Z', STABLE)).toBe(2);
      expect(restartsCounted(r, '2026-02-01T00:00:00.000Z', undefined)).toBe(2);
      expect(restartsCounted({ ...r, status: 'STARTING' }, '2026-02-01T00:00:00.000Z', STABLE)).toBe(2);
      expect(restartsCounted({ ...r, servingAt: null }, '2026-02-01T00:00:00.000Z', STABLE)).toBe(2);
    });
  });

  it('given SLEEPING and restarts used up, when its server exits, then it is FAILED', () => {
    const died: DeploymentCommand = { type: 'recordExit', exitCode: 1, signal: null };
    const s = given(create, place, launch, died, place, launch, died, place, launch, serve, { type: 'recordSleep', level: 1 }, died);
    expect(toDeploymentRecord(s)).toMatchObject({ status: 'FAILED', exitCode: 1 });
  });

  it('given placed, then it holds its devices; asleep, its memory is released only when observed, taken back before it wakes', () => {
    const asleep = given(
      create,
      place,
      launch,
      serve,
      { type: 'yield', yielding: { mode: 'sleep', forTaskId: 't1', message: 'for t1' } },
      { type: 'recordSleep', level: 1 },
    );
    expect(deploymentHolds(toDeploymentRecord(asleep))).toEqual([hold]);
    expect(() => when(asleep, { type: 'reclaim' })).toThrow(/its memory is still held/);
    const released = given(
      create,
      place,
      launch,
      serve,
      { type: 'recordSleep', level: 1 },
      { type: 'recordRelease', observed: 'nvidia-smi: gpu0 0.5 GB' },
    );
    expect(deploymentHolds(toDeploymentRecord(released))).toEqual([]);
    expect(() => when(released, { type: 'recordWake' })).toThrow(/its memory is not held/);
    const back = apply(released, when(released, { type: 'reclaim' }));
    expect(deploymentHolds(toDeploymentRecord(back))).toEqual([hold]);
    expect(toDeploymentRecord(apply(back, when(back, { type: 'recordWake' })))).toMatchObject({ status: 'SERVING', yielding: null });
  });

  it('given stopped for training (yield stop), when its server exits, then it is STARTING again without devices, not FAILED and not counted as a restart', () => {
    const yielded = given(create, place, launch, serve, {
      type: 'yield',
      yielding: { mode: 'stop', forTaskId: 't1', message: 'stopped for t1' },
    });
    expect(() => when(yielded, { type: 'yield', yielding: { mode: 'stop', forTaskId: 't2', message: '' } })).toThrow(
      /already stopping or giving way/,
    );
    const r = toDeploymentRecord(apply(yielded, when(yielded, { type: 'recordExit', exitCode: 0, signal: null })));
    expect(r).toMatchObject({ status: 'STARTING', restarts: 0, holding: false, yielding: { forTaskId: 't1' } });
    expect(deploymentHolds(r)).toEqual([]);
  });

  it('given an ended deployment, then it holds nothing', () => {
    const s = given(create, place, launch, serve, { type: 'stop', reason: 'x' }, { type: 'recordExit', exitCode: 0, signal: null });
    expect(deploymentHolds(toDeploymentRecord(s))).toEqual([]);
  });

  it('given STARTING unplaced, when launched, then it is refused (it must be placed first)', () => {
    expect(() => when(given(create), launch)).toThrow(/not placed on devices/);
  });

  it('given STARTING, when health never comes, then fail makes it FAILED with the message', () => {
    const s = given(create, place, launch, { type: 'fail', message: '/health did not answer within 600 s' });
    expect(toDeploymentRecord(s)).toMatchObject({ status: 'FAILED', error: '/health did not answer within 600 s' });
  });

  it('given an ended deployment, when deleted, then it is marked deleted once; a live one cannot be deleted', () => {
    expect(() => when(given(create, place, launch, serve), { type: 'delete' })).toThrow(/not allowed while it is SERVING/);
    const gone = given(create, { type: 'stop', reason: 'x' }, { type: 'delete' });
    expect(toDeploymentRecord(gone).deleted).toBe(true);
    expect(() => when(gone, { type: 'delete' })).toThrow(/already deleted/);
  });

  it('given an ended deployment, when it would serve, sleep or fail again, then each is refused', () => {
    const stopped = given(create, { type: 'stop', reason: 'x' });
    for (const c of [serve, launch, { type: 'recordSleep', level: 1 }, { type: 'fail', message: 'x' }] as DeploymentCommand[]) {
      expect(() => when(stopped, c)).toThrow(DeploymentCommandError);
    }
  });

  it('given no events, when any command but create, then it does not exist', () => {
    expect(() => when(initialDeploymentState(), launch)).toThrow(/deployment dep-a1 does not exist/);
  });

  it('a record read back gives the same decisions as the fold it came from', () => {
    const s = given(create, place, launch, serve);
    const back = deploymentStateFromRecord(toDeploymentRecord(s));
    expect(toDeploymentRecord(back)).toEqual(toDeploymentRecord(s));
    expect(when(back, { type: 'recordSleep', level: 1 })).toEqual(when(s, { type: 'recordSleep', level: 1 }));
  });

  it('folding a stored log is the same as applying decisions', () => {
    const log: StoredDeploymentEvent[] = [];
    let s = initialDeploymentState();
    for (const c of [create, place, launch, serve]) {
      for (const e of decideDeployment(s, c, ID)) {
        const stored = {
          ...e,
          streamId: ID,
          version: log.length + 1,
          position: String(log.length + 1),
          recordedAt: new Date(T0).toISOString(),
        } as StoredDeploymentEvent;
        log.push(stored);
        s = evolveDeployment(s, stored);
      }
    }
    expect(toDeploymentRecord(foldDeployment(log))).toEqual(toDeploymentRecord(s));
    expect(() => foldDeployment([log[0]!, log[3]!])).toThrow(/not legal in state STARTING/);
  });
});

describe('defaultGpuMemoryUtilization', () => {
  it('follows the table by model size', () => {
    expect(defaultGpuMemoryUtilization(0.5)).toBe(0.3);
    expect(defaultGpuMemoryUtilization(1.5)).toBe(0.55);
    expect(defaultGpuMemoryUtilization(3)).toBe(0.55);
    expect(defaultGpuMemoryUtilization(7)).toBe(0.85);
    expect(defaultGpuMemoryUtilization(null)).toBe(0.8);
  });
});

// Deployments and training in virtual time, with the real pure decisions: tasks placed by the
// scheduling policy, deployments placed by placeDeployment, made to give way by arbitrate, their
// memory counted free by memoryReleased on what a simulated nvidia-smi shows, and woken or placed
// again by arbitrate (reclaimFits, placeDeployment). vLLM takes a random number of steps to
// really free its memory after /sleep (or to exit after a stop).
//
// Invariant `device-memory`, after every step: on each device, what training tasks were promised
// (an exclusive task: the whole device) plus the memory each deployment still really holds (from
// placement until its release is observed by nvidia-smi, not merely asked for) never exceeds what
// the device has. `releaseOnSleep` plants a bug: a sleeping deployment counted free as soon as
// vLLM says it sleeps, before the memory is seen released.
import {
  arbitrate,
  backfillPolicy,
  memoryReleased,
  placeDeployment,
  reclaimFits,
  uniformInventory,
  type DeploymentHold,
  type DeploymentView,
  type DeviceHolder,
  type DeviceView,
  type QueuedTaskView,
} from '@trainyard/domain';
import { Prng } from './prng';

export interface DeploymentSimOptions {
  seed: number;
  steps?: number;
  gpus?: number;
  /** Planted bug: count a sleeping deployment's memory free without observing its release. */
  releaseOnSleep?: boolean;
}

interface DeploymentSimViolation {
  invariant: 'device-memory';
  step: number;
  message: string;
}

export interface DeploymentSimResult {
  violations: DeploymentSimViolation[];
  /** How often deployments slept, were stopped for a task, woke, and tasks ran. */
  counts: { slept: number; stopped: number; woken: number; tasksRun: number; deployments: number };
}

interface SimDeployment extends DeploymentView {
  /** What vLLM really holds on each device now (MiB), and steps until an asked-for release happens. */
  physical: Map<string, number>;
  releaseIn: number | null;
}

interface SimTask {
  view: QueuedTaskView;
  left: number;
  devices: { deviceId: string; memoryMb: number; exclusive: boolean }[];
}

const GB = 1024;
const CONTEXT_MB = 512;

export function simulateDeployments(opts: DeploymentSimOptions): DeploymentSimResult {
  const rng = new Prng(opts.seed);
  const below = (n: number) => Math.floor(rng.next() * n);
  const steps = opts.steps ?? 300;
  const inventory = uniformInventory(opts.gpus ?? 1 + below(2), 80 * GB);
  const deps: SimDeployment[] = [];
  const queue: SimTask[] = [];
  const running: SimTask[] = [];
  const violations: DeploymentSimViolation[] = [];
  const counts = { slept: 0, stopped: 0, woken: 0, tasksRun: 0, deployments: 0 };
  let nextId = 0;

  const views = (): DeviceView[] =>
    inventory.map((d) => {
      const holders: DeviceHolder[] = [];
      for (const t of running)
        for (const g of t.devices)
          if (g.deviceId === d.id) holders.push({ taskId: t.view.taskId, memoryMb: g.memoryMb, exclusive: g.exclusive, endsBy: null });
      for (const x of deps)
        for (const h of x.holds)
          if (h.deviceId === d.id) holders.push({ taskId: x.id, memoryMb: h.memoryMb, exclusive: false, endsBy: null });
      return { ...d, externalMemoryMb: 0, blockedReason: null, holders };
    });
  const hold = (x: SimDeployment, holds: DeploymentHold[]) => {
    x.holds = holds;
    x.placedOn = holds.map((h) => h.deviceId);
    x.physical = new Map(holds.map((h) => [h.deviceId, h.memoryMb]));
  };

  for (let step = 0; step < steps; step++) {
    // Arrivals: training tasks (some urgent, some shared with a memory figure) and deployments.
    if (rng.next() < 0.3) {
      const shared = rng.next() < 0.3;
      queue.push({
        view: {
          taskId: `t${nextId++}`,
          queuedPosition: String(step * 1000 + nextId),
          request: { gpus: 1, memoryMb: shared ? (10 + below(30)) * GB : null, shared },
          timeoutMs: 3_600_000,
          priority: rng.next() < 0.1 ? 20 : 0,
        },
        left: 1 + below(6),
        devices: [],
      });
    }
    if (rng.next() < 0.08 && deps.filter((x) => x.status !== 'STOPPED').length < 3) {
      const want = { gpus: 1, gpuMemoryUtilization: [0.3, 0.55, 0.85][below(3)]! };
      const placed = placeDeployment(views(), want);
      if ('holds' in placed) {
        const x: SimDeployment = {
          id: `dep-${nextId++}`,
          model: 'm',
          status: 'SERVING',
          priority: rng.next() < 0.2 ? 20 : 0,
          onTrainingDemand: (['sleep', 'sleep', 'stop', 'wait'] as const)[below(4)]!,
          ...want,
          launched: true,
          stopping: false,
          holds: [],
          placedOn: [],
          yielding: null,
          physical: new Map(),
          releaseIn: null,
        };
        hold(x, placed.holds);
        deps.push(x);
        counts.deployments++;
      }
    }
    // Tasks end.
    for (const t of [...running]) if (--t.left <= 0) running.splice(running.indexOf(t), 1);
    // vLLM frees memory some steps after it was asked to (sleep keeps a CUDA context; a stop frees all).
    for (const x of deps) {
      if (x.releaseIn === null) continue;
      if (x.releaseIn-- > 0) continue;
      x.releaseIn = null;
      for (const id of x.physical.keys()) x.physical.set(id, x.status === 'SLEEPING' ? CONTEXT_MB : 0);
      if (x.status === 'STARTING') {
        // Its server exited (stopped for training): nothing held, placed again by arbitration.
        x.holds = [];
        x.physical = new Map();
        x.launched = false;
      }
    }
    // nvidia-smi observed: a sleeping deployment's memory counts free once seen released.
    for (const x of deps) {
      if (x.status !== 'SLEEPING' || !x.holds.length) continue;
      const seen = new Map(
        x.holds.map((h) => [h.deviceId, { usedByItMb: x.physical.get(h.deviceId) ?? 0, deviceUsedMb: null, othersMb: 0 }]),
      );
      if (memoryReleased(x.holds, seen).released) x.holds = [];
    }
    // The scheduler places tasks.
    const decision = backfillPolicy.schedule({ devices: views(), queue: queue.map((t) => t.view), now: step });
    for (const a of decision.assignments) {
      const t = queue.find((q) => q.view.taskId === a.taskId)!;
      queue.splice(queue.indexOf(t), 1);
      t.devices = a.devices.map((g) => ({ deviceId: g.deviceId, memoryMb: g.memoryMb, exclusive: g.exclusive }));
      running.push(t);
      counts.tasksRun++;
    }
    // Deployments and training arbitrated.
    const live = deps.filter((x) => x.status !== 'STOPPED');
    const arb = arbitrate({ devices: views(), queue: queue.map((t) => t.view), deployments: live, now: step });
    for (const y of arb.yields) {
      const x = live.find((d) => d.id === y.deploymentId)!;
      x.yielding = y.yielding;
      x.releaseIn = below(4);
      if (y.yielding.mode === 'sleep') {
        x.status = 'SLEEPING';
        counts.slept++;
        if (opts.releaseOnSleep) x.holds = [];
      } else {
        x.status = 'STARTING';
        counts.stopped++;
      }
    }
    for (const id of arb.wakes) {
      const x = live.find((d) => d.id === id)!;
      if (!reclaimFits(views(), x, x.placedOn)) continue;
      hold(
        x,
        x.placedOn.map((deviceId) => {
          const d = inventory.find((v) => v.id === deviceId)!;
          return { deviceId, gpuIndex: d.gpuIndex, uuid: null, memoryMb: Math.ceil(x.gpuMemoryUtilization * d.memoryMb) };
        }),
      );
      x.status = 'SERVING';
      x.yielding = null;
      counts.woken++;
    }
    for (const id of arb.places) {
      const x = live.find((d) => d.id === id)!;
      const placed = placeDeployment(views(), x);
      if (!('holds' in placed)) continue;
      hold(x, placed.holds);
      x.launched = true;
      x.status = 'SERVING';
      x.yielding = null;
    }
    // Now and then a deployment is stopped for good.
    if (live.length && rng.next() < 0.02) {
      const x = live[below(live.length)]!;
      x.status = 'STOPPED';
      x.holds = [];
      x.physical = new Map();
    }
    checkDeviceMemory(step, inventory, running, deps, violations);
  }
  return { violations, counts };
}

function checkDeviceMemory(
  step: number,
  inventory: readonly { id: string; memoryMb: number }[],
  running: readonly SimTask[],
  deps: readonly SimDeployment[],
  out: DeploymentSimViolation[],
): void {
  for (const d of inventory) {
    let tasks = 0;
    for (const t of running) for (const g of t.devices) if (g.deviceId === d.id) tasks += g.exclusive ? d.memoryMb : g.memoryMb;
    // A deployment counts with all it was placed with while vLLM really holds more than its context.
    let held = 0;
    const who: string[] = [];
    for (const x of deps) {
      const mb = x.physical.get(d.id) ?? 0;
      if (mb > CONTEXT_MB) {
        held += mb;
        who.push(`${x.id} ${x.status} ${mb} MiB`);
      }
    }
    if (tasks + held > d.memoryMb)
      out.push({
        invariant: 'device-memory',
        step,
        message: `${d.id}: ${tasks} MiB promised to tasks + ${held} MiB held by deployments (${who.join(', ')}) > ${d.memoryMb} MiB`,
      });
  }
}

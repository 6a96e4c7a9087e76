// Deployments and training on one pool of GPUs: where a deployment may be placed (its memory,
// gpuMemoryUtilization × the device's, checked against what is free there, through the same
// scheduling policy tasks go through), which deployments give way to which queued training task
// (per deployment: `sleep`, `stop` or `wait`; never to a task of a lower priority), why a task
// held up by a deployment waits (HELD_BY_DEPLOYMENT), when a deployment that gave way takes its
// devices back, and when nvidia-smi shows a sleeping one's memory released. Pure: the service
// carries the answers out (vLLM's /sleep, /wake_up, its process), the store records them.
//
// A deployment's memory is a holder of its devices like a task's (device_holders, with the
// deployment's id): a shared holder of gpuMemoryUtilization × the device's memory. Asleep, it
// still holds it until the release is observed; only then do its devices count as free.
import type { DeploymentHold, DeploymentRecord, DeploymentStatus, TrainingDemandPolicy, DeploymentYield } from './deployment';
import { deploymentHolds } from './deployment';
import { gb, type DeviceView } from './resources';
import {
  backfillPolicy,
  deviceLabel,
  type QueuedTaskView,
  type SchedulingInput,
  type SchedulingPolicy,
  type WaitReason,
} from './scheduling';

/** What arbitration needs of a deployment. */
export interface DeploymentView {
  id: string;
  model: string;
  status: DeploymentStatus;
  priority: number;
  onTrainingDemand: TrainingDemandPolicy;
  gpus: number;
  gpuMemoryUtilization: number;
  /** Its server was launched (a STARTING one without it waits to be placed, or is being launched). */
  launched: boolean;
  /** Stopping for good (a stop was asked for): it gives way to nobody and takes nothing back. */
  stopping: boolean;
  holds: DeploymentHold[];
  /** The devices it was placed on (its server is bound to them), held or not. */
  placedOn: string[];
  yielding: DeploymentYield | null;
}

export function deploymentView(r: DeploymentRecord): DeploymentView {
  return {
    id: r.id,
    model: r.spec.model,
    status: r.status,
    priority: r.spec.priority?.value ?? 0,
    onTrainingDemand: r.spec.onTrainingDemand,
    gpus: r.spec.gpus,
    gpuMemoryUtilization: r.spec.gpuMemoryUtilization,
    launched: r.server !== null,
    stopping: r.stopReason !== null,
    holds: deploymentHolds(r),
    placedOn: r.devices.map((h) => h.deviceId),
    yielding: r.yielding,
  };
}

/** The memory a deployment takes on a device of `memoryMb`. */
export const deploymentMemoryMb = (gpuMemoryUtilization: number, memoryMb: number): number => Math.ceil(gpuMemoryUtilization * memoryMb);

const NO_DEADLINE_MS = 100 * 365 * 86_400_000;

/**
 * Where a deployment of `gpus` devices at `gpuMemoryUtilization` goes now: asked of the scheduling
 * policy as a shared request of its memory (no reserve: vLLM's fraction is of the whole device,
 * less what other programs and our holders take), one device size at a time (a tensor-parallel
 * gang is of one kind of GPU). The holds, or why it fits nowhere now (one sentence).
 */
export function placeDeployment(
  devices: readonly DeviceView[],
  want: { gpus: number; gpuMemoryUtilization: number },
  policy: SchedulingPolicy = backfillPolicy,
): { holds: DeploymentHold[] } | { reason: string } {
  const sizes = [...new Set(devices.map((d) => d.memoryMb))].sort((a, b) => a - b);
  for (const size of sizes) {
    const need = deploymentMemoryMb(want.gpuMemoryUtilization, size);
    const decision = policy.schedule({
      devices: devices.filter((d) => d.memoryMb === size),
      queue: [
        {
          taskId: 'deployment',
          queuedPosition: null,
          request: { gpus: want.gpus, memoryMb: need, shared: true },
          timeoutMs: NO_DEADLINE_MS,
        },
      ],
      now: 0,
      reserveFraction: 0,
    });
    const placed = decision.assignments[0];
    if (placed)
      return { holds: placed.devices.map((g) => ({ deviceId: g.deviceId, gpuIndex: g.gpuIndex, uuid: g.uuid, memoryMb: g.memoryMb })) };
  }
  const free = devices
    .map((d) => {
      const held = d.holders.some((h) => h.exclusive) ? d.memoryMb : d.holders.reduce((n, h) => n + h.memoryMb, 0);
      return `${deviceLabel(d)} ${gb(Math.max(0, d.memoryMb - d.externalMemoryMb - held))} of ${gb(d.memoryMb)} GB${d.blockedReason ? ' (blocked)' : ''}`;
    })
    .join(', ');
  const n = want.gpus === 1 ? '1 GPU' : `${want.gpus} GPUs`;
  return {
    reason:
      `needs ${n} with gpuMemoryUtilization ${want.gpuMemoryUtilization} of its memory free` +
      (sizes.length
        ? ` (${gb(deploymentMemoryMb(want.gpuMemoryUtilization, sizes[sizes.length - 1]!))} GB on a ${gb(sizes[sizes.length - 1]!)} GB GPU)`
        : '') +
      `; free now: ${free || 'no devices'}. Lower gpuMemoryUtilization or gpus, or wait for tasks to end.`,
  };
}

/** Whether a deployment can take its own devices' memory back now (it is bound to them). */
export function reclaimFits(
  devices: readonly DeviceView[],
  d: Pick<DeploymentView, 'id' | 'gpuMemoryUtilization'>,
  deviceIds: readonly string[],
): boolean {
  return deviceIds.every((id) => {
    const v = devices.find((x) => x.id === id);
    if (!v || v.blockedReason !== null) return false;
    const others = v.holders.filter((h) => h.taskId !== d.id);
    if (others.some((h) => h.exclusive)) return false;
    const held = others.reduce((n, h) => n + h.memoryMb, 0);
    return v.memoryMb - v.externalMemoryMb - held >= deploymentMemoryMb(d.gpuMemoryUtilization, v.memoryMb);
  });
}

export interface ArbitrationInput extends Omit<SchedulingInput, 'devices' | 'queue'> {
  /** The devices with every holder: tasks', and deployments' (holder id = deployment id). */
  devices: readonly DeviceView[];
  /** Queued tasks in FIFO order (as the scheduler gets them). */
  queue: readonly QueuedTaskView[];
  /** Deployments not ended. */
  deployments: readonly DeploymentView[];
  policy?: SchedulingPolicy;
}

export interface Arbitration {
  /** Deployments to put to sleep or stop, each for the queued task it makes room for. */
  yields: { deploymentId: string; yielding: DeploymentYield }[];
  /** Asleep with their memory released and nothing waiting for it: take it back and wake up. */
  wakes: string[];
  /** STARTING without devices (new after a restart, or stopped for training): place them now. */
  places: string[];
  /** Why each queued task a deployment holds up waits (code HELD_BY_DEPLOYMENT). */
  held: Map<string, WaitReason>;
}

/** Queued tasks looked at for deployments holding them up, from the head (each costs a policy call). */
const ARBITRATION_DEPTH = 32;

/**
 * What deployments do about the queue now. A queued task that cannot start, but could with
 * deployments off its devices, is held up by them: those that give way to it (`sleep` or `stop`,
 * not stopping, of a priority no higher than the task's) are asked to, and it waits with
 * HELD_BY_DEPLOYMENT until their memory is released; those that do not (`wait`, or an urgent
 * deployment and a normal task) keep it waiting with that reason. A deployment that gave way takes
 * its devices back (woken, or placed again) once the task it gave way to is no longer queued and
 * its memory fits again.
 */
export function arbitrate(input: ArbitrationInput): Arbitration {
  const policy = input.policy ?? backfillPolicy;
  const out: Arbitration = { yields: [], wakes: [], places: [], held: new Map() };
  const byId = new Map(input.deployments.map((d) => [d.id, d]));
  const holdsSome = (v: DeviceView) => v.holders.some((h) => byId.has(h.taskId));
  const queued = new Set(input.queue.map((q) => q.taskId));
  const schedule = (devices: readonly DeviceView[], queue: readonly QueuedTaskView[]) =>
    policy.schedule({ ...input, devices, queue, preemption: false });

  if (input.devices.some(holdsSome) && input.queue.length) {
    const base = schedule(input.devices, input.queue);
    const without = (keep: (d: DeploymentView) => boolean) =>
      input.devices.map((v) =>
        holdsSome(v) ? { ...v, holders: v.holders.filter((h) => !byId.has(h.taskId) || keep(byId.get(h.taskId)!)) } : v,
      );
    const gone = new Set<string>();
    let looked = 0;
    for (const t of input.queue) {
      if (looked >= ARBITRATION_DEPTH) break;
      const reason = base.waiting.get(t.taskId);
      if (!reason || reason.code !== 'WAITING_FOR_DEVICES') continue;
      looked++;
      // With no deployment at all, could it start? If not, deployments are not what holds it up.
      const free = schedule(
        without(() => false),
        [t],
      ).assignments[0];
      if (!free) continue;
      const priority = t.priority ?? 0;
      const givesWay = (d: DeploymentView) =>
        gone.has(d.id) ||
        (d.yielding !== null && !d.stopping) ||
        (d.status === 'SERVING' && d.onTrainingDemand !== 'wait' && !d.stopping && d.priority <= priority);
      const room = schedule(
        without((d) => !givesWay(d)),
        [t],
      ).assignments[0];
      const on = (ids: readonly string[]) =>
        input.devices
          .filter((v) => ids.includes(v.id))
          .flatMap((v) => v.holders.filter((h) => byId.has(h.taskId)).map((h) => byId.get(h.taskId)!));
      if (room) {
        const blockers = [...new Map(on(room.devices.map((g) => g.deviceId)).map((d) => [d.id, d])).values()];
        for (const d of blockers) {
          if (gone.has(d.id) || d.yielding) continue;
          gone.add(d.id);
          const mode = d.onTrainingDemand === 'stop' ? 'stop' : 'sleep';
          out.yields.push({
            deploymentId: d.id,
            yielding: {
              mode,
              forTaskId: t.taskId,
              message: `${mode === 'sleep' ? 'put to sleep' : 'stopped'} for training task ${t.taskId}; ${mode === 'sleep' ? 'woken' : 'started again'} when its devices are free`,
            },
          });
        }
        const names = blockers.map((d) => `${d.id} (${d.model})`).join(', ');
        out.held.set(t.taskId, {
          code: 'HELD_BY_DEPLOYMENT',
          message: `${deviceNames(
            input.devices,
            room.devices.map((g) => g.deviceId),
          )} held by deployment ${names}; it gives way to this task (onTrainingDemand ${blockers.map((d) => d.onTrainingDemand).join(', ')}) and the task starts once nvidia-smi shows its memory released.`,
          reservedStart: null,
        });
        continue;
      }
      const holding = [...new Map(on(free.devices.map((g) => g.deviceId)).map((d) => [d.id, d])).values()];
      const why = holding
        .map((d) =>
          d.stopping
            ? `${d.id} (${d.model}) is stopping`
            : d.status === 'STARTING' && d.onTrainingDemand !== 'wait' && d.priority <= priority
              ? `${d.id} (${d.model}) is starting; it gives way once it serves`
              : d.onTrainingDemand === 'wait'
                ? `${d.id} (${d.model}) does not give way to training (onTrainingDemand wait)`
                : `${d.id} (${d.model}) has priority ${d.priority}, above this task's ${priority}`,
        )
        .join('; ');
      out.held.set(t.taskId, {
        code: 'HELD_BY_DEPLOYMENT',
        message: `${deviceNames(
          input.devices,
          free.devices.map((g) => g.deviceId),
        )} held by deployment ${why}. The task waits until the deployment is stopped.`,
        reservedStart: null,
      });
    }
  }

  for (const d of input.deployments) {
    if (d.stopping) continue;
    // Gave way for a task still queued: it keeps its place until that task has started.
    if (d.yielding && queued.has(d.yielding.forTaskId)) continue;
    if (d.status === 'SLEEPING' && d.holds.length === 0 && d.launched) {
      if (reclaimFits(input.devices, d, d.placedOn)) out.wakes.push(d.id);
    } else if (d.status === 'STARTING' && !d.launched && d.holds.length === 0) {
      if ('holds' in placeDeployment(input.devices, d, policy)) out.places.push(d.id);
    }
  }
  return out;
}

function deviceNames(devices: readonly DeviceView[], ids: readonly string[]): string {
  const names = devices.filter((v) => ids.includes(v.id)).map((v) => deviceLabel(v));
  return `${names.join(', ')} ${names.length === 1 ? 'is' : 'are'}`;
}

/**
 * Whether nvidia-smi shows a sleeping deployment's memory released on every device it held: what
 * its processes use there (per process where nvidia-smi gives it, else the device's used memory
 * less other processes') is down to the CUDA context vLLM keeps, at most a tenth of what it held
 * or 2 GiB, whichever is more. Unknown memory (no nvidia-smi reading for a device) is not released.
 */
export function memoryReleased(
  holds: readonly DeploymentHold[],
  seen: ReadonlyMap<string, { usedByItMb: number | null; deviceUsedMb: number | null; othersMb: number }>,
): { released: boolean; observed: string } {
  const parts: string[] = [];
  let released = true;
  for (const h of holds) {
    const s = seen.get(h.deviceId);
    const it = s ? (s.usedByItMb ?? (s.deviceUsedMb === null ? null : Math.max(0, s.deviceUsedMb - s.othersMb))) : null;
    const slack = Math.max(2048, Math.ceil(h.memoryMb / 10));
    if (it === null || it > slack) released = false;
    parts.push(`${h.deviceId} ${it === null ? 'unknown' : `${gb(it)} GB`} (held ${gb(h.memoryMb)} GB)`);
  }
  return { released, observed: `nvidia-smi: ${parts.join(', ')}` };
}

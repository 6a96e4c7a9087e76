// When each queued task should have started at the latest, as `squeue --start` tells: the queue is
// played forward through the policy itself, one task at a time in queue order. Each task gets the
// earliest time its request fits (the policy's reservation for it as if it were the head) while
// the running tasks hold their devices until their deadlines and every task ahead of it holds the
// devices it was given from now until its own start plus its timeout. Holding from now, not from
// its start, and to the timeout, not to its real end, makes each figure an upper bound so long as
// the queue ahead stays as it is; a device blocked by other programs or a task that never fits has
// no figure. Pure: the time comes in with the input.
import type { DeviceHolder, DeviceView } from './resources';
import type { SchedulingInput, SchedulingPolicy } from './scheduling';

/** Queued tasks given a figure, first in the queue first: each costs one pass of the policy. */
export const EXPECTED_START_LIMIT = 100;

/** By task id: when it starts at the latest (epoch ms; `now` when it could start now), or null when no time can be told. */
export function expectedStarts(
  policy: SchedulingPolicy,
  input: Omit<SchedulingInput, 'accounts'>,
  limit = EXPECTED_START_LIMIT,
): Map<string, number | null> {
  const out = new Map<string, number | null>();
  const holders = new Map<string, DeviceHolder[]>(input.devices.map((d) => [d.id, [...d.holders]]));
  const devices = (): DeviceView[] => input.devices.map((d) => ({ ...d, holders: holders.get(d.id)! }));
  for (const t of input.queue.slice(0, limit)) {
    const decision = policy.schedule({ ...input, devices: devices(), queue: [t] });
    const placed = decision.assignments[0];
    let start: number;
    let taken: { deviceId: string; memoryMb: number; exclusive: boolean }[];
    if (placed) {
      start = input.now;
      taken = placed.devices;
    } else if (decision.reservation?.taskId === t.taskId) {
      start = decision.reservation.startAt;
      const shared = t.request.shared && t.request.memoryMb !== null;
      taken = decision.reservation.deviceIds.map((id) => ({
        deviceId: id,
        memoryMb: shared ? t.request.memoryMb! : (input.devices.find((d) => d.id === id)?.memoryMb ?? 0),
        exclusive: !shared,
      }));
    } else {
      out.set(t.taskId, null);
      continue;
    }
    out.set(t.taskId, start);
    const endsBy = start + t.timeoutMs;
    for (const g of taken) holders.get(g.deviceId)?.push({ taskId: t.taskId, memoryMb: g.memoryMb, exclusive: g.exclusive, endsBy });
  }
  return out;
}

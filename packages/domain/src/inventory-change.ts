// When the inventory changes (a GPU vanishes, a MIG layout is redone), a task that holds a device
// no longer there must not go on unnoticed: it is stopped, and fails as `lost` when its trainer
// has exited (its GPU is gone, so what it trained is not to be trusted). Pure: the service and
// the simulation run the same rule.
import { isActive } from './status';
import type { TaskCommand } from './lifecycle';
import type { TaskRecord } from './task';

export interface LostDevicesCommand {
  taskId: string;
  command: Extract<TaskCommand, { type: 'loseDevices' }>;
}

/**
 * The stop for each running task holding a device that `present` lacks, unless it is already
 * stopping (a cancel or a timeout ends it anyway, and says so).
 */
export function decideLostDevices(present: ReadonlySet<string>, tasks: Iterable<TaskRecord>): LostDevicesCommand[] {
  const out: LostDevicesCommand[] = [];
  for (const t of tasks) {
    if (!isActive(t.status) || t.stop) continue;
    const lost = t.devices.filter((g) => !present.has(g.deviceId)).map((g) => g.deviceId);
    if (!lost.length) continue;
    out.push({
      taskId: t.id,
      command: {
        type: 'loseDevices',
        message:
          `${lost.join(', ')} ${lost.length === 1 ? 'is' : 'are'} no longer in the inventory (the GPU vanished or its MIG layout changed); ` +
          'the trainer was stopped. Submit the task again to run it on the devices there are now.',
      },
    });
  }
  return out;
}

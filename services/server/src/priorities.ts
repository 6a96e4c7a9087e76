// A task's priority and its owner's limits, checked at submission (pure): the class must be one
// of the configured ones and no higher than the user's cap, and a gang no bigger than the user
// may ever hold. Quotas on GPUs at once and GPU-hours are the scheduler's (a task over them
// waits with reason QUOTA, never refused for that alone).
import { DEFAULT_PRIORITY, type TaskPriority } from '@trainyard/domain';
import type { UserQuota } from '@trainyard/store';
import { FieldError } from './field-error';

export function resolvePriority(
  name: string | undefined,
  classes: Readonly<Record<string, number>>,
  quota: UserQuota | null,
): TaskPriority {
  const wanted = name ?? DEFAULT_PRIORITY.name;
  const value = classes[wanted];
  if (value === undefined)
    throw new FieldError(
      'priority',
      `no priority class named ${wanted}; the classes are ${Object.entries(classes)
        .sort((a, b) => a[1] - b[1])
        .map(([n]) => n)
        .join(', ')}.`,
    );
  const cap = quota?.maxPriority ? classes[quota.maxPriority] : undefined;
  if (cap !== undefined && value > cap)
    throw new FieldError(
      'priority',
      `${quota!.name} may submit up to priority ${quota!.maxPriority}; ask an admin for more, or submit with a lower class.`,
    );
  return { name: wanted, value };
}

export function checkGangAgainstQuota(gpus: number, quota: UserQuota | null): void {
  if (quota?.maxGpus != null && gpus > quota.maxGpus)
    throw new FieldError(
      'resources.gpus',
      `asks for ${gpus} GPUs but ${quota.name} may hold at most ${quota.maxGpus} at once, so it could never start. Ask for fewer, or ask an admin to raise the quota.`,
    );
}

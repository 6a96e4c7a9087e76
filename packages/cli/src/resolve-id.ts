// A task named on the command line: its whole id, or the start of one when only one task's id
// starts so (as git takes a commit's); a deleted task is said to be deleted, and when.
import { errorInfo, type TrainyardClient } from '@trainyard/client';
import { CliError, EXIT, UsageError } from './errors';
import { time } from './format';

/** Tasks listed when a start of an id names several. */
const SHOWN = 5;

/** The whole id of the task `given` names; refuses, naming them, when several ids start with it. */
export async function resolveTaskId(client: TrainyardClient, given: string): Promise<string> {
  try {
    return (await client.tasks.get.query({ id: given })).id;
  } catch (err) {
    if (errorInfo(err).code !== 'NOT_FOUND') throw err;
    if (/^[A-Za-z0-9_-]{1,64}$/.test(given)) {
      const { items } = await client.tasks.list.query({ idPrefix: given, limit: SHOWN + 1 });
      if (items.length === 1) return items[0]!.id;
      if (items.length > 1)
        throw new UsageError(
          `${given} is the start of ${items.length > SHOWN ? `more than ${SHOWN}` : items.length} task ids: ` +
            `${items
              .slice(0, SHOWN)
              .map((t) => `${t.id} (${t.spec.name})`)
              .join(', ')}; give more of the id`,
        );
    }
    throw (await deletedNotice(client, given)) ?? err;
  }
}

/** "task … was deleted at … by …": when the log says so. */
async function deletedNotice(client: TrainyardClient, id: string): Promise<CliError | null> {
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(id)) return null;
  const { events } = await client.events.list.query({ taskId: id, type: 'TaskDeleted', limit: 1 }).catch(() => ({ events: [] }));
  const e = events[0];
  if (!e) return null;
  return new CliError(
    `task ${id} was deleted at ${time(e.recordedAt)} by ${e.metadata.actor}; its history stays: \`trainyard events --task ${id}\``,
    EXIT.NOT_FOUND,
  );
}

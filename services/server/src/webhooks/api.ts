// The webhooks API (webhooks.create, list, delete, deliveries): who may see and change which
// webhook. A user's webhooks hear of their own tasks; an admin may make one that hears of every
// user's (allUsers). The secret is returned once, by create, and never again.
import { randomBytes } from 'node:crypto';
import { TRPCError } from '@trpc/server';
import { z } from 'zod';
import { WEBHOOK_EVENT_TYPES, webhookUrlProblem } from '@trainyard/domain';
import {
  createWebhook,
  deleteWebhook,
  getWebhook,
  listWebhookDeliveries,
  listWebhooks,
  type Conn,
  type DeliveryView,
  type WebhookView,
} from '@trainyard/store';
import { FieldError, ForbiddenError } from '../field-error';
import { recordId } from '../schemas';
import { nonAdminAddressProblem } from './address';

/** The caller, as far as webhooks care. */
export interface WebhookActor {
  user: string;
  admin: boolean;
}

export const webhookCreateInput = z.strictObject({
  url: z.string({ error: 'url is required' }).max(2048, 'url must be at most 2048 characters'),
  /** The signing secret; absent: one is made (and returned once). */
  secret: z
    .string()
    .min(16, 'secret must be at least 16 characters')
    .max(256, 'secret must be at most 256 characters')
    .regex(/^[\x21-\x7e]+$/, 'secret must be printable ASCII without spaces')
    .optional(),
  /** The endings wanted; absent or empty: all. */
  events: z
    .array(z.enum(WEBHOOK_EVENT_TYPES, { error: `events must be among ${WEBHOOK_EVENT_TYPES.join(', ')}` }))
    .max(4)
    .optional(),
  /** Every user's tasks (admins only); else the caller's. */
  allUsers: z.boolean().default(false),
});

export const webhookIdInput = z.strictObject({ id: recordId('id', 'a webhook id') });

export const webhookDeliveriesInput = z
  .strictObject({
    taskId: recordId('taskId').optional(),
    webhookId: recordId('webhookId', 'a webhook id').optional(),
    limit: z.number().int().min(1).max(500).default(50),
  })
  .default({ limit: 50 });

export async function createWebhookFor(
  db: Conn,
  actor: WebhookActor,
  input: z.infer<typeof webhookCreateInput>,
): Promise<{ webhook: WebhookView; secret: string }> {
  const problem = webhookUrlProblem(input.url);
  if (problem) throw new FieldError('url', problem);
  if (input.allUsers && !actor.admin) throw new ForbiddenError('only an admin may make a webhook for every user (allUsers)');
  // An ordinary user's webhook may not reach this machine or its private network (SSRF).
  if (!actor.admin) {
    const refused = await nonAdminAddressProblem(input.url);
    if (refused) throw new FieldError('url', refused);
  }
  const secret = input.secret ?? `whsec_${randomBytes(24).toString('base64url')}`;
  const webhook = await createWebhook(db, {
    id: `wh_${randomBytes(6).toString('hex')}`,
    owner: input.allUsers ? null : actor.user,
    url: input.url,
    secret,
    events: [...new Set(input.events ?? [])],
    createdBy: actor.user,
  });
  return { webhook, secret };
}

/** An admin sees every webhook; a user their own (not the global ones: their URLs are the admin's). */
export function listWebhooksFor(db: Conn, actor: WebhookActor): Promise<WebhookView[]> {
  return listWebhooks(db, actor.admin ? {} : { owner: actor.user });
}

export async function deleteWebhookFor(db: Conn, actor: WebhookActor, id: string): Promise<{ id: string; deleted: true }> {
  const w = await getWebhook(db, id);
  if (!w || (!actor.admin && w.owner !== actor.user)) throw new TRPCError({ code: 'NOT_FOUND', message: `no webhook ${id}` });
  await deleteWebhook(db, id);
  return { id, deleted: true };
}

/** Deliveries with each attempt: an admin's of every task; a user's of their own tasks. */
export function deliveriesFor(db: Conn, actor: WebhookActor, q: z.infer<typeof webhookDeliveriesInput>): Promise<DeliveryView[]> {
  return listWebhookDeliveries(db, {
    ...(actor.admin ? {} : { owner: actor.user }),
    ...(q.taskId !== undefined ? { taskId: q.taskId } : {}),
    ...(q.webhookId !== undefined ? { webhookId: q.webhookId } : {}),
    limit: q.limit,
  });
}

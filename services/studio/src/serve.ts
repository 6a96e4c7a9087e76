// What the panel's "Serve" shows of a completed task's deployment, pure (components/Serve.tsx).
import type { RouterOutputs } from '@trainyard/client';

export type Deployment = RouterOutputs['deployments']['get'];

/** The curl example for a served adapter, through the service's /v1 (the model is the task id). */
export function serveCurl(origin: string, model: string): string {
  const body = JSON.stringify({ model, messages: [{ role: 'user', content: 'Hello!' }] });
  return `curl ${origin}/v1/chat/completions -H 'content-type: application/json' -d '${body}'`;
}

/** The newest deployment of a task (the list is newest first, deleted ones left out), if any. */
export function deploymentOf(taskId: string, deployments: readonly Deployment[] | undefined): Deployment | null {
  return deployments?.find((d) => d.spec.taskId === taskId) ?? null;
}

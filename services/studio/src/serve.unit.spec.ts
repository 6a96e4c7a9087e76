import { describe, expect, it } from 'vitest';
import { deploymentOf, serveCurl, type Deployment } from './serve';

describe('the panel’s Serve', () => {
  it('given a served task, the curl example asks our /v1 for the adapter by the task’s id', () => {
    expect(serveCurl('http://127.0.0.1:8080', 'tsk-1')).toBe(
      `curl http://127.0.0.1:8080/v1/chat/completions -H 'content-type: application/json' -d '{"model":"tsk-1","messages":[{"role":"user","content":"Hello!"}]}'`,
    );
  });
  it('given deployments newest first, a task’s is its newest one', () => {
    const d = (id: string, taskId: string | null) => ({ id, spec: { taskId } }) as unknown as Deployment;
    expect(deploymentOf('t1', [d('dep-b', 't1'), d('dep-a', 't1'), d('dep-c', null)])?.id).toBe('dep-b');
    expect(deploymentOf('t2', [d('dep-b', 't1')])).toBeNull();
    expect(deploymentOf('t1', undefined)).toBeNull();
  });
});

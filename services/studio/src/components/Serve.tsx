// "Serve" on a completed task's row: starts a vLLM deployment of the task's adapter
// (deployments.create { taskId }, the seed's "use as backend"), then shows its state, its
// endpoint and a copyable curl example through our OpenAI-compatible /v1 (the model is the
// adapter's name, the task id). The deployments come from one list query the table shares.
import { useMutation, useQueryClient } from '@tanstack/react-query';
import { useState } from 'react';
import { errorInfo, useTRPC } from '../api';
import { serveCurl, type Deployment } from '../serve';

export { deploymentOf } from '../serve';

const STATE_TEXT: Record<Deployment['status'], string> = {
  STARTING: 'Starting (loading the model)',
  SERVING: 'Serving',
  SLEEPING: 'Asleep (a training task has the GPU); answers 503 until woken',
  STOPPED: 'Stopped',
  FAILED: 'Failed',
};

export function ServeCell({ taskId, taskName, deployment }: { taskId: string; taskName: string; deployment: Deployment | null }) {
  const trpc = useTRPC();
  const qc = useQueryClient();
  const [error, setError] = useState<string | null>(null);
  const [copied, setCopied] = useState(false);
  const serve = useMutation(
    trpc.deployments.create.mutationOptions({
      onSuccess: () => {
        setError(null);
        void qc.invalidateQueries({ queryKey: trpc.deployments.list.queryKey() });
      },
      onError: (err) => setError(errorInfo(err).message),
    }),
  );
  const live = deployment && deployment.status !== 'STOPPED' && deployment.status !== 'FAILED';
  const curl = serveCurl(window.location.origin, taskId);
  return (
    <div className="serve" data-testid="serve">
      {!live ? (
        <button
          type="button"
          className="btn btn-small"
          data-testid="serve-btn"
          aria-label={`Serve ${taskName}`}
          disabled={serve.isPending}
          onClick={() => serve.mutate({ taskId })}
        >
          Serve
        </button>
      ) : null}
      {deployment ? (
        <div className="serve-info small">
          <span data-testid="serve-state" data-status={deployment.status}>
            {STATE_TEXT[deployment.status]}
            {deployment.status === 'FAILED' && deployment.error ? `: ${deployment.error}` : ''}
          </span>
          {deployment.endpoint ? (
            <div className="mono" data-testid="serve-endpoint">
              {deployment.endpoint}
            </div>
          ) : null}
          {live ? (
            <div className="serve-curl">
              <code className="mono" data-testid="serve-curl">
                {curl}
              </code>
              <button
                type="button"
                className="btn btn-small btn-ghost"
                data-testid="serve-copy"
                onClick={() => {
                  void navigator.clipboard?.writeText(curl).then(
                    () => setCopied(true),
                    () => setCopied(false),
                  );
                }}
              >
                {copied ? 'Copied' : 'Copy'}
              </button>
            </div>
          ) : null}
        </div>
      ) : null}
      {error ? (
        <div className="error small" role="alert">
          {error}
        </div>
      ) : null}
    </div>
  );
}

// Entry point: the query client, the tRPC client (signed in with the session's token, made
// again when it changes) and the app.
import { MutationCache, QueryCache, QueryClient, QueryClientProvider } from '@tanstack/react-query';
import { StrictMode, useMemo } from 'react';
import { createRoot } from 'react-dom/client';
import { createStudioClient, errorInfo, TRPCProvider } from './api';
import { App } from './App';
import { refused, useSession } from './session';
import './styles.css';

/** Any call the service answers UNAUTHORIZED ends the session: the login box comes back, saying why. */
function onError(err: unknown): void {
  const info = errorInfo(err);
  if (info.code === 'UNAUTHORIZED') refused(info.message);
}

function newQueryClient(): QueryClient {
  return new QueryClient({
    queryCache: new QueryCache({ onError }),
    mutationCache: new MutationCache({ onError }),
    defaultOptions: {
      queries: { retry: (n, err) => n < 1 && errorInfo(err).code !== 'UNAUTHORIZED', staleTime: 2000, refetchOnWindowFocus: true },
      mutations: { retry: false },
    },
  });
}

function Root() {
  const { token } = useSession();
  // Another token, other clients: nothing read with one token is shown under another.
  const clients = useMemo(() => ({ query: newQueryClient(), trpc: createStudioClient(token) }), [token]);
  return (
    <QueryClientProvider client={clients.query}>
      <TRPCProvider trpcClient={clients.trpc} queryClient={clients.query}>
        <App key={token ?? ''} />
      </TRPCProvider>
    </QueryClientProvider>
  );
}

createRoot(document.getElementById('root')!).render(
  <StrictMode>
    <Root />
  </StrictMode>,
);

// A TCP proxy in front of the test Postgres that can make the connections open through it go
// silent for good: what a client sees when the database host it was talking to vanishes without
// a word (powered off, paused, its address moved to a standby) while new connections reach a
// database that answers. Nothing passes a silenced connection either way, and its client's
// socket stays open: only the client's own timeouts can end the wait (TCP would take many minutes).
import { connect, createServer, type Socket } from 'node:net';

export interface SilencingProxy {
  /** The Postgres URL `url` with its host and port replaced by the proxy's. */
  via(url: string): string;
  /** Every connection open now goes silent (its database side is closed, as by a vanished host). */
  silenceOpen(): number;
  /** Every connection, those open now and those made later, goes silent: the database is gone. */
  silenceAll(): void;
  /** Connections made from now on reach the database again (silenced ones stay silent). */
  restore(): void;
  close(): Promise<void>;
}

export async function startSilencingProxy(databaseUrl: string): Promise<SilencingProxy> {
  const target = new URL(databaseUrl);
  const open = new Set<{ client: Socket; upstream: Socket; silent: boolean }>();
  let allSilent = false;
  const server = createServer((client) => {
    const upstream = connect(Number(target.port || 5432), target.hostname);
    const pair = { client, upstream, silent: allSilent };
    if (allSilent) upstream.destroy();
    open.add(pair);
    client.on('data', (d) => {
      if (!pair.silent) upstream.write(d);
    });
    upstream.on('data', (d) => {
      if (!pair.silent) client.write(d);
    });
    const end = () => {
      open.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('close', end);
    client.on('error', end);
    // A silenced connection's database side is gone; its client must not hear of it.
    upstream.on('close', () => pair.silent || end());
    upstream.on('error', () => pair.silent || end());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  const silenceOpen = () => {
    let n = 0;
    for (const pair of open) {
      if (pair.silent) continue;
      pair.silent = true;
      pair.upstream.destroy();
      n++;
    }
    return n;
  };
  return {
    via(url) {
      const u = new URL(url);
      u.hostname = '127.0.0.1';
      u.port = String(port);
      return u.toString();
    },
    silenceOpen,
    silenceAll() {
      allSilent = true;
      silenceOpen();
    },
    restore() {
      allSilent = false;
    },
    async close() {
      for (const { client, upstream } of open) {
        client.destroy();
        upstream.destroy();
      }
      open.clear();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

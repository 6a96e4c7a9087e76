#!/usr/bin/env node
// A database on another host, for a benchmark on one machine: a TCP proxy that holds every chunk
// `delayMs` before passing it on, each way. Nagle's algorithm is off on both sides, as postgres.js
// and Postgres have it, so a round trip costs the delay twice and nothing more.
//   node bench/latency-proxy.mjs <listenPort> <targetPort> <delayMs>
//   BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:<listenPort>/test npm run bench -- --only exit-transaction
// Node's timers round a delay up to whole milliseconds, so 1 ms here holds a chunk 1–2 ms.
import net from 'node:net';

const [listenPort, targetPort, delayMs] = process.argv.slice(2).map(Number);
if (![listenPort, targetPort, delayMs].every((n) => Number.isFinite(n) && n >= 0)) {
  process.stderr.write('usage: node bench/latency-proxy.mjs <listenPort> <targetPort> <delayMs>\n');
  process.exit(2);
}

net
  .createServer((client) => {
    const server = net.connect(targetPort, '127.0.0.1');
    client.setNoDelay(true);
    server.setNoDelay(true);
    /** @param {net.Socket} from @param {net.Socket} to */
    const pass = (from, to) => from.on('data', (chunk) => setTimeout(() => to.write(chunk), delayMs));
    pass(client, server);
    pass(server, client);
    const end = () => {
      client.destroy();
      server.destroy();
    };
    for (const socket of [client, server]) {
      socket.on('error', end);
      socket.on('close', end);
    }
  })
  .listen(listenPort, '127.0.0.1', () => {
    process.stdout.write(`latency-proxy: 127.0.0.1:${listenPort} -> 127.0.0.1:${targetPort}, ${delayMs} ms each way\n`);
  });

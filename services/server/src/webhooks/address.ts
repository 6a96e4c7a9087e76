// The DNS edge of the webhooks' address rule: resolves a webhook URL's host and asks the domain
// (webhookAddressProblem) whether an ordinary user's webhook may reach it. Used by webhooks.create
// and again before each delivery (a name may resolve elsewhere by then), where the address it
// approved is the one the delivery connects to (`nonAdminTarget`, pinned by deliver.ts).
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { isAddressLiteral, webhookAddressProblem } from '@trainyard/domain';
import type { PinnedAddress } from './deliver';

/** Resolves a host name to all its addresses (DNS by default; specs inject their own). */
export type Resolver = (host: string) => Promise<string[]>;

export const dnsResolver: Resolver = async (host) => (await lookup(host, { all: true, verbatim: true })).map((a) => a.address);

/** The URL's host without IPv6 brackets. */
function hostOf(url: string): string {
  const h = new URL(url).hostname;
  return h.startsWith('[') && h.endsWith(']') ? h.slice(1, -1) : h;
}

/**
 * What is wrong with a non-admin's webhook URL's addresses, in words; null when every address its
 * host resolves to is public. A name that does not resolve is refused with DNS's word for it.
 */
export async function nonAdminAddressProblem(url: string, resolve: Resolver = dnsResolver): Promise<string | null> {
  const target = await nonAdminTarget(url, resolve);
  return 'problem' in target ? target.problem : null;
}

/**
 * A non-admin's delivery target: the host resolved once and checked; when every address is
 * public, the first of them, which the delivery must connect to (never resolving the name again).
 */
export async function nonAdminTarget(
  url: string,
  resolve: Resolver = dnsResolver,
): Promise<{ problem: string } | { pinned: PinnedAddress }> {
  const host = hostOf(url);
  let addresses: string[];
  if (isAddressLiteral(host)) addresses = [host];
  else
    try {
      addresses = await resolve(host);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
      return { problem: `url host ${host} cannot be resolved (${code}), so it cannot be checked to be a public address` };
    }
  const problem = webhookAddressProblem(host, addresses);
  if (problem) return { problem };
  const address = addresses[0]!;
  return { pinned: { address, family: isIP(address) === 6 ? 6 : 4 } };
}

// The DNS edge of the webhooks' address rule: resolves a webhook URL's host and asks the domain
// (webhookAddressProblem) whether an ordinary user's webhook may reach it. Used by webhooks.create
// and again before each delivery (a name may resolve elsewhere by then).
import { lookup } from 'node:dns/promises';
import { isAddressLiteral, webhookAddressProblem } from '@trainyard/domain';

/** The URL's host without IPv6 brackets. */
function hostOf(url: string): string {
  const h = new URL(url).hostname;
  return h.startsWith('[') && h.endsWith(']') ? h.slice(1, -1) : h;
}

/**
 * What is wrong with a non-admin's webhook URL's addresses, in words; null when every address its
 * host resolves to is public. A name that does not resolve is refused with DNS's word for it.
 */
export async function nonAdminAddressProblem(url: string): Promise<string | null> {
  const host = hostOf(url);
  if (isAddressLiteral(host)) return webhookAddressProblem(host, [host]);
  let addresses: string[];
  try {
    addresses = (await lookup(host, { all: true, verbatim: true })).map((a) => a.address);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    return `url host ${host} cannot be resolved (${code}), so it cannot be checked to be a public address`;
  }
  return webhookAddressProblem(host, addresses);
}

// Where a webhook may deliver: an ordinary user's webhook must not reach the service's own
// machine or its private network (SSRF). Pure: the edge resolves names (at webhooks.create and
// again at each delivery) and asks here what each address is.

/** What kind of address it is, when it is one a non-admin's webhook may not reach; null: public. */
export type RestrictedAddressKind = 'loopback' | 'private' | 'link-local' | 'unspecified';

function ipv4Octets(text: string): number[] | null {
  const parts = text.split('.');
  if (parts.length !== 4) return null;
  const out: number[] = [];
  for (const p of parts) {
    if (!/^\d{1,3}$/.test(p)) return null;
    const n = Number(p);
    if (n > 255) return null;
    out.push(n);
  }
  return out;
}

/** The eight 16-bit groups of an IPv6 address (an embedded dotted IPv4 tail allowed); null when it is none. */
function ipv6Groups(text: string): number[] | null {
  let s = text.toLowerCase();
  if (s.startsWith('[') && s.endsWith(']')) s = s.slice(1, -1);
  const zone = s.indexOf('%');
  if (zone >= 0) s = s.slice(0, zone);
  if (!s.includes(':')) return null;
  const lastColon = s.lastIndexOf(':');
  const last = s.slice(lastColon + 1);
  if (last.includes('.')) {
    const v4 = ipv4Octets(last);
    if (!v4) return null;
    s = `${s.slice(0, lastColon + 1)}${((v4[0]! << 8) | v4[1]!).toString(16)}:${((v4[2]! << 8) | v4[3]!).toString(16)}`;
  }
  const halves = s.split('::');
  if (halves.length > 2) return null;
  const parse = (h: string): number[] | null => {
    if (h === '') return [];
    const out: number[] = [];
    for (const g of h.split(':')) {
      if (!/^[0-9a-f]{1,4}$/.test(g)) return null;
      out.push(parseInt(g, 16));
    }
    return out;
  };
  const a = parse(halves[0]!);
  if (!a) return null;
  if (halves.length === 1) return a.length === 8 ? a : null;
  const b = parse(halves[1]!);
  if (!b || a.length + b.length > 7) return null;
  return [...a, ...new Array<number>(8 - a.length - b.length).fill(0), ...b];
}

function classifyV4(o: number[]): RestrictedAddressKind | null {
  const [a, b] = [o[0]!, o[1]!];
  if (a === 127) return 'loopback';
  if (a === 0) return 'unspecified';
  if (a === 10 || (a === 172 && b >= 16 && b <= 31) || (a === 192 && b === 168)) return 'private';
  if (a === 169 && b === 254) return 'link-local';
  return null;
}

/**
 * Given an address as text (IPv4 dotted, or IPv6 with or without brackets), then what restricted
 * kind it is: loopback (127/8, ::1), private (RFC 1918: 10/8, 172.16/12, 192.168/16; fc00::/7),
 * link-local (169.254/16, fe80::/10), unspecified (0.0.0.0/8, ::); an IPv4-mapped or -compatible
 * IPv6 address is judged as its IPv4 one. null: a public address, or text that is no address.
 */
export function restrictedAddressKind(address: string): RestrictedAddressKind | null {
  const v4 = ipv4Octets(address);
  if (v4) return classifyV4(v4);
  const g = ipv6Groups(address);
  if (!g) return null;
  const firstFiveZero = g.slice(0, 5).every((x) => x === 0);
  if (firstFiveZero && (g[5] === 0xffff || g[5] === 0) && !(g[5] === 0 && g[6] === 0)) {
    return classifyV4([g[6]! >> 8, g[6]! & 0xff, g[7]! >> 8, g[7]! & 0xff]);
  }
  if (g.every((x) => x === 0)) return 'unspecified';
  if (g.slice(0, 7).every((x) => x === 0) && g[7] === 1) return 'loopback';
  if ((g[0]! & 0xfe00) === 0xfc00) return 'private';
  if ((g[0]! & 0xffc0) === 0xfe80) return 'link-local';
  return null;
}

/** Whether the text is an IP address literal (v4 dotted or v6), as opposed to a name to resolve. */
export function isAddressLiteral(host: string): boolean {
  return ipv4Octets(host) !== null || ipv6Groups(host) !== null;
}

/**
 * Given a webhook URL's host and the addresses it resolves to (the host itself when it is an
 * address), when the webhook is an ordinary user's, then what is wrong with it in words, or null
 * when every address is public. A name such as `localhost` is judged by its addresses; no
 * address at all is refused too (there would be nothing to check).
 */
export function webhookAddressProblem(host: string, addresses: readonly string[]): string | null {
  const shown = host.startsWith('[') ? host : host.includes(':') ? `[${host}]` : host;
  if (!addresses.length) return `url host ${shown} has no address`;
  for (const a of addresses) {
    const kind = restrictedAddressKind(a);
    if (!kind) continue;
    const at = isAddressLiteral(host) ? `is a ${kind} address` : `resolves to ${a}, a ${kind} address`;
    return `url host ${shown} ${at}: only an admin's webhook may reach loopback, private, link-local or unspecified addresses`;
  }
  return null;
}

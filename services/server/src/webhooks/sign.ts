// Signing webhook deliveries: HMAC-SHA256 over "<unix seconds>.<body>" with the webhook's
// secret, sent as `x-trainyard-signature: t=<seconds>,v1=<hex>` (what is signed and the header's
// form are the domain's). verifyWebhookSignature is what a receiver does; specs and
// docs/WEBHOOKS.md use it.
import { createHmac, timingSafeEqual } from 'node:crypto';
import { parseSignatureHeader, signedContent } from '@trainyard/domain';

function signatureOf(secret: string, timestampSeconds: number, body: string): string {
  return createHmac('sha256', secret).update(signedContent(timestampSeconds, body)).digest('hex');
}

export function signatureHeader(secret: string, timestampSeconds: number, body: string): string {
  return `t=${timestampSeconds},v1=${signatureOf(secret, timestampSeconds, body)}`;
}

/**
 * Whether `header` signs `body` with `secret`, made within `toleranceSeconds` of `nowSeconds`
 * (an old delivery replayed later is refused). Compares in constant time.
 */
export function verifyWebhookSignature(
  secret: string,
  header: string | null | undefined,
  body: string,
  nowSeconds: number,
  toleranceSeconds = 300,
): boolean {
  const parsed = parseSignatureHeader(header);
  if (!parsed || Math.abs(nowSeconds - parsed.timestamp) > toleranceSeconds) return false;
  const expected = Buffer.from(signatureOf(secret, parsed.timestamp, body), 'hex');
  return parsed.signatures.some((s) => {
    const got = Buffer.from(s, 'hex');
    return got.length === expected.length && timingSafeEqual(got, expected);
  });
}

import { describe, expect, it } from 'vitest';
import { isAddressLiteral, restrictedAddressKind, webhookAddressProblem } from '.';

describe('restrictedAddressKind', () => {
  it.each([
    ['127.0.0.1', 'loopback'],
    ['127.255.1.2', 'loopback'],
    ['::1', 'loopback'],
    ['[::1]', 'loopback'],
    ['0:0:0:0:0:0:0:1', 'loopback'],
    ['10.0.0.5', 'private'],
    ['172.16.0.1', 'private'],
    ['172.31.255.255', 'private'],
    ['192.168.1.1', 'private'],
    ['fc00::1', 'private'],
    ['fd12:3456::1', 'private'],
    ['169.254.169.254', 'link-local'],
    ['fe80::1', 'link-local'],
    ['[fe80::1%eth0]', 'link-local'],
    ['febf::1', 'link-local'],
    ['0.0.0.0', 'unspecified'],
    ['::', 'unspecified'],
    ['::ffff:127.0.0.1', 'loopback'],
    ['::ffff:7f00:1', 'loopback'],
    ['::ffff:10.1.2.3', 'private'],
    ['::ffff:169.254.169.254', 'link-local'],
  ])('given %s, then it is %s', (address, kind) => {
    expect(restrictedAddressKind(address)).toBe(kind);
  });

  it.each([
    '8.8.8.8',
    '172.15.0.1',
    '172.32.0.1',
    '192.169.0.1',
    '169.253.0.1',
    '2001:db8::1',
    '2606:4700::1111',
    'fec0::1',
    '::ffff:8.8.8.8',
  ])('given the public address %s, then it is not restricted', (address) => {
    expect(restrictedAddressKind(address)).toBeNull();
  });

  it.each(['example.com', 'localhost', '1.2.3', '256.1.1.1', '1:2:3', ':::1', '1::2::3', '12345::1'])(
    'given %s, which is no address, then it is not classified (names are resolved by the edge)',
    (text) => {
      expect(restrictedAddressKind(text)).toBeNull();
      expect(isAddressLiteral(text)).toBe(false);
    },
  );
});

describe('webhookAddressProblem', () => {
  it('given a loopback literal, then the problem names the kind and who may', () => {
    expect(webhookAddressProblem('127.0.0.1', ['127.0.0.1'])).toMatch(/127\.0\.0\.1 is a loopback address: only an admin/);
  });
  it('given a name resolving to a private address among public ones, then it is refused with the address', () => {
    expect(webhookAddressProblem('hooks.internal', ['8.8.8.8', '10.0.0.7'])).toMatch(
      /hooks\.internal resolves to 10\.0\.0\.7, a private address/,
    );
  });
  it('given an IPv6 host, then it is shown in brackets', () => {
    expect(webhookAddressProblem('::1', ['::1'])).toMatch(/\[::1\] is a loopback address/);
  });
  it('given a name with no address, then it is refused', () => {
    expect(webhookAddressProblem('nowhere.example', [])).toMatch(/has no address/);
  });
  it('given only public addresses, then there is no problem', () => {
    expect(webhookAddressProblem('example.com', ['93.184.216.34', '2606:2800:220:1::1'])).toBeNull();
  });
});

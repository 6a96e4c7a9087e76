import { describe, expect, it } from 'vitest';
import { mayReplaceDevices } from './devices';

describe('mayReplaceDevices', () => {
  it('given a probe that failed, then the devices stay as they were, whatever it found', () => {
    expect(mayReplaceDevices('probe', 'probe', true)).toBe(false);
    expect(mayReplaceDevices('unprobed', 'probe', true)).toBe(false);
  });
  it('given GPUs found where none had been probed, then they replace the fallback device', () => {
    expect(mayReplaceDevices('unprobed', 'probe', false)).toBe(true);
  });
  it('given no GPU found where GPUs were, then the devices stay (a driver hiccup must not stop every task)', () => {
    expect(mayReplaceDevices('probe', 'unprobed', false)).toBe(false);
  });
  it('given a good probe of the same kind, then its devices may replace them', () => {
    expect(mayReplaceDevices('probe', 'probe', false)).toBe(true);
    expect(mayReplaceDevices('fixed', 'fixed', false)).toBe(true);
  });
});

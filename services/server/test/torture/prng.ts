// The torture runs' seeded PRNG: the simulation's mulberry32 (same seed, same schedule of
// actions, so a failing run replays with `--seed`), with a `pick` that refuses an empty list.
import { Prng as SimPrng } from '@trainyard/sim';

export class Prng extends SimPrng {
  override pick<T>(items: readonly T[]): T {
    if (!items.length) throw new Error('pick from an empty list');
    return items[Math.floor(this.next() * items.length)]!;
  }

  override fork(label: string): Prng {
    return new Prng(super.fork(label).seed);
  }
}

export function randomSeed(): number {
  return Math.floor(Math.random() * 2 ** 31);
}

// Every benchmark, in the order `npm run bench` runs them.
import type { Benchmark } from '../lib/common';
import { idleGap } from './idle-gap';
import { lifecycle } from './lifecycle';
import { reads } from './reads';
import { restart } from './restart';
import { submit } from './submit';

export const benchmarks: Benchmark[] = [submit, lifecycle, idleGap, restart, reads];

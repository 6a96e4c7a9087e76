// Every benchmark, in the order `npm run bench` runs them.
import type { Benchmark } from '../lib/common';
import { idleGap } from './idle-gap';
import { lifecycle } from './lifecycle';
import { reads } from './reads';
import { restart } from './restart';
import { scheduling } from './scheduling';
import { submit } from './submit';

export const benchmarks: Benchmark[] = [submit, lifecycle, idleGap, restart, reads, scheduling];

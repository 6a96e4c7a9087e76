// Every benchmark, in the order `npm run bench` runs them.
import type { Benchmark } from '../lib/common';
import { exitTransaction } from './exit-transaction';
import { idleGap } from './idle-gap';
import { launchFolders } from './launch-folders';
import { lifecycle } from './lifecycle';
import { reads } from './reads';
import { restart } from './restart';
import { restartBusy } from './restart-busy';
import { scheduling } from './scheduling';
import { submit } from './submit';
import { sweep } from './sweep';
import { warmStart } from './warm-start';

export const benchmarks: Benchmark[] = [
  submit,
  sweep,
  lifecycle,
  idleGap,
  restart,
  restartBusy,
  reads,
  scheduling,
  warmStart,
  exitTransaction,
  launchFolders,
];

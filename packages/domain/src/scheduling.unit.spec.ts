import { describe, expect, it } from 'vitest';
import { fifoOrder, localFifoPolicy, type SlotView } from '.';

const slot = (slotId: number, holderTaskId: string | null = null, blockedReason: string | null = null): SlotView => ({
  slotId,
  gpuIndex: slotId,
  holderTaskId,
  blockedReason,
});
const q = (taskId: string, queuedPosition: string | null) => ({ taskId, queuedPosition });

describe('local FIFO policy', () => {
  it('given one free slot and a queue, when scheduling, then the head of the queue starts', () => {
    expect(localFifoPolicy.schedule({ slots: [slot(0)], queue: [q('a', '3'), q('b', '9')] })).toEqual([
      { taskId: 'a', slotId: 0, gpuIndex: 0 },
    ]);
  });
  it('given no free slot, nothing starts', () => {
    expect(localFifoPolicy.schedule({ slots: [slot(0, 'x')], queue: [q('a', '3')] })).toEqual([]);
  });
  it('given a blocked slot, it takes no work', () => {
    expect(localFifoPolicy.schedule({ slots: [slot(0, null, 'busy'), slot(1)], queue: [q('a', '1'), q('b', '2')] })).toEqual([
      { taskId: 'a', slotId: 1, gpuIndex: 1 },
    ]);
  });
  it('fills several free slots lowest first, in queue order', () => {
    expect(localFifoPolicy.schedule({ slots: [slot(2), slot(0), slot(1, 'x')], queue: [q('a', '1'), q('b', '2'), q('c', '3')] })).toEqual([
      { taskId: 'a', slotId: 0, gpuIndex: 0 },
      { taskId: 'b', slotId: 2, gpuIndex: 2 },
    ]);
  });
  it('orders by QUEUED position numerically (bigint), unqueued candidates last', () => {
    const order = fifoOrder([q('new', null), q('late', '100'), q('early', '20'), q('huge', '90071992547409930')]);
    expect(order.map((t) => t.taskId)).toEqual(['early', 'late', 'huge', 'new']);
  });
});

// Pure steps of an XState machine with one inert actor scope for every step. xstate's own
// `transition()` and `initialTransition()` build a throwaway actor for each call, and that actor's
// constructor computes the machine's initial snapshot eagerly: as much work again as the step
// itself, paid by every fold, decision and rebuild. The task and deployment machines only assign
// (no children, no side effects to execute), so nothing a step does reaches the scope, and one
// scope serves them all; the initial snapshot, immutable like every snapshot, is computed once.
import { createActor, type AnyActorScope, type AnyStateMachine, type EventFromLogic, type SnapshotFrom } from 'xstate';

export interface MachineSteps<M extends AnyStateMachine> {
  /** The machine's initial snapshot (shared: snapshots are never changed, only replaced). */
  readonly initial: SnapshotFrom<M>;
  /** The snapshot after `event`: what xstate's `transition(machine, snapshot, event)` gives. */
  next(snapshot: SnapshotFrom<M>, event: EventFromLogic<M>): SnapshotFrom<M>;
}

export function machineSteps<M extends AnyStateMachine>(machine: M): MachineSteps<M> {
  const self = createActor(machine);
  const scope: AnyActorScope = {
    self,
    id: '',
    sessionId: '',
    system: self.system,
    logger: () => {},
    defer: () => {},
    emit: () => {},
    stopChild: () => {},
    // A step's actions other than assign (none in our machines) are left unexecuted, as
    // `transition()` leaves them to its caller.
    actionExecutor: () => {},
  };
  return {
    initial: machine.getInitialSnapshot(scope) as SnapshotFrom<M>,
    next: (snapshot, event) => machine.transition(snapshot, event, scope) as SnapshotFrom<M>,
  };
}

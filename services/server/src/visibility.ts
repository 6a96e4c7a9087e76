// What a caller may see of other users' tasks: the rule is the domain's (packages/domain/src/visibility.ts),
// so the simulation checks the very code the service runs.
export { mayRead, ownerScope, preemptedFor, queueFor, visibleEvent, visibleStop, visibleTask, type Viewer } from '@trainyard/domain';

// Deployments in the store on both databases: commands decided, appended to their own dep-
// stream of the shared log and projected in one transaction; a refused command writes nothing;
// a rebuild of the task read models passes over deployment events.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DeploymentCommandError, placeDeployment, uniformInventory, type DeploymentSpec } from '@trainyard/domain';
import {
  compareWithLog,
  configureDevices,
  DeploymentPlacementError,
  DeploymentStore,
  listDeployments,
  listHolderRows,
  listLiveDeployments,
  readStream,
  rebuildFromLog,
  replaceReadModels,
  TaskStore,
  toDeviceViews,
} from '.';
import { backendAvailable, backends, openTestDatabase, taskSpec, type TestDatabase } from '../test/support';

const spec: DeploymentSpec = {
  model: 'Qwen/Qwen2.5-0.5B-Instruct',
  taskId: null,
  adapters: [],
  gpus: 1,
  gpuMemoryUtilization: 0.3,
  maxModelLen: null,
  port: null,
  onTrainingDemand: 'sleep',
};
const hold = { deviceId: 'gpu0', gpuIndex: 0, uuid: null, memoryMb: 24_576 };
const server = { pid: 1234, startTime: '5', runDir: '/runs/dep-1', port: 18001, devices: [0] };

for (const backend of backends()) {
  describe.skipIf(!backendAvailable(backend))(`deployments on ${backend.kind}`, () => {
    let t: TestDatabase;
    beforeEach(async () => {
      t = await openTestDatabase(backend);
    });
    afterEach(async () => {
      await t?.close();
    });

    it('create, launch, serve and stop land in the log and the projection; a refused command writes nothing', async () => {
      const store = new DeploymentStore(t);
      const created = await store.command('dep-1', { type: 'create', deploymentId: 'dep-1', spec }, 'alice');
      expect(created).toMatchObject({ id: 'dep-1', status: 'STARTING', version: 1 });
      await store.command('dep-1', { type: 'place', devices: [hold] }, 'service');
      await store.command('dep-1', { type: 'recordLaunch', server }, 'service');
      await store.command('dep-1', { type: 'markServing', endpoint: 'http://127.0.0.1:18001/v1', servedModels: ['m'] }, 'service');
      await expect(store.command('dep-1', { type: 'delete' }, 'alice')).rejects.toBeInstanceOf(DeploymentCommandError);
      expect((await store.get('dep-1'))!).toMatchObject({
        owner: 'alice',
        record: { status: 'SERVING', endpoint: 'http://127.0.0.1:18001/v1', version: 4 },
      });
      expect((await listLiveDeployments(t.db)).map((r) => r.record.id)).toEqual(['dep-1']);

      await store.command('dep-1', { type: 'stop', reason: 'asked' }, 'alice');
      const stopped = await store.command('dep-1', { type: 'recordExit', exitCode: 0, signal: null }, 'service');
      expect(stopped.status).toBe('STOPPED');
      expect(await listLiveDeployments(t.db)).toEqual([]);
      const log = await readStream(t.db, 'dep-1');
      expect(log.map((e) => e.type)).toEqual([
        'DeploymentCreated',
        'DeploymentPlaced',
        'DeploymentLaunched',
        'DeploymentServing',
        'DeploymentStopRequested',
        'DeploymentStopped',
      ]);
      await store.command('dep-1', { type: 'delete' }, 'alice');
      expect(await listDeployments(t.db, { limit: 10 })).toEqual([]);
    });

    it('a second create of the same id is refused by the log', async () => {
      const store = new DeploymentStore(t);
      await store.command('dep-2', { type: 'create', deploymentId: 'dep-2', spec }, 'alice');
      await expect(store.command('dep-2', { type: 'create', deploymentId: 'dep-2', spec }, 'alice')).rejects.toThrow();
      expect((await readStream(t.db, 'dep-2')).length).toBe(1);
    });

    it('lists newest first, one owner’s when asked', async () => {
      const store = new DeploymentStore(t);
      await store.command('dep-a', { type: 'create', deploymentId: 'dep-a', spec }, 'alice');
      await store.command('dep-b', { type: 'create', deploymentId: 'dep-b', spec }, 'bob');
      expect((await listDeployments(t.db, { limit: 10 })).map((r) => r.record.id)).toEqual(['dep-b', 'dep-a']);
      expect((await listDeployments(t.db, { owner: 'alice', limit: 10 })).map((r) => r.record.id)).toEqual(['dep-a']);
    });

    it('the task read models rebuilt from the log pass over deployment streams', async () => {
      const tasks = new TaskStore(t, { runnerId: 'r1' });
      await tasks.submit('task-1', taskSpec('one'), { actor: 'alice' });
      await new DeploymentStore(t).command('dep-3', { type: 'create', deploymentId: 'dep-3', spec }, 'alice');
      const rebuilt = await rebuildFromLog(t.db);
      expect([...rebuilt.tasks.keys()]).toEqual(['task-1']);
    });

    it('a placed deployment holds its memory in device_holders, so an exclusive task waits; released, the task starts; the table and holders refold from the log', async () => {
      await configureDevices(t.db, uniformInventory(1, 80 * 1024));
      const store = new DeploymentStore(t);
      const choose = (devices: Parameters<typeof toDeviceViews>[0]) =>
        placeDeployment(toDeviceViews(devices, new Map()), { gpus: 1, gpuMemoryUtilization: 0.3 });
      const placed = await store.place('dep-h', [{ type: 'create', deploymentId: 'dep-h', spec }], choose, 'alice');
      expect(placed.devices).toEqual([hold]);
      expect(await listHolderRows(t.db)).toEqual([{ deviceId: 'gpu0', taskId: 'dep-h', memoryMb: 24_576, exclusive: false }]);
      // A second one at 0.85 does not fit beside it: refused under the lock, nothing written.
      await expect(
        store.place(
          'dep-x',
          [{ type: 'create', deploymentId: 'dep-x', spec: { ...spec, gpuMemoryUtilization: 0.85 } }],
          (d) => placeDeployment(toDeviceViews(d, new Map()), { gpus: 1, gpuMemoryUtilization: 0.85 }),
          'alice',
        ),
      ).rejects.toBeInstanceOf(DeploymentPlacementError);
      expect(await store.get('dep-x')).toBeNull();

      const tasks = new TaskStore(t, { runnerId: 'r1' });
      const queued = await tasks.submit('task-h', taskSpec('one'), { actor: 'alice' });
      expect(queued.task.status).toBe('QUEUED');
      await store.command('dep-h', { type: 'recordLaunch', server }, 'service');
      await store.command('dep-h', { type: 'markServing', endpoint: 'http://127.0.0.1:18001/v1', servedModels: ['m'] }, 'service');
      await store.command('dep-h', { type: 'recordSleep', level: 1 }, 'service');
      expect((await listHolderRows(t.db)).map((h) => h.taskId)).toEqual(['dep-h']);
      await store.command('dep-h', { type: 'recordRelease', observed: 'nvidia-smi: gpu0 0 GB' }, 'service');
      expect(await listHolderRows(t.db)).toEqual([]);
      expect((await tasks.schedule({ actor: 'scheduler' })).map((x) => x.id)).toEqual(['task-h']);
      // Reclaim is refused while the task holds the GPU exclusively.
      await expect(
        store.place(
          'dep-h',
          [],
          (d) => (toDeviceViews(d, new Map())[0]!.holders.some((h) => h.exclusive) ? { reason: 'busy' } : { holds: [] }),
          'service',
          true,
        ),
      ).rejects.toThrow(/busy/);

      expect((await compareWithLog(t.db)).differences).toEqual([]);
      await replaceReadModels(t);
      expect((await store.get('dep-h'))!.record).toMatchObject({ status: 'SLEEPING', holding: false, devices: [hold] });
      expect((await store.get('dep-h'))!.owner).toBe('alice');
      expect((await compareWithLog(t.db)).differences).toEqual([]);
    });
  });
}

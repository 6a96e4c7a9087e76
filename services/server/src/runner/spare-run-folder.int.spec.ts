// The spare folders on a real filesystem: taken as a new task's run folder (dataset folder
// inside) and output folder, as a later attempt's, or not at all (the launch then makes its
// folders, as without them); an earlier process's spares swept at start-up, another instance's
// left alone.
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { SpareRunFolder } from './spare-run-folder';

const root = mkdtempSync(join(tmpdir(), 'trainyard-spare-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** A data folder with its runs and outputs folders, as the service lays them out. */
function dataFolder(name: string): { runs: string; outputs: string } {
  const runs = join(root, name, 'runs');
  const outputs = join(root, name, 'outputs');
  mkdirSync(runs, { recursive: true });
  mkdirSync(outputs);
  return { runs, outputs };
}

const spares = (dir: string) => readdirSync(dir).filter((n) => n.startsWith('.'));

/** A started spare of `runnerId` in `runsDir`, once it is ready. */
async function readySpare(runsDir: string, runnerId = 'r1', warnings: string[] = []): Promise<SpareRunFolder> {
  const spare = new SpareRunFolder(runsDir, runnerId, ['dataset'], (m) => warnings.push(m));
  spare.start();
  await vi.waitFor(() => expect(spare.ready).toBe(true));
  return spare;
}

describe('SpareRunFolder', () => {
  it("becomes a new task's run folder with its dataset folder, and its output folder; the next one is made", async () => {
    const { runs, outputs } = dataFolder('new');
    const warnings: string[] = [];
    const spare = await readySpare(runs, 'r1', warnings);
    const runDir = join(runs, 'task-a', 'attempt-1');
    expect(spare.claim(runDir, join(outputs, 'task-a'))).toEqual({ runDir: true, outputDir: true });
    expect(readdirSync(runDir)).toEqual(['dataset']);
    expect(readdirSync(join(runs, 'task-a'))).toEqual(['attempt-1']);
    for (const d of [join(runs, 'task-a'), runDir, join(runDir, 'dataset')]) expect(statSync(d).mode & 0o777).toBe(0o700);
    expect(readdirSync(outputs)).toEqual(['task-a']);
    expect(readdirSync(join(outputs, 'task-a'))).toEqual([]);
    // The mode a folder made at launch gets (the umask's), not the private one it waited with.
    mkdirSync(join(root, 'new', 'made'));
    expect(statSync(join(outputs, 'task-a')).mode & 0o777).toBe(statSync(join(root, 'new', 'made')).mode & 0o777);
    expect(spares(runs)).toEqual([]);
    // None ready until the next is made: the caller makes its folders.
    expect(spare.claim(join(runs, 'task-b', 'attempt-1'), join(outputs, 'task-b'))).toEqual({ runDir: false, outputDir: false });
    spare.replenish();
    await vi.waitFor(() => expect(spare.ready).toBe(true));
    // An output folder below the task's (outputDir given at submission): its parent is made.
    expect(spare.claim(join(runs, 'task-b', 'attempt-1'), join(outputs, 'task-b', 'run-1'))).toEqual({ runDir: true, outputDir: true });
    expect(existsSync(join(outputs, 'task-b', 'run-1'))).toBe(true);
    expect(warnings).toEqual([]);
    spare.close();
  });

  it("becomes a later attempt's folder inside the task's existing one; an output folder already there is left as it is", async () => {
    const { runs, outputs } = dataFolder('later');
    mkdirSync(join(runs, 'task-a', 'attempt-1'), { recursive: true });
    mkdirSync(join(outputs, 'task-a', 'checkpoint-1'), { recursive: true });
    const spare = await readySpare(runs);
    const runDir = join(runs, 'task-a', 'attempt-2');
    expect(spare.claim(runDir, join(outputs, 'task-a'))).toEqual({ runDir: true, outputDir: false });
    expect(readdirSync(join(runs, 'task-a')).sort()).toEqual(['attempt-1', 'attempt-2']);
    expect(readdirSync(runDir)).toEqual(['dataset']);
    expect(readdirSync(join(outputs, 'task-a'))).toEqual(['checkpoint-1']);
    await vi.waitFor(() => expect(spares(runs)).toEqual([]));
    spare.close();
  });

  it('is not used for a run folder that exists or lies elsewhere, and leaves nothing of itself in a task folder', async () => {
    const { runs, outputs } = dataFolder('refused');
    mkdirSync(join(runs, 'task-a', 'attempt-1', 'kept'), { recursive: true });
    mkdirSync(join(outputs, 'task-c'));
    let spare = await readySpare(runs);
    expect(spare.claim(join(runs, 'task-a', 'attempt-1'), join(outputs, 'task-a'))).toEqual({ runDir: false, outputDir: true });
    expect(readdirSync(join(runs, 'task-a', 'attempt-1'))).toEqual(['kept']);
    spare.close();
    spare = await readySpare(runs);
    expect(spare.claim(join(root, 'elsewhere', 'task-b', 'attempt-1'), join(outputs, 'task-c'))).toEqual({
      runDir: false,
      outputDir: false,
    });
    expect(existsSync(join(root, 'elsewhere'))).toBe(false);
    spare.close();
    spare = await readySpare(runs);
    // Output folder already there, run folder new: the task's folder holds the run folder alone.
    expect(spare.claim(join(runs, 'task-c', 'attempt-1'), join(outputs, 'task-c'))).toEqual({ runDir: true, outputDir: false });
    expect(readdirSync(join(runs, 'task-c'))).toEqual(['attempt-1']);
    await vi.waitFor(() => expect(spares(runs)).toEqual([]));
    spare.close();
  });

  it("sweeps its own instance's spares at start-up, not another instance's; close removes the one it holds", async () => {
    const { runs } = dataFolder('sweep');
    mkdirSync(join(runs, '.spare-r1-left-by-a-crash', 'next', 'dataset'), { recursive: true });
    mkdirSync(join(runs, '.spare-r2-another-instance', 'next'), { recursive: true });
    const spare = await readySpare(runs, 'r1');
    const names = spares(runs);
    expect(names).toContain('.spare-r2-another-instance');
    expect(names).not.toContain('.spare-r1-left-by-a-crash');
    expect(names.filter((n) => n.startsWith('.spare-r1-'))).toHaveLength(1);
    spare.close();
    expect(readdirSync(runs)).toEqual(['.spare-r2-another-instance']);
    expect(existsSync(join(runs, '.spare-r2-another-instance', 'next'))).toBe(true);
  });
});

import { BaseSequencer, type TestSpecification } from 'vitest/node';
import { defineConfig } from 'vitest/config';

// The spec files that use the one live Slurm cluster (infra/slurm-up.sh), the longest first. They
// take it in turn (services/server/test/slurm-cluster.ts), and a file waiting for it holds a
// worker: so the longest starts first and the others are queued last, by when it is done.
const SLURM_CLUSTER_SPECS = ['services/server/test/slurm.e2e.spec.ts', 'services/server/src/executor/slurm.int.spec.ts'];

class ClusterAwareSequencer extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const sorted = await super.sort(files);
    const clusterRank = (f: TestSpecification) => SLURM_CLUSTER_SPECS.findIndex((s) => f.moduleId.endsWith(s));
    const cluster = sorted.filter((f) => clusterRank(f) >= 0).sort((a, b) => clusterRank(a) - clusterRank(b));
    const rest = sorted.filter((f) => clusterRank(f) < 0);
    return [...cluster.slice(0, 1), ...rest, ...cluster.slice(1)];
  }
}

export default defineConfig({
  test: {
    include: ['packages/*/src/**/*.spec.ts', 'services/*/src/**/*.spec.ts', 'services/*/test/**/*.spec.ts', 'bench/**/*.spec.ts'],
    globalSetup: ['./packages/store/test/global-setup.ts'],
    testTimeout: 180_000,
    hookTimeout: 180_000,
    // Two cores here: keep spawned servers and trainers from starving each other.
    maxWorkers: 2,
    sequence: { sequencer: ClusterAwareSequencer },
  },
});

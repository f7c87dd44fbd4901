import * as fs from 'node:fs';
import * as os from 'node:os';

/** cgroup v2's CPU quota of this process's group: `<quota> <period>`, or `max <period>` for none. */
const CGROUP_CPU_MAX = '/sys/fs/cgroup/cpu.max';

/**
 * The cores this process may use: the CPUs it may run on (os.availableParallelism) and, inside a
 * container with a CPU limit, that limit rounded up. Node 20's libuv does not read the cgroup
 * quota, so a pod limited to 2 CPUs on a 64-core node would otherwise count 64.
 */
export function availableCores(readFile: (file: string) => string = (file) => fs.readFileSync(file, 'utf8')): number {
  const cpus = os.availableParallelism();
  let text: string;
  try {
    text = readFile(CGROUP_CPU_MAX);
  } catch {
    return cpus;
  }
  const match = /^(\d+)\s+(\d+)\s*$/.exec(text.trim());
  if (match === null) return cpus;
  const quota = Number(match[1]);
  const period = Number(match[2]);
  if (!(quota > 0 && period > 0)) return cpus;
  return Math.max(1, Math.min(cpus, Math.ceil(quota / period)));
}

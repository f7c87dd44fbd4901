import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';

/** A process's CPU time from /proc, for the benches' `CPU µs per call`. */

let ticksPerSecond: number | undefined;

/** The kernel's clock ticks per second (/proc's CPU times are in them), asked once. */
function clockTicks(): number {
  ticksPerSecond ??= Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
  return ticksPerSecond;
}

/**
 * CPU seconds (user + system) of process `pid` and of its children (sluice's node:cluster workers),
 * from /proc: what a call costs the server in cores, which a shared 2-core machine disturbs far
 * less than it disturbs calls per second. NaN where /proc is not Linux's.
 */
export function cpuSeconds(pid: number): number {
  try {
    return [pid, ...childPids(pid)].reduce((total, p) => total + statSeconds(procStatFields(`/proc/${p}/stat`)), 0);
  } catch {
    return NaN;
  }
}

/** The pids of `pid`'s children (sluice's node:cluster workers), from /proc. */
export function childPids(pid: number): number[] {
  const pids: number[] = [];
  for (const p of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    try {
      if (Number(procStatFields(`/proc/${p}/stat`)[1]) === pid) pids.push(Number(p));
    } catch {
      // Gone meanwhile.
    }
  }
  return pids;
}

/** CPU seconds (user + system) in a /proc stat file's fields (a process's or a thread's). */
export function statSeconds(fields: readonly string[]): number {
  return (Number(fields[11]) + Number(fields[12])) / clockTicks();
}

/** A /proc stat file's fields after the command (which may hold spaces): [1] is the parent, [11] and [12] utime and stime. */
export function procStatFields(file: string): string[] {
  return fs.readFileSync(file, 'utf8').replace(/^.*\) /s, '').split(' ');
}

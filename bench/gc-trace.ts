import type { Readable } from 'node:stream';

/** Reading `node --trace-gc-nvp` (one line per collection, V8's own figures) for `bench:gc` and `bench:cpu-ab`. */

export interface GcFigures {
  /** Bytes per call. */
  readonly allocated: number;
  readonly promoted: number;
  /** Main-thread pause, µs per call. */
  readonly scavengePause: number;
  readonly markCompactPause: number;
  /** Mark-compacts per second. */
  readonly markCompacts: number;
  /** Of the run's wall time, the share the main thread spent paused in collections. */
  readonly pauseShare: number;
}

/** The `--trace-gc-nvp` lines a process prints on `stdout` from now until `take()`. */
export function collectGcLines(stdout: Readable): { take(): string[] } {
  let text = '';
  const onData = (chunk: Buffer): void => {
    text += chunk.toString();
  };
  stdout.on('data', onData);
  return {
    take: () => {
      stdout.removeListener('data', onData);
      return text.split('\n').filter((line) => / gc=\w+ /.test(line));
    },
  };
}

/** A numeric field of a `--trace-gc-nvp` line (`pause=1.5`, `promoted=765528`); 0 when absent. */
function field(line: string, name: string): number {
  const match = new RegExp(`\\b${name}=([\\d.]+)`).exec(line);
  return match === null ? 0 : Number(match[1]);
}

/** What the collections of `lines` cost `calls` calls answered over `seconds`. */
export function gcFigures(lines: readonly string[], calls: number, seconds: number): GcFigures {
  const scavenges = lines.filter((line) => line.includes(' gc=s '));
  const markCompacts = lines.filter((line) => line.includes(' gc=mc '));
  const sum = (of: readonly string[], name: string): number => of.reduce((total, line) => total + field(line, name), 0);
  const perCall = (value: number): number => (calls === 0 ? NaN : value / calls);
  return {
    allocated: perCall(sum(lines, 'allocated')),
    promoted: perCall(sum(scavenges, 'promoted')),
    scavengePause: perCall(sum(scavenges, 'pause') * 1000),
    markCompactPause: perCall(sum(markCompacts, 'pause') * 1000),
    markCompacts: markCompacts.length / seconds,
    pauseShare: (sum(scavenges, 'pause') + sum(markCompacts, 'pause')) / (seconds * 1000),
  };
}

import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { shouldRateLimitMethod } from '../src/server/proto';
import { benchRequest } from './bench-request';

/** The h2load runs of the A/B, workers and GC benches: the bench's request, 4 connections × 16 streams. */

/** Writes the bench's request (`descriptors` of them) as one gRPC frame into `dir`; returns the file. */
export function writeRequestFrame(dir: string, descriptors: 1 | 4): string {
  const message = shouldRateLimitMethod.serialize(benchRequest(descriptors, 1));
  const frame = Buffer.alloc(5 + message.length);
  frame.writeUInt32BE(message.length, 1);
  message.copy(frame, 5);
  const file = path.join(dir, `request-${descriptors}.bin`);
  fs.writeFileSync(file, frame);
  return file;
}

export interface H2loadResult {
  readonly succeeded: number;
  /** Failed or errored calls. */
  readonly failed: number;
  /** h2load's own CPU seconds (user + system, from GNU time); NaN without /usr/bin/time. */
  readonly cpuSeconds: number;
}

export interface H2loadLoad {
  /** h2load's --rps per connection; unset: closed loop. */
  readonly rps?: string | undefined;
  /** Concurrent streams per connection (16). */
  readonly streams?: number;
}

/**
 * h2load against ShouldRateLimit on 127.0.0.1:`port` for `seconds`, 4 connections × `load.streams`
 * streams (closed loop unless `load.rps`), sending `frame`.
 */
export function runH2load(port: number, frame: string, seconds: number, load: H2loadLoad = {}): Promise<H2loadResult> {
  const args = ['-D', String(seconds), '-c', '4', '-m', String(load.streams ?? 16), ...(load.rps !== undefined ? ['--rps', load.rps] : []), '-d', frame,
    '-H', 'content-type: application/grpc', '-H', 'te: trailers', `http://127.0.0.1:${port}/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit`];
  const timed = fs.existsSync('/usr/bin/time');
  return new Promise((resolve, reject) => {
    const child = timed
      ? spawn('/usr/bin/time', ['-f', 'cpu %U %S', 'h2load', ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
      : spawn('h2load', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (err += chunk.toString()));
    child.on('error', reject);
    child.on('exit', (code) => {
      if (code !== 0) {
        reject(new Error(`h2load exited with ${code}: ${err}`));
        return;
      }
      const cpu = /cpu ([\d.]+) ([\d.]+)/.exec(err);
      resolve({
        succeeded: Number(/(\d+) succeeded/.exec(out)?.[1] ?? NaN),
        failed: Number(/(\d+) failed/.exec(out)?.[1] ?? 0) + Number(/(\d+) errored/.exec(out)?.[1] ?? 0),
        cpuSeconds: cpu === null ? NaN : Number(cpu[1]) + Number(cpu[2]),
      });
    });
  });
}

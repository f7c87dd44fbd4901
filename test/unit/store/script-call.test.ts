import { Command } from 'ioredis';
import { Random } from '../../../bench/accuracy/prng';
import { ScriptCaller, type ScriptArg } from '../../../src/store/redis/script-call';
import { loadScripts } from '../../../src/store/redis/scripts';

/** What ioredis itself writes for the same call (its string path: every argument is text or a number). */
function ioredisBytes(name: 'eval' | 'evalsha', first: string, numKeys: number, args: readonly ScriptArg[]): Buffer {
  const written = new Command(name, [first, numKeys, ...args]).toWritable({});
  return typeof written === 'string' ? Buffer.from(written, 'utf8') : written;
}

const SCRIPT = loadScripts().decide;

function randomArg(random: Random): ScriptArg {
  const roll = random.next();
  if (roll < 0.3) return Math.floor(random.next() * 10 ** Math.floor(random.next() * 16));
  if (roll < 0.4) return [0, -1, -1234, 0.5, 1e21, 2 ** 53, 2 ** 53 + 2, Number.MAX_SAFE_INTEGER, 1e-7, -0][Math.floor(random.next() * 10)]!;
  const alphabet = ['a', 'Z', '9', ':', '{', '}', '%', ' ', '\r', '\n', 'é', 'ユ', '😀', '\ud800', '\udc00', '\u0000'];
  const length = Math.floor(random.next() * (random.next() < 0.1 ? 400 : 40));
  let text = '';
  for (let i = 0; i < length; i++) text += random.next() < 0.7 ? String.fromCharCode(97 + Math.floor(random.next() * 26)) : alphabet[Math.floor(random.next() * alphabet.length)];
  return text;
}

describe('ScriptCaller encoding', () => {
  const caller = new ScriptCaller(SCRIPT);

  it.each([
    ['no keys, the probe', 0, ['', 0]],
    ['one request of four checks', 4, ['sluice:v3:{abc}:sliding_window:60000:bench:client_id=c1', 'k2', 'k3', 'k4', '', 2, 'sliding_window', 1000000000, 60000, 1, '1', '', 'sliding_window', 1000000000, 1000, 1, '1', '', '0', 4, 1, 1, 1, 2]],
    ['ten arguments and more (two-digit counts and lengths)', 1, ['x'.repeat(12), ...Array.from({ length: 12 }, (_, i) => i * 1_000_003)]],
  ] as const)('writes exactly the bytes ioredis writes: %s', (_name, numKeys, args) => {
    expect(caller.encode(false, numKeys, args).equals(ioredisBytes('evalsha', SCRIPT.sha1, numKeys, args))).toBe(true);
    expect(caller.encode(true, numKeys, args).equals(ioredisBytes('eval', SCRIPT.text, numKeys, args))).toBe(true);
  });

  it('writes exactly the bytes ioredis writes for 2,000 random calls (any text, any number)', () => {
    const random = new Random(7);
    for (let call = 0; call < 2_000; call++) {
      const args = Array.from({ length: Math.floor(random.next() * (call % 10 === 0 ? 1_500 : 30)) }, () => randomArg(random));
      const numKeys = Math.floor(random.next() * (args.length + 1));
      const withText = random.next() < 0.05;
      const ours = caller.encode(withText, numKeys, args);
      const theirs = withText ? ioredisBytes('eval', SCRIPT.text, numKeys, args) : ioredisBytes('evalsha', SCRIPT.sha1, numKeys, args);
      if (!ours.equals(theirs)) throw new Error(`call ${call} differs: ${JSON.stringify(args)}`);
    }
  });
});

import { Command } from 'ioredis';
import type { RedisClient } from './connection';
import type { LuaScript } from './scripts';

/** A script argument as sent on the wire. */
export type ScriptArg = string | number;

const CR = 0x0d;
const LF = 0x0a;
const DOLLAR = 0x24;
const STAR = 0x2a;
const ZERO = 0x30;

/**
 * Calls one Lua script with its RESP request encoded here, in one pass into one Buffer, instead of
 * by ioredis's `Command`: that converts every argument to a string, concatenates a string per
 * argument and leaves the socket to flatten and encode the result: a batch of 30 requests of 4
 * checks has about 370 arguments. Encoding them here took sluice's CPU per call on Redis from 74.8
 * to 65.8 µs (bench:cpu-ab, bench/README.md).
 *
 * Everything else stays ioredis's: the command is an ioredis `Command` (routing by slot on a
 * cluster, MOVED/ASK redirection, the reply), and the script is run as ioredis runs a defined
 * command: EVAL the first time on a connection, EVALSHA after, and on NOSCRIPT (a failover, SCRIPT
 * FLUSH) the connection is unmarked and the call resent, which sends EVAL again. The bytes are
 * exactly the ones ioredis would write (tested against it).
 *
 * The command is sent as it comes, never auto-pipelined: DecideBatcher already sends one decide
 * call per event-loop turn and slot, and on a cluster ioredis would route an auto-pipelined script
 * by its key count, putting calls for keys on different nodes in one pipeline.
 */
export class ScriptCaller {
  /** `$7\r\nevalsha\r\n$40\r\n<sha>\r\n`. */
  private readonly evalshaHead: Buffer;
  /** `$4\r\neval\r\n$<n>\r\n<script>\r\n`. */
  private readonly evalHead: Buffer;
  /** Connections (sockets) that have been sent the script's text. */
  private readonly loaded = new WeakSet<object>();

  constructor(private readonly script: LuaScript) {
    this.evalshaHead = Buffer.from(`$7\r\nevalsha\r\n$${script.sha1.length}\r\n${script.sha1}\r\n`, 'latin1');
    this.evalHead = Buffer.from(`$4\r\neval\r\n$${Buffer.byteLength(script.text)}\r\n${script.text}\r\n`, 'utf8');
  }

  /** Runs the script with `numKeys` keys and then ARGV in `keysThenArgs`; the reply is not converted to text. */
  call(client: RedisClient, numKeys: number, keysThenArgs: readonly ScriptArg[]): Promise<unknown> {
    return this.send(client, numKeys, keysThenArgs).catch((err: unknown) => {
      if (!isNoScript(err)) throw err;
      // The connection lost the script (its socket is unmarked): resent, the call carries its text.
      return this.send(client, numKeys, keysThenArgs);
    });
  }

  /** The request's bytes, as EVAL (`withText`) or EVALSHA. */
  encode(withText: boolean, numKeys: number, keysThenArgs: readonly ScriptArg[]): Buffer {
    return encodeCall(withText ? this.evalHead : this.evalshaHead, numKeys, keysThenArgs);
  }

  private send(client: RedisClient, numKeys: number, keysThenArgs: readonly ScriptArg[]): Promise<unknown> {
    const command = new ScriptCommand(this, this.script.sha1, numKeys, keysThenArgs);
    return client.sendCommand(command) as Promise<unknown>;
  }

  /** Whether `socket` must be sent the text (first call on it), marking it as sent. */
  needsText(socket: object): boolean {
    if (this.loaded.has(socket)) return false;
    this.loaded.add(socket);
    return true;
  }

  forget(socket: object): void {
    this.loaded.delete(socket);
  }
}

/**
 * An EVALSHA as ioredis sees it: its arguments are only the SHA, a key count of 1 and the first key
 * (what a cluster routes by: every key of a call shares its slot), and it writes its own bytes.
 */
class ScriptCommand extends Command {
  constructor(
    private readonly caller: ScriptCaller,
    sha: string,
    private readonly numKeys: number,
    private readonly keysThenArgs: readonly ScriptArg[],
  ) {
    super('evalsha', numKeys > 0 ? [sha, '1', String(keysThenArgs[0])] : [sha, '0'], { replyEncoding: null });
  }

  override toWritable(socket: object): Buffer {
    const withText = this.caller.needsText(socket);
    const reject = this.reject;
    // As ioredis's scripts: a NOSCRIPT reply means this connection no longer has the script.
    this.reject = (err: Error): void => {
      if (isNoScript(err)) this.caller.forget(socket);
      reject.call(this, err);
    };
    return this.caller.encode(withText, this.numKeys, this.keysThenArgs);
  }
}

function isNoScript(err: unknown): boolean {
  return err instanceof Error && err.message.includes('NOSCRIPT');
}

/** Byte lengths of the current call's string arguments (reused: no array per call). */
let sizes = new Int32Array(1024);

/**
 * `*<n>\r\n` + `head` (the command name and its first argument, encoded) + the key count + every
 * argument as a bulk string. Strings as UTF-8 (as a socket writes a string); numbers as `String(n)`
 * gives them, non-negative whole ones written digit by digit.
 */
export function encodeCall(head: Buffer, numKeys: number, args: readonly ScriptArg[]): Buffer {
  const count = args.length;
  if (sizes.length < count) sizes = new Int32Array(Math.max(count, sizes.length * 2));
  let total = 1 + digits(count + 3) + 2 + head.length + bulkSize(digits(numKeys));
  for (let i = 0; i < count; i++) {
    const arg = args[i]!;
    let size: number;
    if (typeof arg === 'string') size = Buffer.byteLength(arg, 'utf8');
    else if (isWhole(arg)) size = digits(arg);
    else size = String(arg).length;
    sizes[i] = size;
    total += bulkSize(size);
  }

  const out = Buffer.allocUnsafe(total);
  out[0] = STAR;
  let at = writeWhole(out, 1, count + 3);
  out[at++] = CR;
  out[at++] = LF;
  at += head.copy(out, at);
  at = writeWholeBulk(out, at, numKeys);
  for (let i = 0; i < count; i++) {
    const arg = args[i]!;
    const size = sizes[i]!;
    out[at++] = DOLLAR;
    at = writeWhole(out, at, size);
    out[at++] = CR;
    out[at++] = LF;
    if (typeof arg === 'string') {
      // All ASCII exactly when its UTF-8 is as long as the string: one byte per character.
      at += out.write(arg, at, size, size === arg.length ? 'latin1' : 'utf8');
    } else if (isWhole(arg)) {
      at = writeWhole(out, at, arg);
    } else {
      at += out.write(String(arg), at, size, 'latin1');
    }
    out[at++] = CR;
    out[at++] = LF;
  }
  return out;
}

/** A number `String` writes as plain digits: whole, not negative, below 2^53. */
function isWhole(n: number): boolean {
  return Number.isSafeInteger(n) && n >= 0;
}

function bulkSize(size: number): number {
  return 1 + digits(size) + 2 + size + 2;
}

function digits(n: number): number {
  let count = 1;
  for (let rest = n; rest >= 10; rest = Math.floor(rest / 10)) count++;
  return count;
}

/** Writes whole `n` (not negative) in decimal at `at`; returns the position after it. */
function writeWhole(out: Buffer, at: number, n: number): number {
  const end = at + digits(n);
  let p = end;
  let rest = n;
  do {
    out[--p] = ZERO + (rest % 10);
    rest = Math.floor(rest / 10);
  } while (rest > 0);
  return end;
}

function writeWholeBulk(out: Buffer, at: number, n: number): number {
  let p = at;
  out[p++] = DOLLAR;
  p = writeWhole(out, p, digits(n));
  out[p++] = CR;
  out[p++] = LF;
  p = writeWhole(out, p, n);
  out[p++] = CR;
  out[p++] = LF;
  return p;
}

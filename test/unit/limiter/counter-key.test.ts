import type { AlgorithmName, DescriptorEntry, LimitSpec } from '../../../src/config/types';
import { counterKey, keyPrefixProblem } from '../../../src/limiter/counter-key';
import { keySlot } from '../../../src/store/redis/key-slot';

const limit = (algorithm: AlgorithmName = 'sliding_window', windowMs = 60_000): LimitSpec => ({
  requestsPerUnit: 10,
  unit: 'MINUTE',
  unitMultiplier: windowMs / 60_000,
  algorithm,
  windowMs,
});

const entries = (...pairs: Array<[string, string]>): DescriptorEntry[] => pairs.map(([key, value]) => ({ key, value }));

interface Identity {
  readonly domain: string;
  readonly entries: DescriptorEntry[];
  readonly limit?: LimitSpec;
}

const keyOf = (id: Identity, prefix = ''): string => counterKey(prefix, id.domain, id.entries, id.limit ?? limit());

const TAG = /\{([^}]*)\}/;

describe('counterKey', () => {
  it('builds the same key whether its hash tag was remembered or computed afresh', () => {
    const id = entries(['client_id', 'app-1'], ['user_id', 'u1']);
    const first = counterKey('', 'oauth2', id, limit());
    expect(counterKey('', 'oauth2', id, limit())).toBe(first);
    // More distinct first entries than the tag cache holds: it is emptied and refilled on the way.
    const tags = new Set<string>();
    for (let i = 0; i < 25_000; i++) tags.add(TAG.exec(counterKey('', 'oauth2', entries(['client_id', `c${i}`]), limit()))![1]!);
    expect(tags.size).toBe(25_000);
    expect(counterKey('', 'oauth2', id, limit())).toBe(first);
  });

  it('gives a remembered identity exactly the key a fresh process builds, for any strings', () => {
    // Identities from an alphabet of safe, unsafe, non-ASCII and lone-surrogate characters, some
    // parts longer than a key part. Each is keyed here twice, through equal strings that are not
    // the same objects (as every request decodes anew), with the cache replaced in between by
    // enough other identities.
    let seed = 11;
    const random = (): number => {
      seed = (seed * 16807) % 2147483647;
      return seed / 2147483647;
    };
    const alphabet = ['a', 'Z', '0', '-', '.', '_', '~', '/', ':', '=', '%', '{', '}', '#', '!', ' ', '\n', 'é', '\u20ac', '\ud83d\ude00', '\ud800', '\udfff'];
    const text = (max: number): string => Array.from({ length: Math.floor(random() * max) }, () => alphabet[Math.floor(random() * alphabet.length)]!).join('');
    // Few domains, keys and values, drawn independently: identities share each part with others.
    const pool = (n: number, max: number): string[] => Array.from({ length: n }, () => text(max));
    const domains = ['oauth2', ...pool(3, 12)];
    const keys = ['client_id', 'user_id', ...pool(4, 10)];
    const values = pool(40, 30).concat(pool(5, 200));
    const pick = (from: readonly string[]): string => from[Math.floor(random() * from.length)]!;
    const ids: Identity[] = Array.from({ length: 3_000 }, (_, i) => ({
      domain: pick(domains),
      entries: Array.from({ length: 1 + Math.floor(random() * 3) }, () => ({ key: pick(keys), value: pick(values) })),
      limit: limit(i % 2 === 0 ? 'sliding_window' : 'fixed_window'),
    }));
    const copy = (s: string): string => `${s} `.slice(0, -1);
    const again = (id: Identity): Identity => ({ domain: copy(id.domain), entries: id.entries.map((e) => ({ key: copy(e.key), value: copy(e.value) })), limit: id.limit! });
    const first = ids.map((id) => keyOf(id));
    const second = ids.map((id) => keyOf(again(id)));
    for (let i = 0; i < 12_000; i++) counterKey('', 'churn', entries(['client_id', `c${i}`]), limit());
    const third = ids.map((id) => keyOf(again(id)));
    // In a fresh copy of the module each identity is the first it keys: built, not remembered.
    const fresh = ids.slice(0, 300).map((id) => {
      let key = '';
      jest.isolateModules(() => {
        // eslint-disable-next-line @typescript-eslint/no-require-imports
        const isolated = require('../../../src/limiter/counter-key') as typeof import('../../../src/limiter/counter-key');
        key = isolated.counterKey('', id.domain, id.entries, id.limit!);
      });
      return key;
    });
    expect(second).toEqual(first);
    expect(third).toEqual(first);
    expect(fresh).toEqual(first.slice(0, 300));
    expect(new Set(first).size).toBe(new Set(ids.map((id) => JSON.stringify(id))).size);
  });

  it('reads as prefix, version, hash tag, limit identity, domain and entries', () => {
    const key = counterKey('', 'oauth2', entries(['client_id', 'app-1'], ['user_id', 'u@x.org']), limit());
    expect(key).toMatch(/^sluice:v3:\{[A-Za-z0-9_-]{12}\}:sliding_window:60000:oauth2:client_id=app-1:user_id=u%40x\.org$/);
    expect(counterKey('prod_', 'oauth2', entries(['client_id', 'app-1']), limit())).toMatch(/^prod_sluice:v3:\{/);
  });

  it('separates the limits of one node by algorithm, window, then variant, keeping the first key as it was', () => {
    const node = entries(['client_id', 'app-1']);
    const first = counterKey('', 'oauth2', node, limit());
    expect(first).toMatch(/:sliding_window:60000:oauth2:client_id=app-1$/);
    expect(counterKey('', 'oauth2', node, { ...limit(), counterVariant: 0 })).toBe(first);
    // requests_per_unit and burst are not part of the identity: editing them keeps the count.
    expect(counterKey('', 'oauth2', node, { ...limit(), requestsPerUnit: 99, burst: 7 })).toBe(first);
    expect(counterKey('', 'oauth2', node, { ...limit(), counterVariant: 1 })).toMatch(/:sliding_window:60000\.1:oauth2:client_id=app-1$/);
    expect(counterKey('', 'oauth2', node, limit('token_bucket', 1_000))).toMatch(/:token_bucket:1000:oauth2:client_id=app-1$/);
    // All of one node's counters are in one slot: one script call decides them.
    const keys = [first, counterKey('', 'oauth2', node, { ...limit(), counterVariant: 1 }), counterKey('', 'oauth2', node, limit('sliding_log'))];
    expect(new Set(keys.map(keySlot)).size).toBe(1);
  });

  it('keeps routes and UUIDs readable', () => {
    const key = counterKey('', 'api', entries(['route', '/v1/orders'], ['client_id', '3f2b6c1e-0d1a-4c4e-9a53-8c1f1f4f6b1e']), limit());
    expect(key).toContain(':route=/v1/orders:client_id=3f2b6c1e-0d1a-4c4e-9a53-8c1f1f4f6b1e');
  });

  // Every identity below differs from every other; their keys must too.
  const tricky: Array<[string, Identity]> = [
    ['plain', { domain: 'd', entries: entries(['k', 'v']) }],
    ['two entries', { domain: 'd', entries: entries(['k', 'v'], ['k2', 'v2']) }],
    ['separators inside a value', { domain: 'd', entries: entries(['k', 'v:k2=v2']) }],
    ['separators inside a key', { domain: 'd', entries: entries(['k=v:k2', 'v2']) }],
    ['domain swallowing an entry', { domain: 'd:k=v', entries: entries(['k2', 'v2']) }],
    ['envoy-style underscore (value)', { domain: 'd', entries: entries(['k', 'v_1']) }],
    ['envoy-style underscore (key)', { domain: 'd', entries: entries(['k_v', '1']) }],
    ['pipe in a value', { domain: 'd', entries: entries(['k', 'a|b']) }],
    ['pipe in a key', { domain: 'd', entries: entries(['k|a', 'b']) }],
    ['braces', { domain: 'd', entries: entries(['k', '{x}']) }],
    ['open brace', { domain: 'd', entries: entries(['k', '{x']) }],
    ['close brace', { domain: 'd', entries: entries(['k', 'x}']) }],
    ['literal percent escape', { domain: 'd', entries: entries(['k', '%3A']) }],
    ['the character it stands for', { domain: 'd', entries: entries(['k', ':']) }],
    ['literal hash marker', { domain: 'd', entries: entries(['k', '#abc']) }],
    ['literal tail-hash marker', { domain: 'd', entries: entries(['k', '!abc']) }],
    ['newline', { domain: 'd', entries: entries(['k', 'a\nb']) }],
    ['carriage return', { domain: 'd', entries: entries(['k', 'a\rb']) }],
    ['space', { domain: 'd', entries: entries(['k', 'a b']) }],
    ['empty value', { domain: 'd', entries: entries(['k', '']) }],
    ['blank value', { domain: 'd', entries: entries(['k', ' ']) }],
    ['empty key and value', { domain: 'd', entries: entries(['', '']) }],
    ['no entries', { domain: 'd', entries: [] }],
    ['empty domain', { domain: '', entries: entries(['k', 'v']) }],
    ['precomposed é', { domain: 'd', entries: entries(['k', '\u00e9']) }],
    ['decomposed é', { domain: 'd', entries: entries(['k', 'e\u0301']) }],
    ['lone surrogate D800', { domain: 'd', entries: entries(['k', '\ud800']) }],
    ['lone surrogate D801', { domain: 'd', entries: entries(['k', '\ud801']) }],
    ['replacement character', { domain: 'd', entries: entries(['k', '\ufffd']) }],
    ['10 KB value', { domain: 'd', entries: entries(['k', 'x'.repeat(10_240)]) }],
    ['10 KB + 1 value', { domain: 'd', entries: entries(['k', 'x'.repeat(10_241)]) }],
    ['10 KB value, last character differs', { domain: 'd', entries: entries(['k', `${'x'.repeat(10_239)}y`]) }],
    ['64-character value', { domain: 'd', entries: entries(['k', 'y'.repeat(64)]) }],
    ['65-character value', { domain: 'd', entries: entries(['k', 'y'.repeat(65)]) }],
    ['entries in the other order', { domain: 'd', entries: entries(['k2', 'v2'], ['k', 'v']) }],
    ['fixed window', { domain: 'd', entries: entries(['k', 'v']), limit: limit('fixed_window') }],
    ['sliding log', { domain: 'd', entries: entries(['k', 'v']), limit: limit('sliding_log') }],
    ['token bucket', { domain: 'd', entries: entries(['k', 'v']), limit: limit('token_bucket') }],
    ['second limit of a node with the same window', { domain: 'd', entries: entries(['k', 'v']), limit: { ...limit(), counterVariant: 1 } }],
    ['third limit of a node with the same window', { domain: 'd', entries: entries(['k', 'v']), limit: { ...limit(), counterVariant: 2 } }],
    ['a window that spells a variant', { domain: 'd', entries: entries(['k', 'v']), limit: limit('sliding_window', 600_001) }],
    ['ten-minute window', { domain: 'd', entries: entries(['k', 'v']), limit: limit('sliding_window', 600_000) }],
    [
      'many long entries (tail hashed)',
      { domain: 'd', entries: Array.from({ length: 20 }, (_, i) => ({ key: `key-${i}`, value: 'v'.repeat(40) })) },
    ],
    [
      'many long entries, one character differs',
      { domain: 'd', entries: Array.from({ length: 20 }, (_, i) => ({ key: `key-${i}`, value: i === 19 ? `${'v'.repeat(39)}w` : 'v'.repeat(40) })) },
    ],
  ];

  it('gives every tricky identity its own key (no collisions)', () => {
    const seen = new Map<string, string>();
    for (const [name, id] of tricky) {
      const key = keyOf(id);
      expect([name, seen.get(key)]).toEqual([name, undefined]);
      seen.set(key, name);
    }
  });

  it.each(tricky)('lets no value inject a hash tag or pick the slot: %s', (_name, id) => {
    const key = keyOf(id);
    // Exactly one brace pair: ours, holding only a hash.
    expect(key.split('{')).toHaveLength(2);
    expect(key.split('}')).toHaveLength(2);
    const tag = TAG.exec(key)![1]!;
    expect(tag).toMatch(/^[A-Za-z0-9_-]{12}$/);
    expect(keySlot(key)).toBe(keySlot(tag));
  });

  it('keeps keys short whatever the request carried', () => {
    const huge = 'z'.repeat(10_240);
    const worst = counterKey(
      '',
      huge,
      Array.from({ length: 64 }, () => ({ key: huge, value: `{${huge}}\n` })),
      limit(),
    );
    expect(worst.length).toBeLessThanOrEqual(480);
    for (const [, id] of tricky) expect(keyOf(id).length).toBeLessThanOrEqual(480);
  });

  it('puts the limits of one client (same first entry) in one slot', () => {
    const client = ['client_id', 'app-1'] as [string, string];
    const keys = [
      counterKey('', 'oauth2', entries(client), limit()),
      counterKey('', 'oauth2', entries(client, ['user_id', 'u-1']), limit()),
      counterKey('', 'oauth2', entries(client, ['user_id', 'u-2'], ['scope', 'orders.read']), limit('fixed_window', 3_600_000)),
      counterKey('', 'oauth2', entries(client, ['route', '{evil}']), limit()),
    ];
    expect(new Set(keys).size).toBe(keys.length);
    expect(new Set(keys.map(keySlot)).size).toBe(1);
  });

  it('spreads different clients, and one client in different domains, over the slots', () => {
    const slots = new Set<number>();
    for (let i = 0; i < 2_000; i++) slots.add(keySlot(counterKey('', 'oauth2', entries(['client_id', `app-${i}`]), limit())));
    // 2,000 random draws from 16,384 slots give about 1,884 distinct ones.
    expect(slots.size).toBeGreaterThan(1_750);
    const domains = new Set(['a', 'b', 'c', 'd', 'e'].map((d) => keySlot(counterKey('', d, entries(['client_id', 'app-1']), limit()))));
    expect(domains.size).toBe(5);
  });

  it('does not let the prefix move the slot', () => {
    const id: Identity = { domain: 'd', entries: entries(['client_id', 'x']) };
    expect(keySlot(keyOf(id, 'tenant-a_'))).toBe(keySlot(keyOf(id, 'tenant-b_')));
  });
});

describe('keyPrefixProblem', () => {
  it('accepts ordinary prefixes', () => {
    expect(keyPrefixProblem('')).toBeUndefined();
    expect(keyPrefixProblem('prod:ratelimit_')).toBeUndefined();
  });

  it('rejects braces, which would form a hash tag ahead of ours', () => {
    expect(keyPrefixProblem('a{b}')).toMatch(/must not contain/);
    expect(keyPrefixProblem('}')).toMatch(/must not contain/);
  });
});

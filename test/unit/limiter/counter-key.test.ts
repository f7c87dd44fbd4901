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

--[[
  decide.lua — decides a batch of requests, in order, each all-or-nothing, exactly as
  MemoryStore.decideNow would decide them one after the other (src/store/memory/memory-store.ts).
  A batch is the requests (or, on a cluster, the parts of requests in one slot) that arrived in
  one event-loop turn of one sluice process: one script call instead of one per request.

  KEYS      the counter keys of every check of every request, in order (built by
            src/limiter/counter-key.ts). A key may repeat, within a request or across requests:
            each check sees the charges of the checks and requests before it.
  ARGV[1]   now, epoch ms; '' reads Redis TIME instead (one clock for every sluice instance).
  ARGV[2]   s, the number of distinct check specs in the batch; then 6 fields per spec:
            algorithm name, limit, window ms, hits (0 = check only), enforced ('1', or '0' for
            shadow rules whose rejection does not block the request), burst (token_bucket's
            bucket size; '' = the limit, and ignored by the other algorithms).
            (The requests of a batch mostly repeat a few specs: sent once, they cost neither
            sluice nor Redis an argument per field per check.)
  Then, per request r, in order:
            charge_rejected ('1': charge rejected hits too, the reference's counting; '0':
            all-or-nothing), n (its number of checks), then per check i of the request the
            index (1-based) of its spec.
  Reply     integers only: { now ms, then per request r: charged (1 when r's hits were written,
            else 0), then per check i of r: admitted (1/0), remaining, reset ms,
            uncharged remaining, uncharged reset ms, window index }
            `remaining`/`reset` are what to report from this call alone; the uncharged pair is
            what to report if the caller undoes the charge (another slot of the same request
            rejected it, or its caller stopped waiting), and `window` is where the hits went, for
            refund.lua (a window index, or for sliding_log and token_bucket the instant they were
            charged at).

  Why Lua and not MULTI/EXEC: a transaction cannot branch on what it reads, so "charge only if
  every limit admits" would need WATCH and client retries, which under contention on a hot
  key become many round trips. A script reads, decides and writes in one atomic step, one call.

  Cost: each counter touched by the batch is read once (GET) and, if it changed, written once at
  the end (SET ... PXAT, the expiry in the same command), whatever the number of requests that
  charged it; the per-call cost of EVALSHA (lookup, argument conversion, TIME) is paid once per
  batch. Redis >= 6.2 (PXAT).

  Time: with Redis 7's effects replication, reading TIME before writing is safe (replicas apply
  the writes, they do not re-run the script with their own clock). Stored state never shrinks
  when a clock steps back (see each algorithm). With TIME, expiry is PEXPIREAT at the instant
  the algorithm gives; with an injected `now` (CLOCK=local, tests), whose frame may differ from
  Redis's clock, it is the same distance from now (SET ... PX).
]]

--@include lib/state.lua
--@include algorithms/index.lua

local now
local injected = ARGV[1] ~= ''
if injected then
  now = tonumber(ARGV[1])
  if now == nil then
    return redis.error_reply('ERR sluice decide: now is not a number')
  end
else
  local time = redis.call('TIME')
  now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
end

-- What this batch has made of each counter it touched: the state after every request charged
-- so far (`current`) and its expiry; `loaded` is what the key held (unchanged counters are not
-- written back).
local current = {}
local loaded = {}
local expires = {}
-- The specs, as parallel arrays, each checked once.
local spec_count = tonumber(ARGV[2])
if spec_count == nil or spec_count < 0 or 2 + 6 * spec_count > #ARGV then
  return redis.error_reply(string.format('ERR sluice decide: bad spec count or too few arguments (%d arguments)', #ARGV))
end
local spec_algorithm = {}
local spec_limit = {}
local spec_window = {}
local spec_hits = {}
local spec_enforced = {}
local spec_burst = {}
for s = 1, spec_count do
  local at = 3 + 6 * (s - 1)
  local name = ARGV[at]
  local algorithm = ALGORITHMS[name]
  if algorithm == nil then
    return redis.error_reply('ERR sluice decide: unknown algorithm ' .. name)
  end
  local limit = tonumber(ARGV[at + 1])
  local window_ms = tonumber(ARGV[at + 2])
  local hits = tonumber(ARGV[at + 3])
  if limit == nil or window_ms == nil or window_ms <= 0 or hits == nil then
    return redis.error_reply(string.format('ERR sluice decide: spec %d has a bad limit, window or hits', s))
  end
  if algorithm.max_limit ~= nil and limit > algorithm.max_limit then
    return redis.error_reply(string.format('ERR sluice decide: spec %d: %s limits are capped at %d', s, name, algorithm.max_limit))
  end
  spec_algorithm[s] = algorithm
  spec_limit[s] = limit
  spec_window[s] = window_ms
  spec_hits[s] = hits
  spec_enforced[s] = ARGV[at + 4] == '1'
  spec_burst[s] = tonumber(ARGV[at + 5])
end

local reply = { now }
local size = 1
local arg = 3 + 6 * spec_count
local key_index = 0
local request = 0
-- A request's staged charges, as parallel arrays reused for every request (no table per
-- request): the keys it charged, their states and expiries. Few checks per request, so finding a
-- key is a short scan.
local staged_keys = {}
local staged_states = {}
local staged_expiry = {}

while arg <= #ARGV do
  request = request + 1
  local charge_rejected = ARGV[arg] == '1'
  local count = tonumber(ARGV[arg + 1])
  if count == nil or count < 0 or arg + 1 + count > #ARGV or key_index + count > #KEYS then
    return redis.error_reply(string.format('ERR sluice decide: request %d: bad check count or too few arguments (%d keys, %d arguments)', request, #KEYS, #ARGV))
  end
  arg = arg + 2

  -- The request's reply goes in place: its charged flag at `base`, then 6 values per check
  -- (the reported pair is the uncharged one unless the request is charged, see below).
  local base = size + 1
  local staged = 0
  local all_admitted = true
  for i = 1, count do
    local key = KEYS[key_index + i]
    local spec = tonumber(ARGV[arg + i - 1])
    local algorithm = spec and spec_algorithm[spec]
    if not algorithm then
      return redis.error_reply(string.format('ERR sluice decide: request %d: check %d has no spec %s', request, i, tostring(ARGV[arg + i - 1])))
    end
    -- This request's own earlier charge of the key, else the batch's, else what Redis holds.
    local state
    local slot = 0
    for j = staged, 1, -1 do
      if staged_keys[j] == key then
        slot = j
        state = staged_states[j]
        break
      end
    end
    if state == nil then
      state = current[key]
      if state == nil then
        state = redis.call('GET', key) or ''
        current[key] = state
        loaded[key] = state
      end
    end
    local admitted, next_state, expires_at, window, charged_remaining, charged_reset, uncharged_remaining, uncharged_reset =
      algorithm.evaluate(state, spec_limit[spec], spec_window[spec], spec_hits[spec], spec_burst[spec], now, charge_rejected)
    local at = base + 6 * (i - 1)
    if charge_rejected or admitted then
      if slot == 0 then
        staged = staged + 1
        slot = staged
        staged_keys[slot] = key
        staged_expiry[slot] = expires_at
      elseif expires_at > staged_expiry[slot] then
        staged_expiry[slot] = expires_at
      end
      staged_states[slot] = next_state
      reply[at + 2] = charged_remaining
      reply[at + 3] = charged_reset
    else
      reply[at + 2] = uncharged_remaining
      reply[at + 3] = uncharged_reset
    end
    if admitted then
      reply[at + 1] = 1
    else
      reply[at + 1] = 0
      if spec_enforced[spec] then
        all_admitted = false
      end
    end
    reply[at + 4] = uncharged_remaining
    reply[at + 5] = uncharged_reset
    reply[at + 6] = window
  end
  arg = arg + count
  key_index = key_index + count

  if charge_rejected or all_admitted then
    for j = 1, staged do
      local key = staged_keys[j]
      current[key] = staged_states[j]
      local expiry = expires[key]
      if expiry == nil or staged_expiry[j] > expiry then
        expires[key] = staged_expiry[j]
      end
    end
    reply[base] = 1
  else
    -- Rejected: every check reports what it would be with nothing charged.
    for i = 1, count do
      local at = base + 6 * (i - 1)
      reply[at + 2] = reply[at + 4]
      reply[at + 3] = reply[at + 5]
    end
    reply[base] = 0
  end
  size = base + 6 * count
end

if key_index ~= #KEYS then
  return redis.error_reply(string.format('ERR sluice decide: %d keys given, the requests have %d checks', #KEYS, key_index))
end

-- One write per counter the batch changed, whatever the number of requests that charged it,
-- with its expiry in the same command.
for key, state in pairs(current) do
  if state ~= loaded[key] then
    if state == '' then
      redis.call('DEL', key)
    elseif injected then
      redis.call('SET', key, state, 'PX', format_number(math.max(1, math.ceil(expires[key] - now))))
    else
      redis.call('SET', key, state, 'PXAT', format_number(expires[key]))
    end
  end
end

return reply

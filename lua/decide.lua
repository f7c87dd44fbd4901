--[[
  decide.lua — decides one request's checks (those of one cluster slot) all-or-nothing, exactly
  as MemoryStore.decideNow does (src/store/memory/memory-store.ts).

  KEYS[i]   counter key of check i (built by src/limiter/counter-key.ts). A key may repeat: checks
            on one counter in one request see each other's charges.
  ARGV[1]   now, epoch ms; '' reads Redis TIME instead (one clock for every sluice instance).
  ARGV[2]   '1': charge rejected hits too (the reference's counting); '0': all-or-nothing.
  ARGV[3 + 6(i-1) .. 8 + 6(i-1)], for check i:
            algorithm name, limit, window ms, hits (0 = check only), enforced ('1', or '0' for
            shadow rules whose rejection does not block the request), burst (token_bucket's
            bucket size; '' = the limit, and ignored by the other algorithms).
  Reply     integers only: { now ms, charged (1 when this call wrote its hits, else 0),
            then per check i: admitted (1/0), remaining, reset ms,
                              uncharged remaining, uncharged reset ms, window index }
            `remaining`/`reset` are what to report from this call alone; the uncharged pair is
            what to report if the caller undoes the charge (another slot of the same request
            rejected it), and `window` is where the hits went, for refund.lua (a window index,
            or for sliding_log and token_bucket the instant they were charged at).

  Why Lua and not MULTI/EXEC: a transaction cannot branch on what it reads, so "charge only if
  every limit admits" would need WATCH and client retries, which under contention on a hot
  key become many round trips. A script reads, decides and writes in one atomic step, one call.

  Time: with Redis 7's effects replication, reading TIME before writing is safe (replicas apply
  the writes, they do not re-run the script with their own clock). Stored state never shrinks
  when a clock steps back (see each algorithm). With TIME, expiry is PEXPIREAT at the instant
  the algorithm gives; with an injected `now` (CLOCK=local, tests), whose frame may differ from
  Redis's clock, it is the same distance from now as a relative PEXPIRE.
]]

--@include lib/state.lua
--@include algorithms/index.lua

local count = #KEYS
if #ARGV ~= 2 + 6 * count then
  return redis.error_reply(string.format('ERR sluice decide: %d keys need %d arguments, got %d', count, 2 + 6 * count, #ARGV))
end

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
local charge_rejected = ARGV[2] == '1'

-- Charges are staged so that two checks on one counter see each other, and so that nothing is
-- written when the request is rejected.
local staged = {}
local evaluations = {}
local all_admitted = true
for i = 1, count do
  local key = KEYS[i]
  local base = 2 + 6 * (i - 1)
  local name = ARGV[base + 1]
  local algorithm = ALGORITHMS[name]
  if algorithm == nil then
    return redis.error_reply('ERR sluice decide: unknown algorithm ' .. name)
  end
  local check = {
    limit = tonumber(ARGV[base + 2]),
    window_ms = tonumber(ARGV[base + 3]),
    hits = tonumber(ARGV[base + 4]),
    burst = tonumber(ARGV[base + 6]),
  }
  if check.limit == nil or check.window_ms == nil or check.window_ms <= 0 or check.hits == nil then
    return redis.error_reply(string.format('ERR sluice decide: check %d has a bad limit, window or hits', i))
  end
  if algorithm.max_limit ~= nil and check.limit > algorithm.max_limit then
    return redis.error_reply(string.format('ERR sluice decide: check %d: %s limits are capped at %d', i, name, algorithm.max_limit))
  end
  -- `before` is what the store holds (for writing only the difference); `state` is what this
  -- request has staged on top of it.
  local entry = staged[key]
  local before
  local state
  if entry ~= nil then
    before = entry.before
    state = entry.state
  else
    before = algorithm.load(key)
    state = before
  end
  local ev = algorithm.evaluate(state, check, now, charge_rejected)
  if charge_rejected or ev.admitted then
    staged[key] = { before = before, state = ev.next, expires_at = ev.expires_at, algorithm = algorithm }
  end
  if not ev.admitted and ARGV[base + 5] == '1' then
    all_admitted = false
  end
  evaluations[i] = ev
end

local charged = charge_rejected or all_admitted
if charged then
  for key, entry in pairs(staged) do
    entry.algorithm.store(key, entry.before, entry.state)
    if injected then
      redis.call('PEXPIRE', key, format_number(math.max(1, math.ceil(entry.expires_at - now))))
    else
      redis.call('PEXPIREAT', key, format_number(entry.expires_at))
    end
  end
end

local reply = { now, 0 }
if charged then
  reply[2] = 1
end
for i = 1, count do
  local ev = evaluations[i]
  local admitted = 0
  if ev.admitted then
    admitted = 1
  end
  local remaining = ev.uncharged_remaining
  local reset = ev.uncharged_reset
  if charged and (charge_rejected or ev.admitted) then
    remaining = ev.charged_remaining
    reset = ev.charged_reset
  end
  reply[#reply + 1] = admitted
  reply[#reply + 1] = remaining
  reply[#reply + 1] = reset
  reply[#reply + 1] = ev.uncharged_remaining
  reply[#reply + 1] = ev.uncharged_reset
  reply[#reply + 1] = ev.window
end
return reply

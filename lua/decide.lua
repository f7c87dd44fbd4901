--[[
  decide.lua — decides a batch of requests, in order, each all-or-nothing, exactly as
  MemoryStore.decideNow would decide them one after the other (src/store/memory/memory-store.ts).
  A batch is the requests (or, on a cluster, the parts of requests in one slot) that arrived in
  one event-loop turn of one sluice process: one script call instead of one per request.

  KEYS      the counter keys of every check of every request, in order (built by
            src/limiter/counter-key.ts). A key may repeat, within a request or across requests:
            each check sees the charges of the checks and requests before it.
  ARGV[1]   now, epoch ms; '' reads Redis TIME instead (one clock for every sluice instance).
  Then, per request r, in order:
            charge_rejected ('1': charge rejected hits too, the reference's counting; '0':
            all-or-nothing), n (its number of checks), then 6 fields per check i of the request:
            algorithm name, limit, window ms, hits (0 = check only), enforced ('1', or '0' for
            shadow rules whose rejection does not block the request), burst (token_bucket's
            bucket size; '' = the limit, and ignored by the other algorithms).
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

  Cost: each counter touched by the batch is read once and written once, at the end, whatever
  the number of requests that charged it; the per-call cost of EVALSHA (lookup, argument
  conversion, TIME) is paid once per batch.

  Time: with Redis 7's effects replication, reading TIME before writing is safe (replicas apply
  the writes, they do not re-run the script with their own clock). Stored state never shrinks
  when a clock steps back (see each algorithm). With TIME, expiry is PEXPIREAT at the instant
  the algorithm gives; with an injected `now` (CLOCK=local, tests), whose frame may differ from
  Redis's clock, it is the same distance from now as a relative PEXPIRE.
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

-- What this batch has made of each counter it touched: the state as loaded (`before`, for
-- writing only the difference) and the state after every request charged so far.
local current = {}
local reply = { now }
local arg = 2
local key_index = 0
local request = 0

while arg <= #ARGV do
  request = request + 1
  local charge_rejected = ARGV[arg] == '1'
  local count = tonumber(ARGV[arg + 1])
  if count == nil or count < 0 or arg + 1 + 6 * count > #ARGV or key_index + count > #KEYS then
    return redis.error_reply(string.format('ERR sluice decide: request %d: bad check count or too few arguments (%d keys, %d arguments)', request, #KEYS, #ARGV))
  end
  arg = arg + 2

  -- Charges are staged so that two checks on one counter see each other, and so that nothing is
  -- kept when the request is rejected.
  local staged = {}
  local evaluations = {}
  local all_admitted = true
  for i = 1, count do
    local key = KEYS[key_index + i]
    local name = ARGV[arg]
    local algorithm = ALGORITHMS[name]
    if algorithm == nil then
      return redis.error_reply('ERR sluice decide: unknown algorithm ' .. name)
    end
    local check = {
      limit = tonumber(ARGV[arg + 1]),
      window_ms = tonumber(ARGV[arg + 2]),
      hits = tonumber(ARGV[arg + 3]),
      burst = tonumber(ARGV[arg + 5]),
    }
    if check.limit == nil or check.window_ms == nil or check.window_ms <= 0 or check.hits == nil then
      return redis.error_reply(string.format('ERR sluice decide: check %d has a bad limit, window or hits', i))
    end
    if algorithm.max_limit ~= nil and check.limit > algorithm.max_limit then
      return redis.error_reply(string.format('ERR sluice decide: check %d: %s limits are capped at %d', i, name, algorithm.max_limit))
    end
    local state = staged[key]
    if state == nil then
      local entry = current[key]
      if entry == nil then
        local loaded = algorithm.load(key)
        entry = { before = loaded, state = loaded, expires_at = nil, algorithm = algorithm }
        current[key] = entry
      end
      state = entry.state
    else
      state = state.state
    end
    local ev = algorithm.evaluate(state, check, now, charge_rejected)
    if charge_rejected or ev.admitted then
      staged[key] = { state = ev.next, expires_at = ev.expires_at }
    end
    if not ev.admitted and ARGV[arg + 4] == '1' then
      all_admitted = false
    end
    evaluations[i] = ev
    arg = arg + 6
  end
  key_index = key_index + count

  local charged = charge_rejected or all_admitted
  if charged then
    for key, change in pairs(staged) do
      local entry = current[key]
      entry.state = change.state
      if entry.expires_at == nil or change.expires_at > entry.expires_at then
        entry.expires_at = change.expires_at
      end
      entry.dirty = true
    end
  end

  if charged then
    reply[#reply + 1] = 1
  else
    reply[#reply + 1] = 0
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
end

if key_index ~= #KEYS then
  return redis.error_reply(string.format('ERR sluice decide: %d keys given, the requests have %d checks', #KEYS, key_index))
end

-- One write per counter the batch charged, whatever the number of requests that charged it.
for key, entry in pairs(current) do
  if entry.dirty then
    entry.algorithm.store(key, entry.before, entry.state)
    if injected then
      redis.call('PEXPIRE', key, format_number(math.max(1, math.ceil(entry.expires_at - now))))
    else
      redis.call('PEXPIREAT', key, format_number(entry.expires_at))
    end
  end
end

return reply

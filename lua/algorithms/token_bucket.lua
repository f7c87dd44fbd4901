--[[
  algorithms/token_bucket.lua — GCRA: `limit` hits per window refill a bucket of `burst`.
  Included through algorithms/index.lua; defines no KEYS or ARGV of its own.

  Mirrors src/limiter/algorithms/token-bucket.ts operation for operation. One hit costs
  window_ms units and the bucket drains `limit` units per ms, so every value is an integer below
  2^53 (the config keeps (burst + 1) × window ≤ 2^53) and both stores compute exactly. math.fmod, not
  `%`: Lua 5.1's `%` is a - floor(a/b)*b, which can round; fmod is exact, as JS `%` is.

  State (one hash): t = epoch ms of the last charge (never decreases); d = the debt at t, in units
  (0 = full bucket); l = the limit d was charged under (missing in states from before: 0, taken
  as the current limit).
]]

-- ceil(x / divisor) for integers x >= 0, divisor > 0 (0 when x is 0).
local function token_bucket_ceil_div(x, divisor)
  if x <= 0 then
    return 0
  end
  local rest = math.fmod(x, divisor)
  local q = (x - rest) / divisor
  if rest > 0 then
    q = q + 1
  end
  return q
end

-- floor(x / unit) for integers x >= 0 (0 for x < 0).
local function token_bucket_whole_tokens(x, unit)
  if x <= 0 then
    return 0
  end
  return (x - math.fmod(x, unit)) / unit
end

local function token_bucket_evaluate(state, check, now_ms, charge_rejected)
  local limit = check.limit
  local window_ms = check.window_ms
  -- A limit of 0 blocks everything, whatever the burst.
  local burst = check.burst
  if burst == nil then
    burst = limit
  end
  if limit == 0 then
    burst = 0
  end
  local capacity = burst * window_ms
  local now = now_ms
  local debt = 0
  if state ~= nil then
    if state.t > now then
      now = state.t
    end
    -- After a reload changed the limit: the lesser of the hits owed and the time left to drain.
    local owed = state.d
    if state.l > 0 and state.l ~= limit then
      owed = math.min(state.d, token_bucket_ceil_div(state.d, state.l) * limit)
    end
    local drained = (now - state.t) * limit
    if drained < owed then
      debt = owed - drained
    end
  end

  -- Until the bucket is full again, from the caller's clock.
  local function until_full(d)
    if d > 0 then
      return now + token_bucket_ceil_div(d, limit) - now_ms
    end
    return 0
  end
  -- Until the debt is down to `room` units.
  local function until_room(d, room)
    if d > room then
      return now + token_bucket_ceil_div(d - room, limit) - now_ms
    end
    return 0
  end

  local ev = { window = now }
  if charge_rejected then
    local after = debt + check.hits * window_ms
    ev.admitted = after <= capacity
    -- Over: the debt goes one hit past the bucket at most (none when nothing ever drains).
    local ceiling = 0
    if burst >= 1 then
      ceiling = capacity + window_ms
    end
    local stored = after
    if not ev.admitted then
      stored = math.min(after, ceiling)
    end
    ev.next = { t = now, d = stored, l = limit }
    ev.expires_at = now + token_bucket_ceil_div(stored, limit)
    if ev.admitted then
      ev.charged_remaining = token_bucket_whole_tokens(capacity - stored, window_ms)
      ev.charged_reset = until_full(stored)
    else
      ev.charged_remaining = 0
      if burst < 1 then
        ev.charged_reset = window_ms
      else
        -- Over: until one more hit fits.
        ev.charged_reset = until_room(stored, capacity - window_ms)
      end
    end
    ev.uncharged_remaining = ev.charged_remaining
    ev.uncharged_reset = ev.charged_reset
    return ev
  end

  local need = hits_to_admit(check.hits)
  ev.admitted = need <= burst and debt + need * window_ms <= capacity
  -- Only used when admitted (then hits <= burst and the product is exact).
  local after = debt + check.hits * window_ms
  ev.next = { t = now, d = after, l = limit }
  ev.expires_at = now + token_bucket_ceil_div(after, limit)
  ev.charged_remaining = token_bucket_whole_tokens(capacity - after, window_ms)
  ev.charged_reset = until_full(after)
  ev.uncharged_remaining = token_bucket_whole_tokens(capacity - debt, window_ms)
  if ev.admitted then
    ev.uncharged_reset = until_full(debt)
  elseif need > burst then
    -- A cost above the burst never fits; one window is the honest "not soon".
    ev.uncharged_reset = window_ms
  else
    ev.uncharged_reset = until_room(debt, capacity - need * window_ms)
  end
  return ev
end

-- The charge of `hits` at instant `window` added hits × window_ms units, of which
-- (t - window) × limit have drained since. Only what is left of it is taken back: the refund is
-- exact when nothing charged the bucket since, and otherwise takes back at most what the charge
-- still weighs, so the bucket never ends up fuller than if the charge had not happened (the
-- cluster may briefly under-admit, never over-admit).
local function token_bucket_refund(state, window, hits, check)
  if state == nil then
    return nil
  end
  local elapsed = math.max(0, state.t - window)
  local amount = hits * check.window_ms - elapsed * check.limit
  if amount <= 0 then
    return nil
  end
  return { t = state.t, d = math.max(0, state.d - amount), l = state.l }
end

local token_bucket_load, token_bucket_store = hash_storage({ 't', 'd', 'l' })

ALGORITHMS['token_bucket'] = {
  load = token_bucket_load,
  store = token_bucket_store,
  evaluate = token_bucket_evaluate,
  refund = token_bucket_refund,
}

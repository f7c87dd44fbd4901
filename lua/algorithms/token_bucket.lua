--[[
  algorithms/token_bucket.lua — GCRA: `limit` hits per window refill a bucket of `burst`.
  Included through algorithms/index.lua; defines no KEYS or ARGV of its own.

  Mirrors src/limiter/algorithms/token-bucket.ts operation for operation. One hit costs
  window_ms units and the bucket drains `limit` units per ms, so every value is an integer below
  2^53 (the config keeps (burst + 1) × window ≤ 2^53) and both stores compute exactly. math.fmod, not
  `%`: Lua 5.1's `%` is a - floor(a/b)*b, which can round; fmod is exact, as JS `%` is.

  State (24 bytes, struct '>ddd'): t = epoch ms of the last charge (never decreases); d = the
  debt at t, in units (0 = full bucket); l = the limit d was charged under.
]]

ALGORITHM_LOADERS['token_bucket'] = function()
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

  -- Until the debt `d` (at `now`) is down to `room` units, from the caller's clock `now_ms`.
  local function token_bucket_until_room(d, room, limit, now, now_ms)
    if d > room then
      return now + token_bucket_ceil_div(d - room, limit) - now_ms
    end
    return 0
  end

  local function token_bucket_evaluate(s, limit, window_ms, hits, burst, now_ms, charge_rejected)
    -- A limit of 0 blocks everything, whatever the burst.
    if burst == nil then
      burst = limit
    end
    if limit == 0 then
      burst = 0
    end
    local capacity = burst * window_ms
    local now = now_ms
    local debt = 0
    if s ~= '' then
      local t, d, l = unpack_doubles('>ddd', s)
      if t > now then
        now = t
      end
      -- After a reload changed the limit: the lesser of the hits owed and the time left to drain.
      local owed = d
      if l > 0 and l ~= limit then
        owed = min(d, token_bucket_ceil_div(d, l) * limit)
      end
      local drained = (now - t) * limit
      if drained < owed then
        debt = owed - drained
      end
    end

    if charge_rejected then
      local after = debt + hits * window_ms
      local admitted = after <= capacity
      -- Over: the debt goes one hit past the bucket at most (none when nothing ever drains).
      local ceiling = 0
      if burst >= 1 then
        ceiling = capacity + window_ms
      end
      local stored = after
      if not admitted then
        stored = min(after, ceiling)
      end
      local remaining = 0
      local reset
      if admitted then
        remaining = token_bucket_whole_tokens(capacity - stored, window_ms)
        reset = token_bucket_until_room(stored, 0, limit, now, now_ms)
      elseif burst < 1 then
        reset = window_ms
      else
        -- Over: until one more hit fits.
        reset = token_bucket_until_room(stored, capacity - window_ms, limit, now, now_ms)
      end
      return admitted, pack('>ddd', now, stored, limit), now + token_bucket_ceil_div(stored, limit), now,
        remaining, reset, remaining, reset
    end

    local need = hits_to_admit(hits)
    local admitted = need <= burst and debt + need * window_ms <= capacity
    -- Only meaningful when admitted (then hits <= burst and the product is exact).
    local after = debt + hits * window_ms
    -- A check-only call, or a rejection, stores nothing new.
    local next_state = s
    if admitted and hits > 0 then
      next_state = pack('>ddd', now, after, limit)
    end
    local uncharged_reset
    if admitted then
      uncharged_reset = token_bucket_until_room(debt, 0, limit, now, now_ms)
    elseif need > burst then
      -- A cost above the burst never fits; one window is the honest "not soon".
      uncharged_reset = window_ms
    else
      uncharged_reset = token_bucket_until_room(debt, capacity - need * window_ms, limit, now, now_ms)
    end
    return admitted, next_state, now + token_bucket_ceil_div(after, limit), now,
      token_bucket_whole_tokens(capacity - after, window_ms), token_bucket_until_room(after, 0, limit, now, now_ms),
      token_bucket_whole_tokens(capacity - debt, window_ms), uncharged_reset
  end

  -- The charge of `hits` at instant `window` added hits × window_ms units, of which
  -- (t - window) × limit have drained since. Only what is left of it is taken back: the refund is
  -- exact when nothing charged the bucket since, and otherwise takes back at most what the charge
  -- still weighs, so the bucket never ends up fuller than if the charge had not happened (the
  -- cluster may briefly under-admit, never over-admit).
  local function token_bucket_refund(s, window, hits, limit, window_ms)
    if s == '' then
      return nil
    end
    local t, d, l = unpack_doubles('>ddd', s)
    local elapsed = max(0, t - window)
    local amount = hits * window_ms - elapsed * limit
    if amount <= 0 then
      return nil
    end
    return pack('>ddd', t, max(0, d - amount), l)
  end

  return {
    evaluate = token_bucket_evaluate,
    refund = token_bucket_refund,
  }
end

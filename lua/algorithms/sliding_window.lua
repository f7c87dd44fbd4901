--[[
  algorithms/sliding_window.lua — the weighted two-window counter. Included through
  algorithms/index.lua; defines no KEYS or ARGV of its own.

  Mirrors src/limiter/algorithms/sliding-window.ts operation for operation, in the same order
  (e.g. previous * (window_ms - elapsed) / window_ms), so that both stores round identically:
  Lua numbers and JS numbers are both IEEE doubles.

  State (one hash): w = window index floor(now / window_ms) of c; c = hits in window w;
  p = hits in window w - 1.
]]

-- Milliseconds from `elapsed` until usage has fallen to `room` or below (retryMs in the TS twin).
local function sliding_window_retry_ms(room, current, previous, elapsed, window_ms)
  if room < 0 then
    -- The cost exceeds the limit: it can never pass. One window is the honest "not soon".
    return window_ms
  end
  if current <= room then
    -- Inside this window, once enough of the previous window's weight has aged out.
    if previous == 0 then
      return 0
    end
    local at = math.ceil(window_ms - ((room - current) * window_ms) / previous)
    return math.max(0, at - elapsed)
  end
  -- Only in the next window, where today's count becomes the decaying previous one.
  local at = math.ceil(window_ms - (room * window_ms) / current)
  return window_ms - elapsed + at
end

local function sliding_window_evaluate(state, check, now, charge_rejected)
  local limit = check.limit
  local window_ms = check.window_ms
  local window = math.floor(now / window_ms)
  local current = 0
  local previous = 0
  if state ~= nil then
    if state.w == window then
      current = state.c
      previous = state.p
    elseif state.w == window - 1 then
      previous = state.c
    elseif state.w > window then
      -- The clock stepped back: keep the newer windows rather than forget their hits.
      window = state.w
      current = state.c
      previous = state.p
    end
  end
  local window_start = window * window_ms
  local elapsed = math.max(0, now - window_start)
  local weighted_previous = (previous * (window_ms - elapsed)) / window_ms
  local used = current + weighted_previous
  local after_current = current + check.hits
  local ev = {
    next = { w = window, c = after_current, p = previous },
    -- The current window's hits weigh on decisions until the end of the following window.
    expires_at = window_start + 2 * window_ms,
    window = window,
  }

  local function drain_ms(cur)
    if cur > 0 then
      return window_start + 2 * window_ms - now
    end
    if previous > 0 then
      return window_start + window_ms - now
    end
    return 0
  end

  if charge_rejected then
    local used_after = after_current + weighted_previous
    ev.admitted = used_after <= limit
    ev.charged_remaining = remaining_after(limit, used_after)
    if ev.admitted then
      ev.charged_reset = drain_ms(after_current)
    else
      ev.charged_reset = sliding_window_retry_ms(limit - 1, after_current, previous, elapsed, window_ms)
    end
    ev.uncharged_remaining = ev.charged_remaining
    ev.uncharged_reset = ev.charged_reset
    return ev
  end

  local need = hits_to_admit(check.hits)
  ev.admitted = used + need <= limit
  ev.charged_remaining = remaining_after(limit, after_current + weighted_previous)
  ev.charged_reset = drain_ms(after_current)
  ev.uncharged_remaining = remaining_after(limit, used)
  if ev.admitted then
    ev.uncharged_reset = drain_ms(current)
  else
    ev.uncharged_reset = sliding_window_retry_ms(limit - need, current, previous, elapsed, window_ms)
  end
  return ev
end

-- Hits charged to window `window` are in c while that window is current, in p once the next
-- window has been written, and irrelevant after that.
local function sliding_window_refund(state, window, hits)
  if state == nil then
    return nil
  end
  if state.w == window then
    return { w = state.w, c = math.max(0, state.c - hits), p = state.p }
  end
  if state.w == window + 1 then
    return { w = state.w, c = state.c, p = math.max(0, state.p - hits) }
  end
  return nil
end

local sliding_window_load, sliding_window_store = hash_storage({ 'w', 'c', 'p' })

ALGORITHMS['sliding_window'] = {
  load = sliding_window_load,
  store = sliding_window_store,
  evaluate = sliding_window_evaluate,
  refund = sliding_window_refund,
}

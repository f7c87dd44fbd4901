--[[
  algorithms/fixed_window.lua — one counter per epoch-aligned window, as envoyproxy/ratelimit
  counts. Included through algorithms/index.lua; defines no KEYS or ARGV of its own.

  Mirrors src/limiter/algorithms/fixed-window.ts operation for operation.

  State (one hash): w = window index floor(now / window_ms); c = hits in window w.
]]

local function fixed_window_evaluate(state, check, now, charge_rejected)
  local limit = check.limit
  local window_ms = check.window_ms
  local window = math.floor(now / window_ms)
  local count = 0
  if state ~= nil then
    if state.w == window then
      count = state.c
    elseif state.w > window then
      -- The clock stepped back: keep the newer window rather than forget its hits.
      window = state.w
      count = state.c
    end
  end
  local window_end = (window + 1) * window_ms
  local until_window_end = math.max(0, window_end - now)
  local after = count + check.hits
  local ev = { next = { w = window, c = after }, expires_at = window_end, window = window }

  if charge_rejected then
    ev.admitted = after <= limit
    ev.charged_remaining = remaining_after(limit, after)
    ev.charged_reset = until_window_end
    ev.uncharged_remaining = ev.charged_remaining
    ev.uncharged_reset = ev.charged_reset
    return ev
  end

  local need = hits_to_admit(check.hits)
  ev.admitted = count + need <= limit
  ev.charged_remaining = remaining_after(limit, after)
  ev.charged_reset = 0
  if after > 0 then
    ev.charged_reset = until_window_end
  end
  ev.uncharged_remaining = remaining_after(limit, count)
  if ev.admitted then
    ev.uncharged_reset = 0
    if count > 0 then
      ev.uncharged_reset = until_window_end
    end
  elseif need > limit then
    -- A cost above the limit never fits; one window is the honest "not soon" answer.
    ev.uncharged_reset = window_ms
  else
    ev.uncharged_reset = until_window_end
  end
  return ev
end

-- Hits charged to window `window` matter only while it is the stored window.
local function fixed_window_refund(state, window, hits)
  if state == nil or state.w ~= window then
    return nil
  end
  return { w = state.w, c = math.max(0, state.c - hits) }
end

local fixed_window_load, fixed_window_store = hash_storage({ 'w', 'c' })

ALGORITHMS['fixed_window'] = {
  load = fixed_window_load,
  store = fixed_window_store,
  evaluate = fixed_window_evaluate,
  refund = fixed_window_refund,
}

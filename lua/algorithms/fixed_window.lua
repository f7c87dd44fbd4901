--[[
  algorithms/fixed_window.lua — one counter per epoch-aligned window, as envoyproxy/ratelimit
  counts. Included through algorithms/index.lua; defines no KEYS or ARGV of its own.

  Mirrors src/limiter/algorithms/fixed-window.ts operation for operation.

  State (16 bytes, struct '>dd'): the window index floor(now / window_ms), and the hits in it.
]]

ALGORITHM_LOADERS['fixed_window'] = function()
  local function fixed_window_evaluate(s, limit, window_ms, hits, _, now, charge_rejected)
    local window = floor(now / window_ms)
    local count = 0
    if s ~= '' then
      local w, c = unpack_doubles('>dd', s)
      if w == window then
        count = c
      elseif w > window then
        -- The clock stepped back: keep the newer window rather than forget its hits.
        window = w
        count = c
      end
    end
    local window_end = (window + 1) * window_ms
    local until_window_end = max(0, window_end - now)
    local after = count + hits

    if charge_rejected then
      local remaining = remaining_after(limit, after)
      return after <= limit, pack('>dd', window, after), window_end, window,
        remaining, until_window_end, remaining, until_window_end
    end

    local need = hits_to_admit(hits)
    local admitted = count + need <= limit
    -- A check-only call, or a rejection, stores nothing new.
    local next_state = s
    if admitted and hits > 0 then
      next_state = pack('>dd', window, after)
    end
    local charged_reset = 0
    if after > 0 then
      charged_reset = until_window_end
    end
    local uncharged_reset = until_window_end
    if admitted then
      if count == 0 then
        uncharged_reset = 0
      end
    elseif need > limit then
      -- A cost above the limit never fits; one window is the honest "not soon" answer.
      uncharged_reset = window_ms
    end
    return admitted, next_state, window_end, window,
      remaining_after(limit, after), charged_reset, remaining_after(limit, count), uncharged_reset
  end

  -- Hits charged to window `window` matter only while it is the stored window.
  local function fixed_window_refund(s, window, hits)
    if s == '' then
      return nil
    end
    local w, c = unpack_doubles('>dd', s)
    if w ~= window then
      return nil
    end
    return pack('>dd', w, max(0, c - hits))
  end

  return {
    evaluate = fixed_window_evaluate,
    refund = fixed_window_refund,
  }
end

--[[
  algorithms/sliding_window.lua — the window cut into SUB_WINDOWS sub-windows, each remembering
  its hit count and the instants of its first and last hit. Included through
  algorithms/index.lua; defines no KEYS or ARGV of its own.

  Mirrors src/limiter/algorithms/sliding-window.ts operation for operation, in the same order
  (e.g. 1 + ((hits - 1) * (last - cut)) / (last - first), then plus the whole hits after it), so
  that both stores round identically: Lua numbers and JS numbers are both IEEE doubles.

  State (one string, struct '>d' doubles: exact for integers): a header, the hits of every
  sub-window stored, then per sub-window still inside the window, oldest first, a record of three:
  hits, first instant, last instant (epoch ms). At most SUB_WINDOWS + 1 records (8 + 504 bytes).

  Why a header: only the oldest sub-window can straddle the window's start, every other one counts
  whole, so the estimate is that one's weight plus (total − its hits). A decision reads the header,
  the records leaving the window (usually none or one) and the newest record; it never unpacks the
  whole state, and the new state is the old bytes cut and joined with one new record, in C.
]]

ALGORITHM_LOADERS['sliding_window'] = function()
  local SUB_WINDOWS = 20
  local SW_HEADER = 8
  local SW_RECORD = 24

  local function sw_count(s)
    if s == '' then
      return 0
    end
    return (#s - SW_HEADER) / SW_RECORD
  end

  -- Record i (1-based): hits, first, last.
  local function sw_record(s, i)
    local hits, first, last = unpack_doubles('>ddd', s, SW_HEADER + (i - 1) * SW_RECORD + 1)
    return hits, first, last
  end

  local function sw_total(s)
    if s == '' then
      return 0
    end
    return (unpack_doubles('>d', s))
  end

  -- The hits of a sub-window still counted at `cut` (hits at or before the cut have left).
  local function sw_weight(hits, first, last, cut)
    if cut < first then
      return hits
    end
    if cut >= last then
      return 0
    end
    return 1 + ((hits - 1) * (last - cut)) / (last - first)
  end

  -- The estimated hits in the window that starts after `cut`: the first sub-window still in it,
  -- weighted, plus every hit after it (whole: those sub-windows lie inside the window).
  local function sw_usage(s, cut)
    local n = sw_count(s)
    local rest = sw_total(s)
    for i = 1, n do
      local hits, first, last = sw_record(s, i)
      rest = rest - hits
      if last > cut then
        return sw_weight(hits, first, last, cut) + rest
      end
    end
    return 0
  end

  -- The records from `from` on (the ones before it left the window), with a new total.
  local function sw_tail(s, from, total)
    return pack('>d', total) .. sub(s, SW_HEADER + (from - 1) * SW_RECORD + 1)
  end

  -- Until the newest hit of `s` has left the window (0 when nothing is stored).
  local function sw_until_empty(s, window_ms, now_ms)
    local n = sw_count(s)
    if n > 0 then
      local _, _, last = sw_record(s, n)
      return last + window_ms - now_ms
    end
    return 0
  end

  local function sw_expires_at(s, window_ms, now)
    local n = sw_count(s)
    if n > 0 then
      local _, _, last = sw_record(s, n)
      return last + window_ms
    end
    return now
  end

  -- The smallest whole-millisecond cut >= `from` at which the usage is at most `room` (room >= 0):
  -- solve the linear piece of the first sub-window whose departure brings the rest within reach,
  -- then step to the exact millisecond with the usage itself (fitsAtCut in the TS twin).
  local function sw_fits_at_cut(s, room, from)
    local after = sw_total(s)
    local lower = from
    for i = 1, sw_count(s) do
      local hits, first, last = sw_record(s, i)
      after = after - hits
      local target = room - after
      if target < 0 then
        -- This sub-window must leave whole before the rest can fit.
        lower = max(lower, last)
      else
        local cut
        if target >= hits then
          cut = lower
        elseif target < 1 then
          cut = last
        else
          cut = ceil(last - ((target - 1) * (last - first)) / (hits - 1))
        end
        cut = min(max(cut, lower), last)
        while cut < last and sw_usage(s, cut) > room do
          cut = cut + 1
        end
        while cut > lower and sw_usage(s, cut - 1) <= room do
          cut = cut - 1
        end
        return cut
      end
    end
    return lower
  end

  -- Until the estimate is at most `room`, or one window for a cost that never fits.
  local function sw_until_room(s, room, cut, window_ms, now_ms)
    if room < 0 then
      return window_ms
    end
    return sw_fits_at_cut(s, room, cut) + window_ms - now_ms
  end

  -- `live` (total hits `total`) with `hits` charged at `now`: into the newest sub-window if `now`
  -- falls in it, else as a new one.
  local function sw_charge(live, total, now, hits, window_ms)
    local n = sw_count(live)
    local sub_ms = window_ms / SUB_WINDOWS
    if n > 0 then
      local newest_hits, newest_first = sw_record(live, n)
      if floor(newest_first / sub_ms) == floor(now / sub_ms) then
        return pack('>d', total + hits) .. sub(live, SW_HEADER + 1, SW_HEADER + (n - 1) * SW_RECORD)
          .. pack('>ddd', newest_hits + hits, newest_first, now)
      end
      return pack('>d', total + hits) .. sub(live, SW_HEADER + 1) .. pack('>ddd', hits, now, now)
    end
    return pack('>dddd', hits, hits, now, now)
  end

  local function sliding_window_evaluate(s, limit, window_ms, hits, _, now_ms, charge_rejected)
    local n = sw_count(s)
    local now = now_ms
    local newest_hits, newest_first, newest_last
    if n > 0 then
      newest_hits, newest_first, newest_last = sw_record(s, n)
      if newest_last > now then
        now = newest_last
      end
    end
    local cut = now - window_ms
    -- Sub-windows leave oldest first: drop those whose last hit is at or before the cut.
    local total = sw_total(s)
    local used = 0
    local gone = 0
    for i = 1, n do
      local h, first, last = sw_record(s, i)
      if last > cut then
        used = sw_weight(h, first, last, cut) + (total - h)
        break
      end
      total = total - h
      gone = i
    end

    if charge_rejected then
      local live = s
      if gone == n then
        live = ''
      elseif gone > 0 then
        live = sw_tail(s, gone + 1, total)
      end
      local next_state = live
      if hits > 0 then
        next_state = sw_charge(live, total, now, hits, window_ms)
      end
      local used_after = sw_usage(next_state, cut)
      local admitted = used_after <= limit
      local reset
      if admitted then
        reset = sw_until_empty(next_state, window_ms, now_ms)
      else
        -- Over: until one more hit fits.
        reset = sw_until_room(next_state, limit - 1, cut, window_ms, now_ms)
      end
      local remaining = remaining_after(limit, used_after)
      return admitted, next_state, sw_expires_at(next_state, window_ms, now), now, remaining, reset, remaining, reset
    end

    local need = hits_to_admit(hits)
    local admitted = used + need <= limit
    -- Until the newest hit still in the window has left it (0 when none is), and when the state
    -- as it is stops mattering.
    local until_empty = 0
    local expires_at = now
    if gone < n then
      until_empty = newest_last + window_ms - now_ms
      expires_at = newest_last + window_ms
    end
    if not admitted then
      local live = s
      if gone == n then
        live = ''
      elseif gone > 0 then
        live = sw_tail(s, gone + 1, total)
      end
      -- A rejected request's state is never stored: no need to build it.
      return false, s, expires_at, now, remaining_after(limit, used + hits), until_empty,
        remaining_after(limit, used), sw_until_room(live, limit - need, cut, window_ms, now_ms)
    end
    if hits == 0 then
      -- A check-only call stores nothing.
      return true, s, expires_at, now, remaining_after(limit, used), until_empty, remaining_after(limit, used), until_empty
    end
    -- Charged: the hits join the newest sub-window if `now` falls in it, else open one; either way
    -- the newest hit is now, and the records that left the window are cut off the front.
    local next_state
    local sub_ms = window_ms / SUB_WINDOWS
    if gone == n then
      next_state = pack('>dddd', hits, hits, now, now)
    elseif floor(newest_first / sub_ms) == floor(now / sub_ms) then
      next_state = pack('>d', total + hits) .. sub(s, SW_HEADER + gone * SW_RECORD + 1, SW_HEADER + (n - 1) * SW_RECORD)
        .. pack('>ddd', newest_hits + hits, newest_first, now)
    else
      next_state = pack('>d', total + hits) .. sub(s, SW_HEADER + gone * SW_RECORD + 1) .. pack('>ddd', hits, now, now)
    end
    return true, next_state, now + window_ms, now, remaining_after(limit, used + hits), now + window_ms - now_ms,
      remaining_after(limit, used), until_empty
  end

  -- The hits were charged at instant `window` (decide's reply), into the sub-window that instant
  -- falls in; that many are taken out of it if it is still stored, never below zero, and an
  -- emptied sub-window is dropped: exact when nothing else was charged there since. The first and
  -- last instants stay: a span wider than its hits only raises the estimate (under-admission),
  -- except when the refunded hit opened a sub-window that others joined before the refund, where
  -- the estimate may start to fall up to that gap early.
  local function sliding_window_refund(s, window, hits, _, window_ms)
    local n = sw_count(s)
    local sub_ms = window_ms / SUB_WINDOWS
    local index = floor(window / sub_ms)
    for i = 1, n do
      local h, first, last = sw_record(s, i)
      if floor(first / sub_ms) == index then
        local taken = min(h, hits)
        local total = sw_total(s) - taken
        local before = sub(s, SW_HEADER + 1, SW_HEADER + (i - 1) * SW_RECORD)
        local after = sub(s, SW_HEADER + i * SW_RECORD + 1)
        if h - taken > 0 then
          return pack('>d', total) .. before .. pack('>ddd', h - taken, first, last) .. after
        end
        if n == 1 then
          return ''
        end
        return pack('>d', total) .. before .. after
      end
    end
    return nil
  end

  return {
    evaluate = sliding_window_evaluate,
    refund = sliding_window_refund,
  }
end

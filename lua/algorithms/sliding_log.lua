--[[
  algorithms/sliding_log.lua — the exact log: never more than `limit` hits in any window.
  Included through algorithms/index.lua; defines no KEYS or ARGV of its own.

  Mirrors src/limiter/algorithms/sliding-log.ts step for step. All values are whole
  milliseconds and whole hits, so both stores compute exactly.

  State (one string): the instant (epoch ms) of every hit in the window, one 8-byte big-endian
  double per hit (struct '>d': exact for integers), ascending. Reading it is one GET and a
  binary search, not a field per hit; a decision costs O(log limit) plus copying at most
  limit × 8 bytes. The config caps sliding_log limits at 128 hits (1 KB; 129 with
  charge_rejected) and this script refuses larger ones (max_limit) rather than run slowly.
]]

ALGORITHM_LOADERS['sliding_log'] = function()
  local SLIDING_LOG_MAX_LIMIT = 128
  local SLIDING_LOG_RECORD = 8

  -- The instant of hit i (1-based) of a log.
  local function sliding_log_at(log, i)
    return (unpack_doubles('>d', log, (i - 1) * SLIDING_LOG_RECORD + 1))
  end

  local function sliding_log_size(log)
    return #log / SLIDING_LOG_RECORD
  end

  -- Index of the first hit after `instant` (size + 1 when none): a binary search.
  local function sliding_log_first_after(log, instant)
    local low = 1
    local high = sliding_log_size(log) + 1
    while low < high do
      local mid = floor((low + high) / 2)
      if sliding_log_at(log, mid) <= instant then
        low = mid + 1
      else
        high = mid
      end
    end
    return low
  end

  -- Hits i .. size of a log.
  local function sliding_log_from(log, i)
    return sub(log, (i - 1) * SLIDING_LOG_RECORD + 1)
  end

  -- Until the newest hit of log `l` has left the window (0 when the log is empty).
  local function sliding_log_until_empty(l, window_ms, now_ms)
    local n = sliding_log_size(l)
    if n > 0 then
      return sliding_log_at(l, n) + window_ms - now_ms
    end
    return 0
  end

  -- Until at most `room` hits of log `l` are left in the window.
  local function sliding_log_until_room(l, room, window_ms, now_ms)
    if room < 0 then
      return window_ms
    end
    local leave = sliding_log_size(l) - room
    if leave > 0 then
      return sliding_log_at(l, leave) + window_ms - now_ms
    end
    return 0
  end

  local function sliding_log_expires_at(l, window_ms, now)
    local n = sliding_log_size(l)
    if n > 0 then
      return sliding_log_at(l, n) + window_ms
    end
    return now
  end

  local function sliding_log_evaluate(log, limit, window_ms, hits, _, now_ms, charge_rejected)
    local now = now_ms
    local size = sliding_log_size(log)
    if size > 0 then
      local newest = sliding_log_at(log, size)
      if newest > now then
        now = newest
      end
    end

    -- Hits at or before now - window have left it.
    local live = sliding_log_from(log, sliding_log_first_after(log, now - window_ms))
    local count = sliding_log_size(live)
    local stamp = pack('>d', now)

    if charge_rejected then
      local total = count + hits
      local admitted = total <= limit
      -- Only the newest limit + 1 hits are kept.
      local added = min(hits, limit + 1)
      local kept = min(count, limit + 1 - added)
      local next_log = sliding_log_from(live, count - kept + 1) .. rep(stamp, added)
      local reset
      if admitted then
        reset = sliding_log_until_empty(next_log, window_ms, now_ms)
      else
        -- Over: until one more hit fits.
        reset = sliding_log_until_room(next_log, limit - 1, window_ms, now_ms)
      end
      local remaining = remaining_after(limit, total)
      return admitted, next_log, sliding_log_expires_at(next_log, window_ms, now), now, remaining, reset, remaining, reset
    end

    local need = hits_to_admit(hits)
    local admitted = count + need <= limit
    -- A rejected request's log is never stored: no need to build it.
    local next_log = log
    if admitted and hits > 0 then
      next_log = live .. rep(stamp, hits)
    end
    local charged = next_log
    if next_log == log then
      charged = live
    end
    local uncharged_reset
    if admitted then
      uncharged_reset = sliding_log_until_empty(live, window_ms, now_ms)
    else
      uncharged_reset = sliding_log_until_room(live, limit - need, window_ms, now_ms)
    end
    return admitted, next_log, sliding_log_expires_at(charged, window_ms, now), now,
      remaining_after(limit, count + hits), sliding_log_until_empty(charged, window_ms, now_ms),
      remaining_after(limit, count), uncharged_reset
  end

  -- The hits were logged at instant `window`; that many hits of that instant are taken out, if
  -- still there (a hit that left the window no longer matters). Hits of one instant are
  -- interchangeable, so this is exactly undoing the charge.
  local function sliding_log_refund(log, window, hits)
    if log == '' then
      return nil
    end
    local stop = sliding_log_first_after(log, window)
    local start = sliding_log_first_after(log, window - 1)
    local take = min(hits, stop - start)
    if take <= 0 then
      return nil
    end
    return sub(log, 1, (stop - take - 1) * SLIDING_LOG_RECORD) .. sliding_log_from(log, stop)
  end

  return {
    evaluate = sliding_log_evaluate,
    refund = sliding_log_refund,
    max_limit = SLIDING_LOG_MAX_LIMIT,
  }
end

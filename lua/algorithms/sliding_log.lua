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
  Written with SET ... KEEPTTL so a refund leaves the expiry as it is (Redis >= 6.0).
]]

local SLIDING_LOG_MAX_LIMIT = 128
local SLIDING_LOG_RECORD = 8

-- The instant of hit i (1-based) of a log.
local function sliding_log_at(log, i)
  return (struct.unpack('>d', log, (i - 1) * SLIDING_LOG_RECORD + 1))
end

local function sliding_log_size(log)
  return #log / SLIDING_LOG_RECORD
end

-- Index of the first hit after `instant` (size + 1 when none): a binary search.
local function sliding_log_first_after(log, instant)
  local low = 1
  local high = sliding_log_size(log) + 1
  while low < high do
    local mid = math.floor((low + high) / 2)
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
  return string.sub(log, (i - 1) * SLIDING_LOG_RECORD + 1)
end

local function sliding_log_load(key)
  local log = redis.call('GET', key)
  if not log or log == '' then
    return nil
  end
  return log
end

local function sliding_log_store(key, before, log)
  if log == before then
    return
  end
  if log == '' then
    redis.call('DEL', key)
  else
    redis.call('SET', key, log, 'KEEPTTL')
  end
end

local function sliding_log_evaluate(state, check, now_ms, charge_rejected)
  local limit = check.limit
  local window_ms = check.window_ms
  local log = state or ''
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
  local stamp = struct.pack('>d', now)

  -- Until the newest hit has left the window (0 when the log is empty).
  local function until_empty(l)
    local n = sliding_log_size(l)
    if n > 0 then
      return sliding_log_at(l, n) + window_ms - now_ms
    end
    return 0
  end
  -- Until at most `room` hits of the log are left in the window.
  local function until_room(l, room)
    if room < 0 then
      return window_ms
    end
    local leave = sliding_log_size(l) - room
    if leave > 0 then
      return sliding_log_at(l, leave) + window_ms - now_ms
    end
    return 0
  end
  local function expires_at(l)
    local n = sliding_log_size(l)
    if n > 0 then
      return sliding_log_at(l, n) + window_ms
    end
    return now
  end

  local ev = { window = now }
  if charge_rejected then
    local total = count + check.hits
    ev.admitted = total <= limit
    -- Only the newest limit + 1 hits are kept.
    local added = math.min(check.hits, limit + 1)
    local kept = math.min(count, limit + 1 - added)
    local next_log = sliding_log_from(live, count - kept + 1) .. string.rep(stamp, added)
    ev.next = next_log
    ev.expires_at = expires_at(next_log)
    ev.charged_remaining = remaining_after(limit, total)
    if ev.admitted then
      ev.charged_reset = until_empty(next_log)
    else
      -- Over: until one more hit fits.
      ev.charged_reset = until_room(next_log, limit - 1)
    end
    ev.uncharged_remaining = ev.charged_remaining
    ev.uncharged_reset = ev.charged_reset
    return ev
  end

  local need = hits_to_admit(check.hits)
  ev.admitted = count + need <= limit
  -- A rejected request's log is never stored: no need to build it.
  local next_log = live
  if ev.admitted and check.hits > 0 then
    next_log = live .. string.rep(stamp, check.hits)
  end
  ev.next = next_log
  ev.expires_at = expires_at(next_log)
  ev.charged_remaining = remaining_after(limit, count + check.hits)
  ev.charged_reset = until_empty(next_log)
  ev.uncharged_remaining = remaining_after(limit, count)
  if ev.admitted then
    ev.uncharged_reset = until_empty(live)
  else
    ev.uncharged_reset = until_room(live, limit - need)
  end
  return ev
end

-- The hits were logged at instant `window`; that many hits of that instant are taken out, if
-- still there (a hit that left the window no longer matters). Hits of one instant are
-- interchangeable, so this is exactly undoing the charge.
local function sliding_log_refund(state, window, hits)
  if state == nil then
    return nil
  end
  local stop = sliding_log_first_after(state, window)
  local start = sliding_log_first_after(state, window - 1)
  local take = math.min(hits, stop - start)
  if take <= 0 then
    return nil
  end
  return string.sub(state, 1, (stop - take - 1) * SLIDING_LOG_RECORD) .. sliding_log_from(state, stop)
end

ALGORITHMS['sliding_log'] = {
  load = sliding_log_load,
  store = sliding_log_store,
  evaluate = sliding_log_evaluate,
  refund = sliding_log_refund,
  max_limit = SLIDING_LOG_MAX_LIMIT,
}

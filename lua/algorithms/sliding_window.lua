--[[
  algorithms/sliding_window.lua — the window cut into SUB_WINDOWS sub-windows, each remembering
  its hit count and the instants of its first and last hit. Included through
  algorithms/index.lua; defines no KEYS or ARGV of its own.

  Mirrors src/limiter/algorithms/sliding-window.ts operation for operation, in the same order
  (e.g. 1 + ((hits - 1) * (last - cut)) / (last - first), sums oldest first), so that both
  stores round identically: Lua numbers and JS numbers are both IEEE doubles.

  State (one string): per sub-window still inside the window, oldest first, three 8-byte
  big-endian doubles (struct '>ddd': exact for integers): hits, first instant, last instant
  (epoch ms). At most SUB_WINDOWS + 1 records (504 bytes). One GET to read, one SET to write,
  instead of a hash field per number. Written with SET ... KEEPTTL so that a refund leaves the
  expiry as it is (Redis >= 6.0).
]]

local SUB_WINDOWS = 20
local SLIDING_WINDOW_RECORD = 24

local function sliding_window_load(key)
  local packed = redis.call('GET', key)
  if not packed or packed == '' then
    return nil
  end
  local windows = {}
  for offset = 1, #packed, SLIDING_WINDOW_RECORD do
    local hits, first, last = struct.unpack('>ddd', packed, offset)
    windows[#windows + 1] = { hits = hits, first = first, last = last }
  end
  return windows
end

local function sliding_window_store(key, before, windows)
  if windows == before then
    return
  end
  if #windows == 0 then
    redis.call('DEL', key)
    return
  end
  local parts = {}
  for i, w in ipairs(windows) do
    parts[i] = struct.pack('>ddd', w.hits, w.first, w.last)
  end
  redis.call('SET', key, table.concat(parts), 'KEEPTTL')
end

-- The hits of one sub-window still counted at `cut` (hits at or before the cut have left).
local function sliding_window_weight(w, cut)
  if cut < w.first then
    return w.hits
  end
  if cut >= w.last then
    return 0
  end
  return 1 + ((w.hits - 1) * (w.last - cut)) / (w.last - w.first)
end

-- The estimated hits in the window that starts after `cut`: summed oldest first.
local function sliding_window_usage(windows, cut)
  local used = 0
  for _, w in ipairs(windows) do
    used = used + sliding_window_weight(w, cut)
  end
  return used
end

-- `windows` with `hits` charged at `now`: into the newest sub-window if `now` falls in it.
local function sliding_window_charge(windows, now, hits, window_ms)
  if hits == 0 then
    return windows
  end
  local sub_ms = window_ms / SUB_WINDOWS
  local next_windows = {}
  for i, w in ipairs(windows) do
    next_windows[i] = w
  end
  local newest = windows[#windows]
  if newest ~= nil and math.floor(newest.first / sub_ms) == math.floor(now / sub_ms) then
    next_windows[#windows] = { hits = newest.hits + hits, first = newest.first, last = now }
  else
    next_windows[#windows + 1] = { hits = hits, first = now, last = now }
  end
  return next_windows
end

-- The smallest whole-millisecond cut >= `from` at which the usage is at most `room` (room >= 0):
-- solve the linear piece of the first sub-window whose departure brings the rest within reach,
-- then step to the exact millisecond with the usage itself (fitsAtCut in the TS twin).
local function sliding_window_fits_at_cut(windows, room, from)
  local after = 0
  for _, w in ipairs(windows) do
    after = after + w.hits
  end
  local lower = from
  for _, w in ipairs(windows) do
    after = after - w.hits
    local target = room - after
    if target < 0 then
      -- This sub-window must leave whole before the rest can fit.
      lower = math.max(lower, w.last)
    else
      local cut
      if target >= w.hits then
        cut = lower
      elseif target < 1 then
        cut = w.last
      else
        cut = math.ceil(w.last - ((target - 1) * (w.last - w.first)) / (w.hits - 1))
      end
      cut = math.min(math.max(cut, lower), w.last)
      while cut < w.last and sliding_window_usage(windows, cut) > room do
        cut = cut + 1
      end
      while cut > lower and sliding_window_usage(windows, cut - 1) <= room do
        cut = cut - 1
      end
      return cut
    end
  end
  return lower
end

local function sliding_window_evaluate(state, check, now_ms, charge_rejected)
  local limit = check.limit
  local window_ms = check.window_ms
  local stored = state or {}
  local now = now_ms
  local newest = stored[#stored]
  if newest ~= nil and newest.last > now then
    now = newest.last
  end
  local cut = now - window_ms
  -- Sub-windows leave oldest first; keep the state itself when none has (nothing to rewrite).
  local gone = 0
  while gone < #stored and stored[gone + 1].last <= cut do
    gone = gone + 1
  end
  local live = stored
  if gone > 0 then
    live = {}
    for i = gone + 1, #stored do
      live[#live + 1] = stored[i]
    end
  end
  local used = sliding_window_usage(live, cut)

  -- Until the newest hit has left the window (0 when nothing is stored).
  local function until_empty(windows)
    local last = windows[#windows]
    if last ~= nil then
      return last.last + window_ms - now_ms
    end
    return 0
  end
  -- Until the estimate is at most `room`, or one window for a cost that never fits.
  local function until_room(windows, room)
    if room < 0 then
      return window_ms
    end
    return sliding_window_fits_at_cut(windows, room, cut) + window_ms - now_ms
  end
  local function expires_at(windows)
    local last = windows[#windows]
    if last ~= nil then
      return last.last + window_ms
    end
    return now
  end

  local ev = { window = now }
  if charge_rejected then
    local next_windows = sliding_window_charge(live, now, check.hits, window_ms)
    local used_after = sliding_window_usage(next_windows, cut)
    ev.admitted = used_after <= limit
    ev.next = next_windows
    ev.expires_at = expires_at(next_windows)
    ev.charged_remaining = remaining_after(limit, used_after)
    if ev.admitted then
      ev.charged_reset = until_empty(next_windows)
    else
      -- Over: until one more hit fits.
      ev.charged_reset = until_room(next_windows, limit - 1)
    end
    ev.uncharged_remaining = ev.charged_remaining
    ev.uncharged_reset = ev.charged_reset
    return ev
  end

  local need = hits_to_admit(check.hits)
  ev.admitted = used + need <= limit
  -- A rejected request's state is never stored: no need to build it.
  local next_windows = live
  if ev.admitted then
    next_windows = sliding_window_charge(live, now, check.hits, window_ms)
  end
  ev.next = next_windows
  ev.expires_at = expires_at(next_windows)
  ev.charged_remaining = remaining_after(limit, used + check.hits)
  ev.charged_reset = until_empty(next_windows)
  ev.uncharged_remaining = remaining_after(limit, used)
  if ev.admitted then
    ev.uncharged_reset = until_empty(live)
  else
    ev.uncharged_reset = until_room(live, limit - need)
  end
  return ev
end

-- The hits were charged at instant `window` (decide's reply), into the sub-window that instant
-- falls in; that many are taken out of it if it is still stored, never below zero, and an
-- emptied sub-window is dropped: exact when nothing else was charged there since. The first and
-- last instants stay: a span wider than its hits only raises the estimate (under-admission),
-- except when the refunded hit opened a sub-window that others joined before the refund, where
-- the estimate may start to fall up to that gap early.
local function sliding_window_refund(state, window, hits, check)
  if state == nil then
    return nil
  end
  local sub_ms = check.window_ms / SUB_WINDOWS
  local index = math.floor(window / sub_ms)
  for i, w in ipairs(state) do
    if math.floor(w.first / sub_ms) == index then
      local next_windows = {}
      for j, other in ipairs(state) do
        next_windows[j] = other
      end
      local left = math.max(0, w.hits - hits)
      if left == 0 then
        table.remove(next_windows, i)
      else
        next_windows[i] = { hits = left, first = w.first, last = w.last }
      end
      return next_windows
    end
  end
  return nil
end

ALGORITHMS['sliding_window'] = {
  load = sliding_window_load,
  store = sliding_window_store,
  evaluate = sliding_window_evaluate,
  refund = sliding_window_refund,
}

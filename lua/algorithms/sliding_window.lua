--[[
  algorithms/sliding_window.lua — the window cut into SUB_WINDOWS sub-windows, each remembering
  its hit count and the instants of its first and last hit. Included through
  algorithms/index.lua; defines no KEYS or ARGV of its own.

  Mirrors src/limiter/algorithms/sliding-window.ts operation for operation, in the same order
  (e.g. 1 + ((hits - 1) * (last - cut)) / (last - first), sums oldest first), so that both
  stores round identically: Lua numbers and JS numbers are both IEEE doubles.

  Stored (one string): per sub-window still inside the window, oldest first, three 8-byte
  big-endian doubles (struct 'ddd': exact for integers): hits, first instant, last instant
  (epoch ms). At most SUB_WINDOWS + 1 records (504 bytes). One GET to read, one SET ... KEEPTTL
  to write (a refund leaves the expiry as it is, Redis >= 6.0; decide.lua sets it).

  In this script a state is { v = { hits_1, first_1, last_1, hits_2, ... }, n = sub-windows }:
  one struct.unpack reads all of it and one struct.pack writes it, with no table per sub-window
  (that took a third of the script's time at 21 sub-windows). Writing only the changed record
  with SETRANGE saved under 1 µs more and left strings with growth slack (+20 % memory).
]]

local SUB_WINDOWS = 20
local SLIDING_WINDOW_RECORD = 24

local function sliding_window_load(key)
  local packed = redis.call('GET', key)
  if not packed or packed == '' then
    return nil
  end
  local n = #packed / SLIDING_WINDOW_RECORD
  local v = { struct.unpack('>' .. string.rep('d', 3 * n), packed) }
  -- struct.unpack's last value is the position after the data.
  v[3 * n + 1] = nil
  return { v = v, n = n }
end

local function sliding_window_store(key, before, state)
  if state == before then
    return
  end
  if state.n == 0 then
    redis.call('DEL', key)
  else
    redis.call('SET', key, struct.pack('>' .. string.rep('d', 3 * state.n), unpack(state.v, 1, 3 * state.n)), 'KEEPTTL')
  end
end

-- The hits of sub-window i still counted at `cut` (hits at or before the cut have left).
local function sliding_window_weight(v, i, cut)
  local hits = v[3 * i - 2]
  local first = v[3 * i - 1]
  local last = v[3 * i]
  if cut < first then
    return hits
  end
  if cut >= last then
    return 0
  end
  return 1 + ((hits - 1) * (last - cut)) / (last - first)
end

-- The estimated hits in the window that starts after `cut`: summed oldest first.
local function sliding_window_usage(state, cut)
  local used = 0
  for i = 1, state.n do
    used = used + sliding_window_weight(state.v, i, cut)
  end
  return used
end

-- `state` with `hits` charged at `now`: into the newest sub-window if `now` falls in it. A new
-- state; the one given is left as it is (it may be what the store holds).
local function sliding_window_charge(state, now, hits, window_ms)
  if hits == 0 then
    return state
  end
  local sub_ms = window_ms / SUB_WINDOWS
  local n = state.n
  local v = {}
  for j = 1, 3 * n do
    v[j] = state.v[j]
  end
  if n > 0 and math.floor(v[3 * n - 1] / sub_ms) == math.floor(now / sub_ms) then
    v[3 * n - 2] = v[3 * n - 2] + hits
    v[3 * n] = now
  else
    n = n + 1
    v[3 * n - 2] = hits
    v[3 * n - 1] = now
    v[3 * n] = now
  end
  return { v = v, n = n }
end

-- The smallest whole-millisecond cut >= `from` at which the usage is at most `room` (room >= 0):
-- solve the linear piece of the first sub-window whose departure brings the rest within reach,
-- then step to the exact millisecond with the usage itself (fitsAtCut in the TS twin).
local function sliding_window_fits_at_cut(state, room, from)
  local v = state.v
  local after = 0
  for i = 1, state.n do
    after = after + v[3 * i - 2]
  end
  local lower = from
  for i = 1, state.n do
    local hits = v[3 * i - 2]
    local first = v[3 * i - 1]
    local last = v[3 * i]
    after = after - hits
    local target = room - after
    if target < 0 then
      -- This sub-window must leave whole before the rest can fit.
      lower = math.max(lower, last)
    else
      local cut
      if target >= hits then
        cut = lower
      elseif target < 1 then
        cut = last
      else
        cut = math.ceil(last - ((target - 1) * (last - first)) / (hits - 1))
      end
      cut = math.min(math.max(cut, lower), last)
      while cut < last and sliding_window_usage(state, cut) > room do
        cut = cut + 1
      end
      while cut > lower and sliding_window_usage(state, cut - 1) <= room do
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
  local stored = state or { v = {}, n = 0 }
  local now = now_ms
  if stored.n > 0 and stored.v[3 * stored.n] > now then
    now = stored.v[3 * stored.n]
  end
  local cut = now - window_ms
  -- Sub-windows leave oldest first; keep the state itself when none has (nothing to rewrite).
  local gone = 0
  while gone < stored.n and stored.v[3 * (gone + 1)] <= cut do
    gone = gone + 1
  end
  local live = stored
  if gone > 0 then
    local v = {}
    for j = 3 * gone + 1, 3 * stored.n do
      v[j - 3 * gone] = stored.v[j]
    end
    live = { v = v, n = stored.n - gone }
  end
  local used = sliding_window_usage(live, cut)

  -- Until the newest hit has left the window (0 when nothing is stored).
  local function until_empty(s)
    if s.n > 0 then
      return s.v[3 * s.n] + window_ms - now_ms
    end
    return 0
  end
  -- Until the estimate is at most `room`, or one window for a cost that never fits.
  local function until_room(s, room)
    if room < 0 then
      return window_ms
    end
    return sliding_window_fits_at_cut(s, room, cut) + window_ms - now_ms
  end
  local function expires_at(s)
    if s.n > 0 then
      return s.v[3 * s.n] + window_ms
    end
    return now
  end

  local ev = { window = now }
  if charge_rejected then
    local next_state = sliding_window_charge(live, now, check.hits, window_ms)
    local used_after = sliding_window_usage(next_state, cut)
    ev.admitted = used_after <= limit
    ev.next = next_state
    ev.expires_at = expires_at(next_state)
    ev.charged_remaining = remaining_after(limit, used_after)
    if ev.admitted then
      ev.charged_reset = until_empty(next_state)
    else
      -- Over: until one more hit fits.
      ev.charged_reset = until_room(next_state, limit - 1)
    end
    ev.uncharged_remaining = ev.charged_remaining
    ev.uncharged_reset = ev.charged_reset
    return ev
  end

  local need = hits_to_admit(check.hits)
  ev.admitted = used + need <= limit
  -- A rejected request's state is never stored: no need to build it.
  local next_state = live
  if ev.admitted then
    next_state = sliding_window_charge(live, now, check.hits, window_ms)
  end
  ev.next = next_state
  ev.expires_at = expires_at(next_state)
  ev.charged_remaining = remaining_after(limit, used + check.hits)
  ev.charged_reset = until_empty(next_state)
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
  for i = 1, state.n do
    if math.floor(state.v[3 * i - 1] / sub_ms) == index then
      local v = {}
      for j = 1, state.n do
        local kept = state.v[3 * j - 2]
        if j == i then
          kept = math.max(0, kept - hits)
        end
        if kept > 0 then
          v[#v + 1] = kept
          v[#v + 1] = state.v[3 * j - 1]
          v[#v + 1] = state.v[3 * j]
        end
      end
      return { v = v, n = #v / 3 }
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

--[[
  algorithms/index.lua — the algorithm dispatch table shared by decide.lua and refund.lua.
  Defines no KEYS or ARGV of its own.

  Each included file adds one entry, ALGORITHMS[<config name>] = { load, store, evaluate,
  refund }, mirroring one file of src/limiter/algorithms/. Adding an algorithm: a new file in
  this folder and one --@include line at the end of this file.

  Entry contract:
    load(key) -> the stored state (any Lua value: a table of numbers, a string...), or nil
              when nothing is stored.
    store(key, before, state)
              writes `state`; `before` is what load returned for this key in this call (nil if
              nothing), so an entry may write only what changed. The frame sets the expiry.
    evaluate(state, check, now, charge_rejected) -> ev
              state: what load returned (or an earlier check's staged state), or nil
              check: { limit, window_ms, hits, burst (nil unless given) }
              ev: { admitted (boolean), next (state to store if charged), expires_at (epoch ms
                    after which `next` cannot affect a decision), window (where the hits went,
                    an integer for refund), charged_remaining, charged_reset,
                    uncharged_remaining, uncharged_reset }
              Pure: writes nothing (the frame stages and writes).
    refund(state, window, hits, check) -> the state with `hits` charged to `window` taken back
              (check: { limit, window_ms }), never below zero and never more than that charge
              still weighs; nil when nothing changes.
    max_limit (optional): a larger check limit is refused (an error, not a slow script).

  Most algorithms keep a few numbers in one hash: `hash_storage(fields)` gives their load and
  store (lib/state.lua).
]]
local ALGORITHMS = {}

-- src/limiter/algorithms/algorithm.ts: a check-only call (0 hits) asks about one more hit.
local function hits_to_admit(hits)
  if hits == 0 then
    return 1
  end
  return hits
end

-- src/limiter/algorithms/algorithm.ts: whole hits left under `limit` once `used` is counted.
local function remaining_after(limit, used)
  local left = math.floor(limit - used)
  if left < 0 then
    return 0
  end
  if left > limit then
    return limit
  end
  return left
end

-- load and store for a state of numbers in the given hash fields.
local function hash_storage(fields)
  return function(key)
    return load_state(key, fields)
  end, function(key, _, state)
    store_state(key, fields, state)
  end
end

--@include algorithms/sliding_window.lua
--@include algorithms/fixed_window.lua
--@include algorithms/sliding_log.lua
--@include algorithms/token_bucket.lua

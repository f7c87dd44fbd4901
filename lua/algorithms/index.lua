--[[
  algorithms/index.lua — the algorithm dispatch table shared by decide.lua and refund.lua.
  Defines no KEYS or ARGV of its own.

  Each included file adds one entry, ALGORITHMS[<config name>] = { fields, evaluate, refund },
  mirroring one file of src/limiter/algorithms/. Adding an algorithm: a new file in this folder
  and one --@include line at the end of this file.

  Entry contract:
    fields    hash fields holding the state; a state table is keyed by these names.
    evaluate(state, check, now, charge_rejected) -> ev
              state: table of numbers, or nil when nothing is stored
              check: { limit, window_ms, hits }
              ev: { admitted (boolean), next (state to store if charged), expires_at (epoch ms
                    after which `next` cannot affect a decision), window (index the hits go to),
                    charged_remaining, charged_reset, uncharged_remaining, uncharged_reset }
              Pure: writes nothing (the frame stages and writes).
    refund(state, window, hits) -> the state with `hits` charged to window `window` taken back,
              never below zero and never from another window; nil when nothing changes.
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

--@include algorithms/sliding_window.lua
--@include algorithms/fixed_window.lua

--[[
  algorithms/index.lua — the algorithm dispatch table shared by decide.lua and refund.lua.
  Defines no KEYS or ARGV of its own.

  Each included file adds one loader, ALGORITHM_LOADERS[<config name>] = function() ... return
  { evaluate, refund } end, mirroring one file of src/limiter/algorithms/; ALGORITHMS[<name>]
  runs it on first use (nil for a name no file defines). Adding an algorithm: a new file in this
  folder and one --@include line at the end of this file.

  Why loaders: EVAL keeps nothing between calls, so every script call builds the closures of
  everything it defines, used or not. Building all four algorithms cost a one-request decide
  call about 2.5 µs of the ~30 µs it costs Redis (4 checks); a call now builds only the
  algorithms its checks name. A call deciding a busy event-loop turn's requests amortises this
  anyway; a lightly loaded sluice sends one call per request and pays it every time.

  A counter's state is the string stored at its key ('' when nothing is stored); the frame
  (decide.lua) reads it with one GET, and writes the state an evaluation returns with one SET
  that also sets the expiry the evaluation gives (or DEL for ''). No tables and no closures per
  check: an evaluation is a handful of struct calls on that string and returns plain values.

  Entry contract:
    evaluate(s, limit, window_ms, hits, burst, now, charge_rejected)
      -> admitted, next, expires_at, window,
         charged_remaining, charged_reset, uncharged_remaining, uncharged_reset
              s: the stored state, or an earlier check's staged one ('' = nothing stored)
              burst: token_bucket's bucket size, nil for the limit (ignored by the others)
              next: the state to store if the hits are charged ('' = nothing: delete); `s`
                    itself when charging changes nothing (then nothing is written)
              expires_at: epoch ms after which `next` cannot affect a decision
              window: where the hits went, an integer for refund (a window index, or the
                      instant they were charged at)
              Pure: reads and writes nothing in Redis.
    refund(s, window, hits, limit, window_ms) -> the state with `hits` charged to `window` taken
              back, never below zero and never more than that charge still weighs; nil when
              nothing changes.
    max_limit (optional): a larger check limit is refused (an error, not a slow script).
]]
local ALGORITHM_LOADERS = {}
local ALGORITHMS = setmetatable({}, {
  __index = function(built, name)
    local load = ALGORITHM_LOADERS[name]
    if load == nil then
      return nil
    end
    local algorithm = load()
    built[name] = algorithm
    return algorithm
  end,
})

-- Library functions as locals: a global lookup and a field lookup per use add up over thousands
-- of checks per second.
local floor, ceil, max, min = math.floor, math.ceil, math.max, math.min
local pack, unpack_doubles = struct.pack, struct.unpack
local sub, rep = string.sub, string.rep

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
--@include algorithms/sliding_log.lua
--@include algorithms/token_bucket.lua

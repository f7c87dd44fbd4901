--[[
  refund.lua — takes back hits that decide.lua charged, when another slot of the same request
  rejected it (Redis Cluster, checks spread over several slots; see src/store/redis/redis-store.ts).

  KEYS[i]   counter key of check i, as passed to decide.lua.
  ARGV[1 + 5(i-1) .. 5 + 5(i-1)], for check i:
            algorithm name, the window decide.lua returned for it, hits it charged, limit,
            window ms (as passed to decide.lua).
  Reply     integer: how many counters were changed.

  A refund subtracts exactly what was charged from the window it was charged to, never below
  zero; if that window has rolled out of the state, nothing is touched. token_bucket takes back
  only what of the charge has not drained yet (see its refund). Expiry is left as is.
  Between charge and refund other requests may have seen the charge: the cluster may briefly
  under-admit, never over-admit. Lua rather than HINCRBY: the clamp and the window test must be
  atomic with the write.
]]

--@include lib/state.lua
--@include algorithms/index.lua

if #ARGV ~= 5 * #KEYS then
  return redis.error_reply(string.format('ERR sluice refund: %d keys need %d arguments, got %d', #KEYS, 5 * #KEYS, #ARGV))
end

local changed = 0
for i = 1, #KEYS do
  local base = 5 * (i - 1)
  local algorithm = ALGORITHMS[ARGV[base + 1]]
  if algorithm == nil then
    return redis.error_reply('ERR sluice refund: unknown algorithm ' .. ARGV[base + 1])
  end
  local window = tonumber(ARGV[base + 2])
  local hits = tonumber(ARGV[base + 3])
  local limit = tonumber(ARGV[base + 4])
  local window_ms = tonumber(ARGV[base + 5])
  if window == nil or hits == nil or limit == nil or window_ms == nil then
    return redis.error_reply(string.format('ERR sluice refund: check %d has a bad window, hits, limit or window length', i))
  end
  if hits > 0 then
    local state = redis.call('GET', KEYS[i])
    if state then
      local next_state = algorithm.refund(state, window, hits, limit, window_ms)
      if next_state == '' then
        redis.call('DEL', KEYS[i])
        changed = changed + 1
      elseif next_state ~= nil then
        -- The expiry stays what the charge set (Redis >= 6.0).
        redis.call('SET', KEYS[i], next_state, 'KEEPTTL')
        changed = changed + 1
      end
    end
  end
end
return changed

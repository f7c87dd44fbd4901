--[[
  lib/state.lua — reading and writing one counter's state. Included by decide.lua and refund.lua;
  defines no KEYS or ARGV of its own.

  For algorithms whose counter is one hash of numbers (`hash_storage(fields)` in
  algorithms/index.lua): the fields are the algorithm's, each holding a number. A hash whose first
  field is missing counts as "nothing stored".
]]

-- Numbers are written with %d while they are exact integers: Lua's default conversion (`..`,
-- tostring) prints %.14g and would lose digits of large values.
local function format_number(x)
  if x == math.floor(x) and x >= -9007199254740992 and x <= 9007199254740992 then
    return string.format('%d', x)
  end
  return string.format('%.17g', x)
end

local function load_state(key, fields)
  local values = redis.call('HMGET', key, unpack(fields))
  if not values[1] then
    return nil
  end
  local state = {}
  for j, field in ipairs(fields) do
    state[field] = tonumber(values[j]) or 0
  end
  return state
end

local function store_state(key, fields, state)
  local args = {}
  for _, field in ipairs(fields) do
    args[#args + 1] = field
    args[#args + 1] = format_number(state[field])
  end
  redis.call('HSET', key, unpack(args))
end

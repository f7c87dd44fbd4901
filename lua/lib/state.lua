--[[
  lib/state.lua — helpers shared by decide.lua and refund.lua; defines no KEYS or ARGV of its own.

  Every counter is one string (a few packed 8-byte big-endian doubles: struct '>d' is exact for
  integers), read with one GET and written with one SET that also sets its expiry.
]]

-- Numbers are written with %d while they are exact integers: Lua's default conversion (`..`,
-- tostring) prints %.14g and would lose digits of large values.
local function format_number(x)
  if x == math.floor(x) and x >= -9007199254740992 and x <= 9007199254740992 then
    return string.format('%d', x)
  end
  return string.format('%.17g', x)
end

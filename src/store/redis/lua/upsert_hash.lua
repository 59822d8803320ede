#!lua
local ttl = tonumber(ARGV[1])
local before = false
if redis.call('EXISTS', KEYS[1]) == 1 then
  local set = {}
  for i = 2, #ARGV, 2 do set[ARGV[i]] = true end
  local h = redis.call('HGETALL', KEYS[1])
  before = {0}
  for i = 1, #h, 2 do
    if not set[h[i]] then before[#before + 1] = h[i]; before[#before + 1] = h[i + 1] end
  end
end
local j = 2
while j <= #ARGV do
  local last = math.min(j + 999, #ARGV)
  redis.call('HSET', KEYS[1], unpack(ARGV, j, last))
  j = last + 1
end
if ttl > 0 and redis.call('EXISTS', KEYS[1]) == 1 then redis.call('PEXPIRE', KEYS[1], ttl) end
if before then before[1] = redis.call('PTTL', KEYS[1]) end
return before

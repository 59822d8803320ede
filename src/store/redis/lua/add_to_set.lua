#!lua
local ttl = tonumber(ARGV[1])
local j = 2
while j <= #ARGV do
  local args = {}
  local last = math.min(j + 499, #ARGV)
  for k = j, last do args[#args + 1] = ARGV[k] end
  redis.call('SADD', KEYS[1], unpack(args))
  j = last + 1
end
if ttl > 0 then redis.call('PEXPIRE', KEYS[1], ttl) end
return 1

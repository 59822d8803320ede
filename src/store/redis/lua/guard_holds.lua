#!lua flags=no-writes
local kind = tonumber(ARGV[1])
local n = tonumber(ARGV[2])
if kind == 1 then return redis.call('EXISTS', KEYS[1]) == 0 and 1 or 0 end
if kind == 2 then return redis.call('EXISTS', KEYS[1]) end
if kind == 3 then
  if redis.call('HLEN', KEYS[1]) ~= n then return 0 end
  for j = 0, n - 1 do
    if redis.call('HGET', KEYS[1], ARGV[3 + 2 * j]) ~= ARGV[4 + 2 * j] then return 0 end
  end
end
return 1

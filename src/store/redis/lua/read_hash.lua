local ttl = tonumber(ARGV[1])
if ttl > 0 then redis.call('PEXPIRE', KEYS[1], ttl) end
local h = redis.call('HGETALL', KEYS[1])
if #h == 0 then return false end
table.insert(h, 1, redis.call('PTTL', KEYS[1]))
return h

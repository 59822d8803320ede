#!lua
-- Compare-and-set of one string key, then publish on the key's own channel: the write of a
-- Celery result (`SETEX key ttl value; PUBLISH key value`), done only while the key still holds
-- what the caller read (ARGV[1] = 0: absent; 1: the bytes in ARGV[2]).
-- ARGV[3] = the new value, ARGV[4] = TTL in seconds (0: no expiry, a plain SET), ARGV[5] = 1 to
-- publish the value on the key's name (Celery), 0 not to.
local current = redis.call('GET', KEYS[1])
if ARGV[1] == '0' then
  if current then return {0, current} end
elseif current ~= ARGV[2] then
  return {0, current}
end
local ttl = tonumber(ARGV[4])
if ttl > 0 then
  redis.call('SETEX', KEYS[1], ttl, ARGV[3])
else
  redis.call('SET', KEYS[1], ARGV[3])
end
if ARGV[5] == '1' then redis.call('PUBLISH', KEYS[1], ARGV[3]) end
return {1}

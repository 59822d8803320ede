#!lua
if #KEYS == 2 then
  local seen = redis.call('HMGET', KEYS[2], 'fingerprint', 'value')
  if seen[1] then
    if seen[1] == ARGV[4] and seen[2] then return {'replay', seen[2]} end
    return {'reused'}
  end
end
local ok, v = pcall(redis.call, 'HINCRBY', KEYS[1], ARGV[1], ARGV[2])
if not ok then
  -- Only HINCRBY's own two refusals are answers; any other error (WRONGTYPE, NOPERM, …)
  -- goes back to the caller as the error it is.
  local msg = type(v) == 'table' and tostring(v.err) or tostring(v)
  if string.find(msg, 'hash value is not an integer', 1, true) then
    return {'nan', redis.call('HGET', KEYS[1], ARGV[1])}
  end
  if string.find(msg, 'increment or decrement would overflow', 1, true) then return {'overflow'} end
  return redis.error_reply(msg)
end
if tonumber(ARGV[3]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
-- Lua numbers are doubles, exact only to 2^53: answer the stored text instead of v.
local stored = redis.call('HGET', KEYS[1], ARGV[1])
if #KEYS == 2 then
  redis.call('HSET', KEYS[2], 'fingerprint', ARGV[4], 'value', stored)
  redis.call('PEXPIRE', KEYS[2], ARGV[5])
end
return {'ok', stored}

#!lua
local pos = 1
local writes = {}
local function num() local v = tonumber(ARGV[pos]); pos = pos + 1; return v end
for i = 1, #KEYS do
  local w = {key = KEYS[i]}
  w.guard = num(); w.ng = num(); w.gs = pos; pos = pos + 2 * w.ng
  w.replace = num() == 1; w.ttl = num()
  w.ns = num(); w.ss = pos; pos = pos + 2 * w.ns
  w.nd = num(); w.ds = pos; pos = pos + w.nd
  writes[i] = w
end
for i, w in ipairs(writes) do
  local ok = true
  if w.guard == 1 then ok = redis.call('EXISTS', w.key) == 0
  elseif w.guard == 2 then ok = redis.call('EXISTS', w.key) == 1
  elseif w.guard == 3 then
    if redis.call('HLEN', w.key) ~= w.ng then ok = false else
      for j = 0, w.ng - 1 do
        if redis.call('HGET', w.key, ARGV[w.gs + 2 * j]) ~= ARGV[w.gs + 2 * j + 1] then ok = false; break end
      end
    end
  end
  if not ok then return i end
end
local function chunked(cmd, key, start, count)
  local j = 0
  while j < count do
    local args = {}
    local last = math.min(j + 500, count)
    for k = j, last - 1 do args[#args + 1] = ARGV[start + k] end
    redis.call(cmd, key, unpack(args))
    j = last
  end
end
for _, w in ipairs(writes) do
  if w.replace then redis.call('DEL', w.key) end
  if w.ns > 0 then chunked('HSET', w.key, w.ss, 2 * w.ns) end
  if w.nd > 0 then chunked('HDEL', w.key, w.ds, w.nd) end
  if w.ttl > 0 and redis.call('EXISTS', w.key) == 1 then redis.call('PEXPIRE', w.key, w.ttl) end
end
return 0

-- A fingerprint of one key's content, whatever its type, for the poller that stands in for
-- keyspace notifications: '' when the key is absent. A change of content changes it.
local kind = redis.call('TYPE', KEYS[1])['ok']
if kind == 'none' then return '' end
if kind == 'string' then return redis.sha1hex(redis.call('GET', KEYS[1])) end
if kind == 'hash' then return redis.sha1hex(table.concat(redis.call('HGETALL', KEYS[1]), '\0')) end
if kind == 'zset' then return redis.sha1hex(table.concat(redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES'), '\0')) end
return kind

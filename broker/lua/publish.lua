-- publish.lua: append one event to a channel's bounded stream and announce it on the
-- channel's pub/sub channel, atomically, in one round trip. Optionally stores a book
-- first (add_book): then a duplicate ISBN stores nothing and publishes nothing.
--
-- KEYS[1]  stream            bounded to ARGV[2] entries, trimmed exactly
-- KEYS[2]  meta hash         origin: the stream's first offset ever; trimmed: the newest trimmed
-- KEYS[3]  idempotency key   only when ARGV[7] == '1': holds the offset its first publish got
-- KEYS[n]  book hash         then the book index list (newest first): only when ARGV[8] ~= ''
-- ARGV[1]  pub/sub channel   same hash tag as the keys
-- ARGV[2]  history size
-- ARGV[3]  event data, a JSON object text
-- ARGV[4]  pub/sub command   PUBLISH, or SPUBLISH on Redis Cluster
-- ARGV[5]  history TTL (s)   stream and meta expire after this long without a publish; 0: never
-- ARGV[6]  idempotency TTL (s)
-- ARGV[7]  '1' when KEYS[3] is an idempotency key
-- ARGV[8]  isbn, or ''
--
-- Returns {offset, repeated}: repeated = 1 when the idempotency key was seen (nothing new
-- was published; offset is the first publish's), or false when the book already exists.
-- Trimming is exact (not MAXLEN ~) and remembers the newest trimmed offset, and the stream
-- remembers where it began, so a reader can tell whether history still reaches a client's
-- `since` (and notice a Redis that lost its data).

local next_key = 3
local idempotency
if ARGV[7] == '1' then
  idempotency = KEYS[3]
  next_key = 4
  local first = redis.call('GET', idempotency)
  if first then
    return {first, 1}
  end
end

local book, index
if ARGV[8] ~= '' then
  book, index = KEYS[next_key], KEYS[next_key + 1]
  if redis.call('EXISTS', book) == 1 then
    return false
  end
end

local id = redis.call('XADD', KEYS[1], '*', 'd', ARGV[3])
redis.call('HSETNX', KEYS[2], 'origin', id)

local excess = redis.call('XLEN', KEYS[1]) - tonumber(ARGV[2])
if excess > 0 then
  local gone = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', excess)
  redis.call('HSET', KEYS[2], 'trimmed', gone[#gone][1])
  redis.call('XTRIM', KEYS[1], 'MAXLEN', ARGV[2])
end

if book then
  redis.call('HSET', book, 'd', ARGV[3], 'offset', id)
  redis.call('LPUSH', index, ARGV[8])
end

local ttl = tonumber(ARGV[5])
if ttl > 0 then
  redis.call('EXPIRE', KEYS[1], ttl)
  redis.call('EXPIRE', KEYS[2], ttl)
end

if idempotency then
  redis.call('SET', idempotency, id, 'EX', ARGV[6])
end

redis.call(ARGV[4], ARGV[1], id .. '\n' .. ARGV[3])
return {id, 0}

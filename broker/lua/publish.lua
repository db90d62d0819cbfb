-- publish.lua: append one event to a channel's bounded stream and PUBLISH it,
-- atomically, in one round trip. Optionally stores a book first (add_book):
-- then a duplicate ISBN stores nothing and publishes nothing.
--
-- KEYS[1]  stream            (bounded to ARGV[2] entries, trimmed exactly)
-- KEYS[2]  meta hash         origin: the stream's first offset ever; trimmed: the newest trimmed
-- KEYS[3]  book hash         (optional: only for add_book)
-- KEYS[4]  book index list   (optional: newest first)
-- ARGV[1]  pub/sub channel   (same hash tag as the keys)
-- ARGV[2]  history size
-- ARGV[3]  event data, a JSON object text
-- ARGV[4]  isbn              (optional: only for add_book)
--
-- Returns the new offset, or false when the book already exists.
-- Trimming is exact (not MAXLEN ~) and remembers the newest trimmed offset, and
-- the stream remembers where it began, so a reader can tell whether history
-- still reaches a client's `since` (and notice a Redis that lost its data).

if KEYS[3] and redis.call('EXISTS', KEYS[3]) == 1 then
  return false
end

local id = redis.call('XADD', KEYS[1], '*', 'd', ARGV[3])
redis.call('HSETNX', KEYS[2], 'origin', id)

local excess = redis.call('XLEN', KEYS[1]) - tonumber(ARGV[2])
if excess > 0 then
  local gone = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', excess)
  redis.call('HSET', KEYS[2], 'trimmed', gone[#gone][1])
  redis.call('XTRIM', KEYS[1], 'MAXLEN', ARGV[2])
end

if KEYS[3] then
  redis.call('HSET', KEYS[3], 'd', ARGV[3], 'offset', id)
  redis.call('LPUSH', KEYS[4], ARGV[4])
end

redis.call('PUBLISH', ARGV[1], id .. '\n' .. ARGV[3])
return id

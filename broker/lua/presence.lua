-- presence.lua: who is in a channel, cluster-wide, with entries that expire
-- when a replica dies without cleaning up (live replicas refresh them).
--
-- KEYS[1]  expiry zset   member "<user>\0<connection>", score = expiry (ms)
-- KEYS[2]  lex zset      the same members, score 0 (prefix look-up by user)
-- ARGV[1]  op: "enter" | "exit" | "list" | "refresh"
-- ARGV[2]  now (ms)
-- enter/exit: ARGV[3] member, ARGV[4] user, ARGV[5] expiry (ms, enter only)
--             then optionally (enter: ARGV[6..8], exit: ARGV[5..7]) a pub/sub channel of the same hash tag,
--             its command (PUBLISH, SPUBLISH on a cluster) and a payload, published when the flag is 1
--             (the join / leave frame: one round trip for the presence change and its announcement)
-- refresh:    ARGV[3] expiry (ms), ARGV[4..] members (re-added when missing: Redis may have lost them)
-- enter with a read (a subscriber's start: presence, join and where the channel stands in one round trip):
--             KEYS[3] the channel's stream, KEYS[4] its meta hash (same hash tag), ARGV[6..8] as above
--             ('' when nothing is announced), ARGV[9] "newest" (only the newest offset) or "page",
--             ARGV[10] the page's XRANGE start ("(<ms>-<seq>"; '' when nothing can follow), ARGV[11] its
--             COUNT ('' for all); see broker.history.PageQuery.script_args
--
-- Returns { flag, users... } (an enter with a read: { flag, page, ... }, the page being
-- { newest id or nil, [trimmed or nil, origin or nil, id, data, id, data...] }):
--   enter: flag 1 when this is the user's first live connection
--   exit:  flag 1 when that was the user's last live connection
--   list:  flag 0, then every live user (distinct, sorted)
-- Every op first drops expired members; each user left with no member by that
-- purge is appended as a departed user after an empty-string separator entry
-- (user names are never empty): { flag, [users...,] "", departed... }.

local function has_user(user)
  local prefix = user .. '\0'
  local found = redis.call('ZRANGEBYLEX', KEYS[2], '[' .. prefix, '(' .. user .. '\1', 'LIMIT', 0, 1)
  return #found > 0
end

local function purge()
  local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
  local departed = {}
  if #dead == 0 then return departed end
  redis.call('ZREM', KEYS[1], unpack(dead))
  redis.call('ZREM', KEYS[2], unpack(dead))
  local seen = {}
  for _, member in ipairs(dead) do
    local user = string.match(member, '^(.-)%z')
    if user and not seen[user] then
      seen[user] = true
      if not has_user(user) then table.insert(departed, user) end
    end
  end
  return departed
end

local op = ARGV[1]
local departed = purge()
local result

if op == 'enter' then
  local first = has_user(ARGV[4]) and 0 or 1
  redis.call('ZADD', KEYS[1], ARGV[5], ARGV[3])
  redis.call('ZADD', KEYS[2], 0, ARGV[3])
  result = { first }
elseif op == 'exit' then
  local removed = redis.call('ZREM', KEYS[1], ARGV[3])
  redis.call('ZREM', KEYS[2], ARGV[3])
  result = { (removed == 1 and not has_user(ARGV[4])) and 1 or 0 }
elseif op == 'refresh' then
  for i = 4, #ARGV do
    redis.call('ZADD', KEYS[1], ARGV[3], ARGV[i])
    redis.call('ZADD', KEYS[2], 0, ARGV[i])
  end
  result = { 0 }
else
  local users, last = { 0 }, nil
  for _, member in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
    local user = string.match(member, '^(.-)%z')
    if user ~= last then table.insert(users, user); last = user end
  end
  result = users
end

local function announce(at)
  if result[1] == 1 and ARGV[at] and ARGV[at] ~= '' then
    redis.call(ARGV[at + 1], ARGV[at], ARGV[at + 2])
  end
end
if op == 'enter' then announce(6) elseif op == 'exit' then announce(5) end

-- The channel's bounds and first page, as broker.history.PageQuery reads them in a MULTI.
local function read_page()
  local newest = redis.call('XREVRANGE', KEYS[3], '+', '-', 'COUNT', 1)
  local page = { newest[1] and newest[1][1] or false }
  if ARGV[9] ~= 'page' then return page end
  local bounds = redis.call('HMGET', KEYS[4], 'trimmed', 'origin')
  page[2], page[3] = bounds[1], bounds[2]
  if ARGV[10] == '' then return page end
  local range = { 'XRANGE', KEYS[3], ARGV[10], '+' }
  if ARGV[11] ~= '' then table.insert(range, 'COUNT'); table.insert(range, ARGV[11]) end
  for _, entry in ipairs(redis.call(unpack(range))) do
    local fields = entry[2]
    for i = 1, #fields, 2 do
      if fields[i] == 'd' then table.insert(page, entry[1]); table.insert(page, fields[i + 1]) end
    end
  end
  return page
end

if #departed > 0 then
  table.insert(result, '')
  for _, user in ipairs(departed) do table.insert(result, user) end
end
if op == 'enter' and KEYS[3] then table.insert(result, 2, read_page()) end
return result

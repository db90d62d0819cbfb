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
--
-- Returns { flag, users... }:
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

if #departed > 0 then
  table.insert(result, '')
  for _, user in ipairs(departed) do table.insert(result, user) end
end
return result

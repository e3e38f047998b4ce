"""The Lua scripts of :class:`~.breaker.RedisBreaker`, one round trip each.

``ADMIT`` answers "may I call?" (and takes the half-open trial's lease with
``SET NX PX``, so exactly one process gets it); ``RECORD`` counts an outcome
and moves the state; ``WITHDRAW`` takes a retry from the budget; ``STATE``
reads the state. Time is Redis's (``TIME``), so every replica agrees on it.
A target's keys share the hash tag ``{target}`` (one Redis Cluster slot);
the one-second bucket keys are built inside the scripts from that prefix.
"""

from __future__ import annotations

__all__ = ["ADMIT", "RECORD", "STATE", "WITHDRAW", "keys"]


# Every key of a target shares the hash tag {target}: one Redis Cluster slot.
def keys(target: str) -> tuple[str, str, str]:
    base = f"lockgate:client:{{{target}}}"
    return f"{base}:state", f"{base}:trial", f"{base}:w:"


_PRELUDE = """
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local second = math.floor(now / 1000)
"""

# KEYS: state, trial lease. ARGV: first call (1/0), lease ms, lease token,
# bucket prefix, bucket ttl, reset ms.
# Returns {admitted, state, ms until a call may pass, is the trial}.
ADMIT = (
    _PRELUDE
    + """
local state = redis.call('HGET', KEYS[1], 's')
if state == 'open' then
  local reopen = tonumber(redis.call('HGET', KEYS[1], 'u')) or 0
  if now < reopen then return {0, 2, reopen - now, 0} end
  redis.call('HSET', KEYS[1], 's', 'half_open')
  state = 'half_open'
end
if state == 'half_open' then
  if redis.call('SET', KEYS[2], ARGV[3], 'NX', 'PX', ARGV[2]) then
    return {1, 1, 0, 1}
  end
  local left = redis.call('PTTL', KEYS[2])
  return {0, 1, math.max(math.min(left, tonumber(ARGV[6])), 1), 0}
end
if ARGV[1] == '1' then
  local bucket = ARGV[4] .. second
  redis.call('HINCRBY', bucket, 'c', 1)
  redis.call('EXPIRE', bucket, ARGV[5])
end
return {1, 0, 0, 0}
"""
)

# KEYS: state, trial lease. ARGV: failed (1/0), lease token or '', failures,
# rate, window s, min calls, reset ms, bucket prefix, bucket ttl, state ttl.
# Returns {state, ms until half-open}.
RECORD = (
    _PRELUDE
    + """
local failed = ARGV[1] == '1'
local window = tonumber(ARGV[5])
local reset = tonumber(ARGV[7])
local prefix = ARGV[8]
local bucket = prefix .. second
redis.call('HINCRBY', bucket, 'n', 1)
if failed then redis.call('HINCRBY', bucket, 'f', 1) end
redis.call('EXPIRE', bucket, ARGV[9])
if ARGV[2] ~= '' and redis.call('GET', KEYS[2]) == ARGV[2] then
  redis.call('DEL', KEYS[2])
  if failed then
    redis.call('HSET', KEYS[1], 's', 'open', 'u', now + reset, 'k', 0)
    redis.call('EXPIRE', KEYS[1], ARGV[10])
    return {2, reset}
  end
  redis.call('HSET', KEYS[1], 's', 'closed', 'k', 0)
  redis.call('EXPIRE', KEYS[1], ARGV[10])
  for s = second - window + 1, second do redis.call('HDEL', prefix .. s, 'n', 'f') end
  return {0, 0}
end
local state = redis.call('HGET', KEYS[1], 's')
if state == 'open' then
  local reopen = tonumber(redis.call('HGET', KEYS[1], 'u')) or now
  return {2, math.max(reopen - now, 0)}
elseif state == 'half_open' then
  return {1, 0}
end
if not failed then
  if (tonumber(redis.call('HGET', KEYS[1], 'k')) or 0) > 0 then
    redis.call('HSET', KEYS[1], 'k', 0)
  end
  return {0, 0}
end
local opened = redis.call('HINCRBY', KEYS[1], 'k', 1) >= tonumber(ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[10])
if not opened then
  local n, f = 0, 0
  for s = second - window + 1, second do
    local v = redis.call('HMGET', prefix .. s, 'n', 'f')
    n = n + (tonumber(v[1]) or 0)
    f = f + (tonumber(v[2]) or 0)
  end
  opened = n >= tonumber(ARGV[6]) and f > tonumber(ARGV[4]) * n
end
if opened then
  redis.call('HSET', KEYS[1], 's', 'open', 'u', now + reset, 'k', 0)
  return {2, reset}
end
return {0, 0}
"""
)

# ARGV: bucket prefix, ratio, floor, window s, bucket ttl. Returns 1 (take it) or 0.
WITHDRAW = (
    _PRELUDE
    + """
local prefix = ARGV[1]
local calls, retries = 0, 0
for s = second - tonumber(ARGV[4]) + 1, second do
  local v = redis.call('HMGET', prefix .. s, 'c', 'r')
  calls = calls + (tonumber(v[1]) or 0)
  retries = retries + (tonumber(v[2]) or 0)
end
if retries >= tonumber(ARGV[3]) + tonumber(ARGV[2]) * calls then return 0 end
local bucket = prefix .. second
redis.call('HINCRBY', bucket, 'r', 1)
redis.call('EXPIRE', bucket, ARGV[5])
return 1
"""
)

STATE = (
    _PRELUDE
    + """
local state = redis.call('HGET', KEYS[1], 's')
if state == 'open' then
  if now < (tonumber(redis.call('HGET', KEYS[1], 'u')) or 0) then return 2 end
  return 1
end
if state == 'half_open' then return 1 end
return 0
"""
)

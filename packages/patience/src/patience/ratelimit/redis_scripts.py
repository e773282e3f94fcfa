"""The Lua twins of the limiters of algorithms.py, which Redis runs atomically (redis_store).

For the same sequence of (time, tokens) requests each script gives the same decisions as its
Python class, to the last bit of every float (tests/test_redis_algorithms.py checks this as a
property against a real redis-server). The Python classes stay the definition; these scripts
transcribe them, so a change there must be made here too. Three details keep them exact:

- floats travel as "%.17g" text (or Python's repr), which C's strtod reads back to the same
  double;
- a float's `//` is CPython's (fmod, then the snap to the nearest whole number), not floor(/);
- GCRA's whole numbers (units of 1/limit ns since the epoch: beyond 2^53, and Lua 5.1 has
  only doubles) use a small decimal bignum, converted to and from floats through text, which
  the C library reads and writes exactly.

Batches. One call decides a batch: a resource's next requests in its daemon's queue order,
all at one time. The script decides them one after another, each exactly as a call of its
own would, and stops at the first refusal: in queue order nobody may pass the head, so the
requests after it are not decided (they stay queued on the daemon). The state is read once
into Lua variables, which each decision updates as a call of its own would update Redis, and
written back once at the end (the sliding log's new run first, should a refusal need to read
the log); what depends only on the batch (the clamped time, another daemon's claim, the
window's end, GCRA's constants) is worked out once.

KEYS[1] is the state hash (and KEYS[2] the sliding-window log); ARGV: limit, window, expiry
in ms, now ("" = Redis TIME), who, hold, then (tokens, wait) for each request. The reply is
flat: granted (1 or 0), remaining, retry after, reset after, for each request decided.
"""

from __future__ import annotations

from patience.settings import DIOPHANTINE

__all__ = ["SCRIPTS"]

# Shared by every script. Defines `now` (never before the latest time seen), `limit`,
# `window`, `expiry`, `who`, `hold`, `fmt`, `floordiv` (Python's float //), `up`
# (math.nextafter(x, inf)), `save` (the state, with its expiry) and the claim: `reserved`
# (the tokens another daemon's claim holds), `held` (the refusal it causes), and for the
# request being decided (`tokens`, `wait`), `release` and `claim`.
_PRELUDE = """
local state = KEYS[1]
local limit, window, expiry = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local now = tonumber(ARGV[4])
if now == nil then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1e6
end
local who, hold = ARGV[5], tonumber(ARGV[6])
local seen = redis.call('HGET', state, 'now')
if seen and now < tonumber(seen) then now = tonumber(seen) end
local tokens, wait  -- the request being decided: see _LOOP

local function fmt(x) return string.format('%.17g', x) end

local function floordiv(x, w)
  local mod = math.fmod(x, w)
  local div = (x - mod) / w
  if mod ~= 0 and mod < 0 then div = div - 1 end
  if div == 0 then return 0 end
  local q = math.floor(div)
  if div - q > 0.5 then q = q + 1 end
  return q
end

local function up(x)
  if x == 0 then return math.ldexp(1, -1074) end
  local m, e = math.frexp(x)
  if m == -0.5 then e = e - 1 end
  return x + math.ldexp(1, math.max(e - 53, -1074))
end

local function save(...)
  redis.call('HSET', state, 'now', fmt(now), ...)
  redis.call('PEXPIRE', state, expiry)
end

-- The batch's own grants never change another daemon's claim: it is read once.
local claimed = redis.call('HMGET', state, 'claim', 'claim_tokens', 'claim_until')
local reserved = 0
if claimed[1] and claimed[1] ~= who and tonumber(claimed[3]) > now then
  reserved = tonumber(claimed[2])
end

local function held(remaining)
  local retry = fmt(math.min(tonumber(claimed[3]) - now, hold / 10))
  return {0, remaining, retry, retry}
end

local function release()
  if claimed[1] == who then
    redis.call('HDEL', state, 'claim', 'claim_tokens', 'claim_until')
    claimed = {false, false, false}
  end
end

local function claim(retry)
  if reserved == 0 and retry <= wait then
    redis.call('HSET', state, 'claim', who, 'claim_tokens', tokens,
      'claim_until', fmt(now + retry + hold))
  end
end
"""

# Shared by every script, after the algorithm's `decide` (the request's decision, as a
# table, updating the state held in Lua) and `finish` (which writes that state back): the
# batch, one request after another, up to the first refusal.
_LOOP = """
local out = {}
for i = 7, #ARGV, 2 do
  tokens, wait = tonumber(ARGV[i]), tonumber(ARGV[i + 1])
  local decision = decide()
  for j = 1, 4 do out[#out + 1] = decision[j] end
  if decision[1] == 0 then break end
end
finish()
return out
"""

# SlidingWindowLog. KEYS[2]: the log, oldest first, as runs "<time> <count>" (the tokens
# granted at one time; times only grow: the clock is clamped). The state's `used` sums the
# counts; it is only ever written with the log, so an empty or expired log means 0.
_SLIDING = """
local log = KEYS[2]
local function whole(n) return string.format('%d', n) end
local function parse(entry)
  local at, count = string.match(entry, '^(%S+) (%d+)$')
  return tonumber(at), tonumber(count)
end

local used = 0
if redis.call('LLEN', log) > 0 then used = tonumber(redis.call('HGET', state, 'used')) end
while true do  -- once: every request of the batch comes at `now`
  local first = redis.call('LINDEX', log, 0)
  if not first then break end
  local at, count = parse(first)
  if at + window > now then break end
  redis.call('LPOP', log)
  used = used - count
end
local last_at, last_count = nil, 0  -- the newest run
local newest = redis.call('LINDEX', log, -1)
if newest then last_at, last_count = parse(newest) end
local added = 0  -- tokens granted at `now` and not yet in the log

local function flush()
  if added == 0 then return end
  if last_at == now then
    last_count = last_count + added
    redis.call('LSET', log, -1, fmt(now) .. ' ' .. whole(last_count))
  else
    last_at, last_count = now, added
    redis.call('RPUSH', log, fmt(now) .. ' ' .. whole(added))
  end
  added = 0
  redis.call('PEXPIRE', log, expiry)
end

local function decide()
  if used + tokens <= limit then
    if used + tokens + reserved > limit then return held(limit - used) end
    used, added = used + tokens, added + tokens
    release()
    return {1, limit - used, '0', fmt(window)}
  end
  -- The oldest (used + tokens - limit) tokens must leave first: find the run of the last one.
  flush()
  local index, admit_at, from = used + tokens - limit - 1, nil, 0
  while admit_at == nil do
    for _, entry in ipairs(redis.call('LRANGE', log, from, from + 63)) do
      local at, count = parse(entry)
      if index < count then
        admit_at = at + window
        break
      end
      index = index - count
    end
    from = from + 64
  end
  claim(admit_at - now)
  return {0, limit - used, fmt(admit_at - now), fmt(last_at + window - now)}
end

local function finish()
  flush()
  save('used', whole(used))
end
"""

# FixedWindow. State: the window index and its count.
_FIXED = """
local index = floordiv(now, window)
local finish_at = (index + 1.0) * window
while floordiv(finish_at, window) <= index do finish_at = up(finish_at) end
local stored = redis.call('HMGET', state, 'index', 'count')
local count = 0
if stored[1] and tonumber(stored[1]) == index then count = tonumber(stored[2]) end

local function decide()
  if count + tokens <= limit then
    if count + tokens + reserved > limit then return held(limit - count) end
    count = count + tokens
    release()
    return {1, limit - count, '0', fmt(finish_at - now)}
  end
  claim(finish_at - now)
  return {0, limit - count, fmt(finish_at - now), fmt(finish_at - now)}
end

local function finish() save('index', fmt(index), 'count', count) end
"""

# GCRA, burst = limit (as make_limiter builds it). Whole numbers are {s = sign, m = limbs in
# base 1e7, least significant first}; `whole` and `float` convert through decimal text.
_GCRA = """
local BASE = 10000000
local ZERO = {s = 0, m = {}}

local function parse(text)
  local s = 1
  if string.sub(text, 1, 1) == '-' then s, text = -1, string.sub(text, 2) end
  local m, i = {}, #text
  while i >= 1 do
    local j = math.max(1, i - 6)
    m[#m + 1] = tonumber(string.sub(text, j, i))
    i = j - 1
  end
  while #m > 0 and m[#m] == 0 do m[#m] = nil end
  if #m == 0 then return ZERO end
  return {s = s, m = m}
end

local function text(x)
  if x.s == 0 then return '0' end
  local parts = {x.s < 0 and '-' or '', string.format('%d', x.m[#x.m])}
  for i = #x.m - 1, 1, -1 do parts[#parts + 1] = string.format('%07d', x.m[i]) end
  return table.concat(parts)
end

local function whole(d) return parse(string.format('%.0f', d)) end
local function float(x) return tonumber(text(x)) end
local function trunc(d) if d < 0 then return math.ceil(d) end return math.floor(d) end

local function mcmp(a, b)
  if #a ~= #b then return #a < #b and -1 or 1 end
  for i = #a, 1, -1 do
    if a[i] ~= b[i] then return a[i] < b[i] and -1 or 1 end
  end
  return 0
end

local function madd(a, b)
  local r, carry = {}, 0
  for i = 1, math.max(#a, #b) do
    local v = (a[i] or 0) + (b[i] or 0) + carry
    if v >= BASE then r[i], carry = v - BASE, 1 else r[i], carry = v, 0 end
  end
  if carry > 0 then r[#r + 1] = carry end
  return r
end

local function msub(a, b)
  local r, borrow = {}, 0
  for i = 1, #a do
    local v = a[i] - (b[i] or 0) - borrow
    if v < 0 then r[i], borrow = v + BASE, 1 else r[i], borrow = v, 0 end
  end
  while #r > 0 and r[#r] == 0 do r[#r] = nil end
  return r
end

local function add(x, y)
  if x.s == 0 then return y end
  if y.s == 0 then return x end
  if x.s == y.s then return {s = x.s, m = madd(x.m, y.m)} end
  local c = mcmp(x.m, y.m)
  if c == 0 then return ZERO end
  if c > 0 then return {s = x.s, m = msub(x.m, y.m)} end
  return {s = y.s, m = msub(y.m, x.m)}
end

local function neg(x) return {s = -x.s, m = x.m} end
local function sub(x, y) return add(x, neg(y)) end
local function cmp(x, y) return sub(x, y).s end

local function mul(x, y)
  if x.s == 0 or y.s == 0 then return ZERO end
  local a, b, r = x.m, y.m, {}
  for i = 1, #a + #b do r[i] = 0 end
  for i = 1, #a do
    local carry, k = 0, i + #b
    for j = 1, #b do
      local v = r[i + j - 1] + a[i] * b[j] + carry
      carry = math.floor(v / BASE)
      r[i + j - 1] = v - carry * BASE
    end
    while carry > 0 do
      local v = r[k] + carry
      carry = math.floor(v / BASE)
      r[k], k = v - carry * BASE, k + 1
    end
  end
  while #r > 0 and r[#r] == 0 do r[#r] = nil end
  return {s = x.s * y.s, m = r}
end

-- Python's x // d for d > 0: a float estimate of the quotient, corrected until exact.
local function idiv(x, d)
  local q, r, fd = ZERO, x, float(d)
  while r.s < 0 or cmp(r, d) >= 0 do
    local e = math.floor(float(r) / fd)
    if e == 0 then e = 1 end
    local big = whole(e)
    q, r = add(q, big), sub(r, mul(big, d))
  end
  return q
end

local L = whole(limit)
local scaled = window * 1e9
local interval = math.floor(scaled)
local frac = scaled - interval
if frac > 0.5 or (frac == 0.5 and interval % 2 == 1) then interval = interval + 1 end
local T = whole(interval)
local tolerance = mul(T, L)
local units = mul(whole(trunc(now * 1e9)), L)
local per_second = limit * 1e9

local function fitting(tat)
  if tat == nil or cmp(tat, units) <= 0 then return limit end
  return math.max(0, float(idiv(sub(tolerance, sub(tat, units)), T)))
end

local stored = redis.call('HGET', state, 'tat')
local tat, granted = nil, false
if stored then tat = parse(stored) end

-- Python's two admitting branches (tat <= units, and tat - units <= tolerance - increment) are
-- one here: from max(tat, units), the increment must stay within the tolerance.
local function decide()
  local increment = mul(T, whole(tokens))
  local base = units
  if tat ~= nil and cmp(tat, units) > 0 then base = tat end
  local ahead = sub(base, units)
  if cmp(ahead, sub(tolerance, increment)) > 0 then
    local target_ns = neg(idiv(neg(sub(tat, sub(tolerance, increment))), L))
    local at = float(target_ns) / 1e9
    while cmp(whole(trunc(at * 1e9)), target_ns) < 0 do at = up(at) end
    local retry = at - now
    local reset = math.max(retry, float(sub(tat, units)) / per_second)
    claim(retry)
    return {0, fitting(tat), fmt(retry), fmt(reset)}
  end
  if reserved > 0 and cmp(ahead, sub(tolerance, mul(T, whole(tokens + reserved)))) > 0 then
    return held(fitting(tat))
  end
  tat, granted = add(base, increment), true
  release()
  return {1, fitting(tat), '0', fmt(float(sub(tat, units)) / per_second)}
end

local function finish()
  if granted then save('tat', text(tat)) else save() end
end
"""

SCRIPTS = {
    DIOPHANTINE: _PRELUDE + _SLIDING + _LOOP,
    "fixed-window": _PRELUDE + _FIXED + _LOOP,
    "gcra": _PRELUDE + _GCRA + _LOOP,
}

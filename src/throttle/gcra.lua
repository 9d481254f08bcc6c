-- scimguard's shared throttle: one GCRA decision for one request, atomically, in Redis.
--
-- The same algorithm as governor's local buckets (src/throttle/local.rs): a bucket is its
-- theoretical arrival time TAT; with period T (1 s / rate) and tolerance tau
-- (T * (burst - 1)), a request arriving at t may go at max(t, TAT - tau), and then moves
-- TAT to max(TAT, that time) + T. A request may have to fit two buckets (the tenant's
-- and, for writes, the write bucket) and must wait out the tenant's back-off (an
-- upstream's 429 Retry-After); it goes at the latest of those times.
--
-- KEYS[1] the tenant's bucket, KEYS[2] its write bucket, KEYS[3] its back-off.
-- ARGV[1] "admit" or "back_off"
-- ARGV[2] now in microseconds, or "" for the server's clock (TIME), so every replica
--         reads one clock; the tests pass it to replay fixed arrival sequences.
-- admit:    ARGV[3] T, ARGV[4] tau of the tenant's bucket; ARGV[5] T, ARGV[6] tau of the
--           write bucket (T = 0: the request takes no write token); ARGV[7] the longest
--           wait that may be reserved (0: admit now or refuse).
-- back_off: ARGV[3] how long, in microseconds; a later back-off never shortens one.
--
-- Returns {code, wait_us}: 0 admitted now; 1 a turn reserved wait_us from now (the caller
-- waits, then goes); 2 refused, over the rate, retry after wait_us; 3 refused, backing
-- off, retry after wait_us. Times are whole microseconds (Lua numbers are doubles: exact
-- up to 2^53 µs, 285 years), and are written with %d so no digit is lost.

local now
if ARGV[2] == "" then
  local time = redis.call("TIME")
  now = tonumber(time[1]) * 1000000 + tonumber(time[2])
else
  now = tonumber(ARGV[2])
end

-- A key outlives its meaning by a minute: a TAT or back-off in the past means the same
-- as none, so the margin costs nothing, and it keeps the state when the caller's clock
-- (the tests' fixed arrival times) runs apart from Redis's expiry clock.
local function keep(key, value, ttl_us)
  local ms = math.floor(ttl_us / 1000) + 60000
  redis.call("SET", key, string.format("%d", value), "PX", string.format("%d", ms))
end

if ARGV[1] == "back_off" then
  local untill = now + tonumber(ARGV[3])
  local current = tonumber(redis.call("GET", KEYS[3]) or "0")
  if untill > current then
    keep(KEYS[3], untill, untill - now)
  end
  return {0, 0}
end

local t_all, tau_all = tonumber(ARGV[3]), tonumber(ARGV[4])
local t_write, tau_write = tonumber(ARGV[5]), tonumber(ARGV[6])
local max_wait = tonumber(ARGV[7])

local tat_all = tonumber(redis.call("GET", KEYS[1]) or "0")
local tat_write = 0
if t_write > 0 then
  tat_write = tonumber(redis.call("GET", KEYS[2]) or "0")
end
local blocked = tonumber(redis.call("GET", KEYS[3]) or "0")

local at = now
local backed_off = false
if tat_all - tau_all > at then
  at = tat_all - tau_all
end
if t_write > 0 and tat_write - tau_write > at then
  at = tat_write - tau_write
end
if blocked > at then
  at = blocked
  backed_off = true
end

local wait = at - now
if wait > max_wait then
  if backed_off then
    return {3, wait}
  end
  return {2, wait}
end

local next_all = math.max(tat_all, at) + t_all
keep(KEYS[1], next_all, next_all - now)
if t_write > 0 then
  local next_write = math.max(tat_write, at) + t_write
  keep(KEYS[2], next_write, next_write - now)
end
if wait > 0 then
  return {1, wait}
end
return {0, 0}

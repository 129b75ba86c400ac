-- sign.lua at a fixed rate per wrk thread (open loop):
--   wrk -t1 -c32 -d60s --latency -s bench/wrk/paced_sign.lua URL -- tag=run1 countries=GB rate=1000
-- Each delay() call claims the next slot of a fixed schedule, so the rate is the target
-- whatever the latency (as long as there are connections to spare). LuaJIT's ffi gives a
-- millisecond clock; plain Lua only has whole seconds.

dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "sign.lua")

local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clock_id, bench_timespec *tp);
]]
local clock = ffi.new("bench_timespec")
local function now_ms()
  ffi.C.clock_gettime(1, clock)  -- CLOCK_MONOTONIC
  return tonumber(clock.tv_sec) * 1000 + tonumber(clock.tv_nsec) / 1e6
end

local interval_ms = 1
local next_slot = 0
local sign_init = init

function init(args)
  sign_init(args)
  interval_ms = 1000 / tonumber(script_args(args).rate or "1000")
end

function delay()
  local now = now_ms()
  -- Behind schedule: restart from now instead of bursting to catch up.
  if next_slot < now then next_slot = now end
  local wait = next_slot - now
  next_slot = next_slot + interval_ms
  return math.floor(wait)
end

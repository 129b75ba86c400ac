-- Shared by the other scripts (they load it with dofile): thread ids for unique emails,
-- per-thread tallies, key=value script arguments, and one machine-readable result line
-- (wrk's own text output rounds and changes units). bench/harness/wrk.py reads that line.

local threads = {}
local thread_count = 0

function setup(thread)
  thread:set("tid", thread_count)
  thread_count = thread_count + 1
  table.insert(threads, thread)
end

calls = 0    -- request() calls; wrk makes one extra on thread 0 to check the script
answers = 0  -- responses seen by response()
created = 0  -- of which 201

-- wrk passes what follows "--" on its command line to init(args): here key=value pairs.
function script_args(args)
  local found = {}
  for _, arg in ipairs(args) do
    local key, value = arg:match("^([%w_]+)=(.*)$")
    if key then found[key] = value end
  end
  return found
end

function done(summary, latency, requests)
  local calls_all, answers_all, created_all = 0, 0, 0
  for _, t in ipairs(threads) do
    calls_all = calls_all + t:get("calls")
    answers_all = answers_all + t:get("answers")
    created_all = created_all + t:get("created")
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH-RESULT {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,' ..
    '"timeout":%d,"status":%d,"p50_us":%d,"p99_us":%d,"max_us":%d,' ..
    '"calls":%d,"answers":%d,"created":%d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.timeout, e.status,
    latency:percentile(50), latency:percentile(99), latency.max,
    calls_all, answers_all, created_all))
end

-- POST a signature per request, each with its own email and its own client address
-- (X-Forwarded-For, believed by an API that trusts the load's address as its proxy),
-- and count the 201s.
--   wrk -t2 -c64 -d15s --latency -s bench/wrk/sign.lua http://127.0.0.1:8080/v1/petitions/S/signatures \
--       -- tag=run1 countries=GB,FR,DE addresses=0
-- tag: makes the emails of this run unlike any other run's; countries: picked at random;
-- addresses: where this run's addresses start in 10.0.0.0/8 (a number below 2^24), so
-- that runs one after the other do not share addresses.

dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "report.lua")

local tag = "wrk"
local countries = {"FR"}
local first_address = 0
-- wrk.format uses the headers given instead of wrk.headers: one table, reused.
local headers = {["Content-Type"] = "application/json"}
wrk.method = "POST"

function init(args)
  local given = script_args(args)
  tag = given.tag or tag
  first_address = tonumber(given.addresses or "0")
  if given.countries then
    countries = {}
    for code in given.countries:gmatch("[^,]+") do table.insert(countries, code) end
  end
end

-- The n-th address of a thread: 2^20 per thread before two threads' addresses meet.
local function address(n)
  local a = (first_address + tid * 1048576 + n) % 16777216
  return string.format("10.%d.%d.%d", math.floor(a / 65536), math.floor(a / 256) % 256, a % 256)
end

function request()
  calls = calls + 1
  -- Unique per request: run tag, wrk thread, per-thread counter.
  local body = string.format(
    '{"name":"Bench Signer","email":"%s-%d-%d@bench.example.org","country":"%s",' ..
    '"source":"bench"}',
    tag, tid, calls, countries[math.random(#countries)])
  headers["X-Forwarded-For"] = address(calls)
  return wrk.format(nil, nil, headers, body)
end

function response(status, headers, body)
  answers = answers + 1
  if status == 201 then created = created + 1 end
end

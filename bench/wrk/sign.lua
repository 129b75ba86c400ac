-- POST a signature per request, each with its own email, and count the 201s.
--   wrk -t2 -c64 -d15s --latency -s bench/wrk/sign.lua http://127.0.0.1:8080/v1/petitions/S/signatures \
--       -- tag=run1 countries=GB,FR,DE
-- tag: makes the emails of this run unlike any other run's; countries: picked at random.

dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "report.lua")

local tag = "wrk"
local countries = {"FR"}
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

function init(args)
  local given = script_args(args)
  tag = given.tag or tag
  if given.countries then
    countries = {}
    for code in given.countries:gmatch("[^,]+") do table.insert(countries, code) end
  end
end

function request()
  calls = calls + 1
  -- Unique per request: run tag, wrk thread, per-thread counter.
  local body = string.format(
    '{"name":"Bench Signer","email":"%s-%d-%d@bench.example.org","country":"%s",' ..
    '"source":"bench"}',
    tag, tid, calls, countries[math.random(#countries)])
  return wrk.format(nil, nil, nil, body)
end

function response(status, headers, body)
  answers = answers + 1
  if status == 201 then created = created + 1 end
end

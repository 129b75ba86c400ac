-- GET the URL as fast as wrk can: counts reads, or a baseline's static JSON.
--   wrk -t2 -c64 -d15s --latency -s bench/wrk/read.lua http://127.0.0.1:8080/v1/petitions/S/counts
-- No request() or response() here: wrk then never calls into Lua per request.

dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "report.lua")

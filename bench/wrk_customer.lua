-- wrk script of bench/api_bench.py: GET /api/v1/customers/{id} for random ids of the file
-- WRK_IDS (one a line), with the bearer token WRK_TOKEN; prints one line "JSON {...}" with
-- the counts and the latency percentiles (wrk's own summary has no 95th).
local ids = {}
local token = os.getenv("WRK_TOKEN")
for line in io.lines(os.getenv("WRK_IDS")) do ids[#ids + 1] = line end

init = function(args)
  -- each of wrk's threads its own draw (a table's address differs between them)
  math.randomseed(os.time() + tonumber(tostring({}):match("0x(%x+)"), 16) % 100000)
end

request = function()
  local id = ids[math.random(#ids)]
  return wrk.format("GET", "/api/v1/customers/" .. id, {["Authorization"] = "Bearer " .. token})
end

done = function(summary, latency, requests)
  io.write(string.format(
    'JSON {"requests": %d, "seconds": %.2f, "p50_ms": %.2f, "p95_ms": %.2f, "p99_ms": %.2f, '
      .. '"errors_status": %d}\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1000,
    latency:percentile(95) / 1000, latency:percentile(99) / 1000, summary.errors.status))
end

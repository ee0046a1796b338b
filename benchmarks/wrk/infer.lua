-- POST one V2 infer body, the same on every request (benchmarks/predict_bench.py).
--   wrk -t2 -c64 -d10s --latency -s benchmarks/wrk/infer.lua URL -- BODY_FILE [AUTHORIZATION]
-- The request is formatted once per thread: wrk then only writes bytes, as a client pool would.
-- At the end, one line "RESULT {json}" with throughput, latency percentiles (ms) and errors.

local request_bytes

init = function(args)
  local file = assert(io.open(args[1], "rb"), "no body file: give it after --")
  local body = file:read("*a")
  file:close()
  local headers = {["Content-Type"] = "application/json"}
  if args[2] and args[2] ~= "" then headers["Authorization"] = args[2] end
  request_bytes = wrk.format("POST", nil, headers, body)
end

request = function() return request_bytes end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'RESULT {"requests": %d, "seconds": %.3f, "p50": %.3f, "p90": %.3f, "p99": %.3f, '
    .. '"max": %.3f, "non_2xx": %d, "socket_errors": %d}\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1e3,
    latency:percentile(90) / 1e3, latency:percentile(99) / 1e3, latency.max / 1e3, e.status,
    e.connect + e.read + e.write + e.timeout))
end

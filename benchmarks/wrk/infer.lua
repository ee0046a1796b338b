-- POST one V2 infer body, the same on every request (benchmarks/predict_bench.py).
--   wrk -t2 -c64 -d10s --latency -s benchmarks/wrk/infer.lua URL -- BODY_FILE [AUTHORIZATION] [named]
-- The request is formatted once per thread: wrk then only writes bytes, as a client pool would.
-- With "named", every request carries an X-Request-ID of its own (formatted per request).
-- At the end, one line "RESULT {json}" with throughput, latency percentiles (ms) and errors.

local request_bytes, headers, body
local named, prefix, counter = false, "", 0

init = function(args)
  local file = assert(io.open(args[1], "rb"), "no body file: give it after --")
  body = file:read("*a")
  file:close()
  headers = {["Content-Type"] = "application/json"}
  if args[2] and args[2] ~= "" then headers["Authorization"] = args[2] end
  named = args[3] == "named"
  if named then  -- each thread its own prefix: its Lua state's address, and the time
    math.randomseed(os.time() + tonumber(tostring({}):match("0x(%x+)") or "0", 16))
    prefix = string.format("%08x", math.random(0, 0x7fffffff))
  end
  request_bytes = wrk.format("POST", nil, headers, body)
end

request = function()
  if not named then return request_bytes end
  counter = counter + 1
  headers["X-Request-ID"] = prefix .. "-" .. counter
  return wrk.format("POST", nil, headers, body)
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'RESULT {"requests": %d, "seconds": %.3f, "p50": %.3f, "p90": %.3f, "p99": %.3f, '
    .. '"max": %.3f, "non_2xx": %d, "socket_errors": %d}\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1e3,
    latency:percentile(90) / 1e3, latency:percentile(99) / 1e3, latency.max / 1e3, e.status,
    e.connect + e.read + e.write + e.timeout))
end

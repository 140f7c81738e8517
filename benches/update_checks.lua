-- wrk script of the update-check benchmarks: POSTs update checks, each with the token of a device
-- picked at random from tokens.txt (one a line, in wrk's working directory), and prints
-- "RESULT req/s p99_ms errors" at the end.
--
-- Each thread formats every device's request once, at start, and then sends one picked at
-- random. Formatting each request in Lua as it is sent cost wrk about 2 us more per request than
-- nginx's plain GET of a file, on the same two cores the servers run on, so a ratio against
-- nginx measured the client as much as the servers.
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("id", threads)
end

local prepared = {}
function init(args)
  math.randomseed(os.time() * 1000 + id)
  wrk.method = "POST"
  wrk.body = '{"platform":"linux-x86_64","current_version":"1.0.0"}'
  wrk.headers["Content-Type"] = "application/json"
  for line in io.lines("tokens.txt") do
    wrk.headers["Authorization"] = "Bearer " .. line
    prepared[#prepared + 1] = wrk.format()
  end
end

function request()
  return prepared[math.random(#prepared)]
end

function done(summary, latency, requests)
  local errors = summary.errors
  local bad = errors.status + errors.connect + errors.read + errors.write + errors.timeout
  io.write(string.format("RESULT %.1f %.3f %d\n", summary.requests / (summary.duration / 1e6),
    latency:percentile(99) / 1000, bad))
end

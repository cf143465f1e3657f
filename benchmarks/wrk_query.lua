-- wrk script for benchmarks/service_latency.py: POST /query with the sample's questions, each one numbered so that
-- none is a cache hit (FIXED=1: the first question every time, all cache hits after the first). Prints one line:
-- p50, p95, p99 (ms), requests/s, socket errors, non-2xx responses.
local questions = {}
for line in io.lines(os.getenv("QUESTIONS")) do questions[#questions + 1] = line end
local fixed = os.getenv("FIXED") == "1"
local run = os.getenv("RUN") or "0"  -- distinct per run, so that a repeated run does not hit the answer cache
local counter = 0
local headers = {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. (os.getenv("KEY") or "")}

request = function()
  counter = counter + 1
  local q = questions[(counter % #questions) + 1] .. " (" .. run .. "-" .. counter .. ")"
  if fixed then q = questions[1] end
  local body = '{"question": "' .. q:gsub('\\', '\\\\'):gsub('"', '\\"') .. '", "client_id": "c' .. (counter % 8) .. '"}'
  return wrk.format("POST", "/query", headers, body)
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %.2f %.2f %.2f %.1f %d %d\n", latency:percentile(50) / 1000,
    latency:percentile(95) / 1000, latency:percentile(99) / 1000, summary.requests / (summary.duration / 1e6),
    e.connect + e.read + e.write + e.timeout, e.status))
end

-- wrk script of the vvstore benchmark (python -m bench). Settings come from the environment:
--   MODE   "counter": POST /counters/<key> with body {"amount": 1} (the default)
--          "batch":   POST /batch with BATCH items {"key": <key>, "amount": 1}
--   KEYS   keys are drawn uniformly from k0 .. k<KEYS-1>; KEYS=1 (default) is the hot key "hot"
--   BATCH  items per /batch body (MODE=batch; default 100)
--   SEED   random seed (default 1); each wrk thread adds its own number
--   IDEM   when set (MODE=counter): every request carries a fresh Idempotency-Key header,
--          "<IDEM>-<thread>-<n>", so the server writes an idempotency record with each increment
-- Batch bodies are built once per thread (16 different ones, cycled), so building JSON does not
-- cost the client anything during the run. done() prints one line: BENCH_RESULT {json}.
local mode = os.getenv("MODE") or "counter"
local keys = tonumber(os.getenv("KEYS") or "1")
local batch = tonumber(os.getenv("BATCH") or "100")
local seed = tonumber(os.getenv("SEED") or "1")
local idem = os.getenv("IDEM")
if idem == "" then idem = nil end
local headers = { ["Content-Type"] = "application/json" }
local body = '{"amount": 1}'
local hot = nil
local bodies = {}
local nbodies = 16
local n = 0
local threads = 0

function setup(thread)
  threads = threads + 1
  thread:set("thread_number", threads)
end

function init(args)
  math.randomseed(seed * 1000 + (thread_number or 0))
  -- Built here, not at load time: wrk.host (the Host header) is only known from init on.
  hot = wrk.format("POST", "/counters/hot", headers, body)
  if mode == "batch" then
    for b = 1, nbodies do
      local items = {}
      for i = 1, batch do
        items[i] = '{"key":"k' .. math.random(0, keys - 1) .. '","amount":1}'
      end
      bodies[b] = wrk.format("POST", "/batch", headers,
        '{"increments":[' .. table.concat(items, ",") .. ']}')
    end
  end
end

function request()
  if mode == "batch" then
    n = n % nbodies + 1
    return bodies[n]
  end
  local path = "/counters/hot"
  if keys > 1 then
    path = "/counters/k" .. math.random(0, keys - 1)
  elseif not idem then
    return hot
  end
  if idem then
    n = n + 1
    local h = { ["Content-Type"] = "application/json",
                ["Idempotency-Key"] = idem .. "-" .. (thread_number or 0) .. "-" .. n }
    return wrk.format("POST", path, h, body)
  end
  return wrk.format("POST", path, headers, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests":%d,"duration_us":%d,"bytes":%d,"errors_connect":%d,' ..
    '"errors_read":%d,"errors_write":%d,"errors_status":%d,"errors_timeout":%d,' ..
    '"lat_mean_us":%.1f,"lat_p50_us":%d,"lat_p90_us":%d,"lat_p99_us":%d,"lat_max_us":%d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency.mean, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max))
end

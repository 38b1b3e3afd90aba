-- wrk script: POST {"amount": 1} to /counters/<key>, keys drawn from 0..KEYS-1 (KEYS env, default 1).
local keys = tonumber(os.getenv("KEYS") or "1")
local body = '{"amount": 1}'
local headers = { ["Content-Type"] = "application/json" }
local counter = 0
request = function()
  counter = counter + 1
  local path = "/counters/k" .. (counter * 7919 % keys)
  return wrk.format("POST", path, headers, body)
end

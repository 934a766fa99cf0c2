-- Connectel JSON delivery reports, each for a request ID no other request repeats:
-- thread t of T reports on IDs start + (t + k*T) * stride for k = 0, 1, 2, ...
-- Arguments after `--`: start stride threads [limit], limit being the requests each
-- thread makes before it stops (0 or absent: until the duration ends).

local next_index = 0
local sent = 0

function setup(thread)
  thread:set("index", next_index)
  next_index = next_index + 1
end

function init(args)
  start = tonumber(args[1] or "0")
  stride = tonumber(args[2] or "1")
  threads = tonumber(args[3] or "1")
  limit = tonumber(args[4] or "0")
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  local n = start + ((index or 0) + sent * threads) * stride
  sent = sent + 1
  local body = string.format(
    '{"action":"dlr","requestid":"BR%09d","tokenid":"4711","statusInt":1,' ..
    '"statusStr":"DELIVRD","sender":"bench","recipient":"4670%07d"}', n, n % 10000000)
  return wrk.format(nil, nil, nil, body)
end

function response(status, headers, body)
  if limit > 0 and sent >= limit then
    wrk.thread:stop()
  end
end

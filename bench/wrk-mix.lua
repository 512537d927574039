-- wrk script used by generate-capture.sh: HTTP/1.1 keep-alive requests with a
-- weighted mix of URLs (mostly small responses, a few medium, very few large
-- multi-segment ones, and a trickle of 404s).
--
-- Weights are per 10000 requests and can be overridden with environment
-- variables MIX_SMALL / MIX_MEDIUM / MIX_LARGE (the rest goes to 404s).

local small  = tonumber(os.getenv("MIX_SMALL")  or "9500")
local medium = tonumber(os.getenv("MIX_MEDIUM") or "470")
local large  = tonumber(os.getenv("MIX_LARGE")  or "20")

local reqs = {}
local thread_id = 0

function setup(thread)
  thread_id = thread_id + 1
  thread:set("id", thread_id)
end

function init(args)
  -- Each wrk thread has its own Lua state; give each a different seed.
  math.randomseed(os.time() * 7919 + (id or 0) * 104729)
  reqs.small   = wrk.format("GET", "/small.html")
  reqs.medium  = wrk.format("GET", "/medium.html")
  reqs.large   = wrk.format("GET", "/large.bin")
  reqs.missing = wrk.format("GET", "/missing")
end

function request()
  local r = math.random(10000)
  if r <= small then
    return reqs.small
  elseif r <= small + medium then
    return reqs.medium
  elseif r <= small + medium + large then
    return reqs.large
  else
    return reqs.missing
  end
end

-- Argo CD health check for elasticserving.paddlepaddle.org/v1 PaddleService.
-- kstatus compliant: status.observedGeneration and every condition's observedGeneration are compared
-- with metadata.generation, a summary Ready condition decides, Stalled=True means failed.
-- Written for Argo CD's default Lua sandbox (no string library): only .., ipairs, tostring, table.
local hs = { status = "Progressing", message = "Waiting for the operator to report status" }

local generation = obj.metadata and obj.metadata.generation

local function is_stale(observed)
  return generation ~= nil and observed ~= nil and observed < generation
end

local function describe(c)
  local text = tostring(c.type) .. "=" .. tostring(c.status)
  if c.reason ~= nil and c.reason ~= "" then text = text .. " (" .. c.reason .. ")" end
  if c.message ~= nil and c.message ~= "" then text = text .. ": " .. c.message end
  return text
end

local function with_details(text, details)
  if #details == 0 then return text end
  return text .. " | " .. table.concat(details, "; ")
end

if obj.status == nil or obj.status.conditions == nil or #obj.status.conditions == 0 then
  return hs
end
if is_stale(obj.status.observedGeneration) then
  hs.message = "Waiting for the operator to observe generation " .. generation
  return hs
end

local ready, stalled = nil, nil
local details = {}
for _, c in ipairs(obj.status.conditions) do
  if c.type == "Ready" then
    ready = c
  elseif c.type == "Stalled" then
    if c.status == "True" and not is_stale(c.observedGeneration) then stalled = c end
  elseif c.type ~= "Reconciling" and c.status ~= "True" then
    table.insert(details, describe(c))
  end
end

if stalled ~= nil then
  hs.status = "Degraded"
  hs.message = with_details(describe(stalled), details)
  return hs
end
if ready == nil then
  hs.message = with_details("Waiting for the Ready condition", details)
  return hs
end
if is_stale(ready.observedGeneration) then
  hs.message = with_details("Ready reflects generation " .. ready.observedGeneration
    .. ", waiting for generation " .. generation, details)
  return hs
end

if ready.status == "True" then
  hs.status = "Healthy"
elseif ready.status == "False" then
  hs.status = "Degraded"
end
hs.message = with_details(describe(ready), details)
return hs

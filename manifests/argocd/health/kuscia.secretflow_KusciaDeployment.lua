-- Argo CD health check for kuscia.secretflow/v1alpha1 KusciaDeployment (mirrored by paddle-kuscia-operator).
-- The operator's Ready condition decides when present (it folds in Kuscia's phase and mirroring errors);
-- without it, Kuscia's phase: Available is Healthy, Failed Degraded, Progressing/PartialAvailable/empty
-- Progressing. A status older than metadata.generation is always Progressing.
-- Written for Argo CD's default Lua sandbox (no string library): only .., ipairs, tostring, table.
local hs = { status = "Progressing", message = "Waiting for the operator to mirror the deployment" }

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

if obj.status == nil then return hs end
if is_stale(obj.status.observedGeneration) then
  hs.message = "Waiting for the operator to observe generation " .. generation
  return hs
end

local ready, stalled = nil, nil
if obj.status.conditions ~= nil then
  for _, c in ipairs(obj.status.conditions) do
    if c.type == "Ready" then ready = c end
    if c.type == "Stalled" and c.status == "True" then stalled = c end
  end
end
if ready ~= nil and is_stale(ready.observedGeneration) then
  hs.message = "Ready reflects generation " .. ready.observedGeneration .. ", waiting for generation " .. generation
  return hs
end

-- "PartialAvailable: 1/2 parties available (reason) message"
local phase = obj.status.phase
if phase == "" then phase = nil end
local summary = tostring(phase or "Pending")
if obj.status.totalParties ~= nil then
  summary = summary .. ": " .. tostring(obj.status.availableParties or 0) .. "/" .. obj.status.totalParties
    .. " parties available"
end
if obj.status.reason ~= nil and obj.status.reason ~= "" then summary = summary .. " (" .. obj.status.reason .. ")" end
if obj.status.message ~= nil and obj.status.message ~= "" then summary = summary .. " " .. obj.status.message end
if ready ~= nil and ready.status ~= "True" then summary = summary .. " | " .. describe(ready) end
hs.message = summary

if stalled ~= nil then
  hs.status = "Degraded"
  hs.message = describe(stalled) .. " | " .. summary
elseif phase == "Failed" or (ready ~= nil and ready.status == "False") then
  hs.status = "Degraded"
elseif ready ~= nil then
  if ready.status == "True" then hs.status = "Healthy" end
elseif phase == "Available" then
  hs.status = "Healthy"
end
return hs

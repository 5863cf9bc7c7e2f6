-- Argo CD health check for kuscia.secretflow/v1alpha1 KusciaJob (mirrored by paddle-kuscia-operator).
-- status.phase is Kuscia's job phase; the operator adds a Ready condition (False when mirroring or the
-- job failed) and observedGeneration. A finished job is Healthy, a failed/rejected/cancelled one
-- Degraded, a job waiting for approval or suspended is Suspended, anything else Progressing. Before
-- Kuscia reports a phase, the Ready condition decides (False: Degraded, True: Healthy).
-- Written for Argo CD's default Lua sandbox (no string library): only .., ipairs, pairs, tostring, table.
local hs = { status = "Progressing", message = "Waiting for the operator to mirror the job" }

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

-- Summary of the phase: "Running: job-psi=Succeeded, job-split=Running (reason: message)".
local phase = obj.status.phase
local parts = {}
if obj.status.taskStatus ~= nil then
  local tasks = {}
  for task, _ in pairs(obj.status.taskStatus) do table.insert(tasks, task) end
  table.sort(tasks)
  for _, task in ipairs(tasks) do table.insert(parts, task .. "=" .. tostring(obj.status.taskStatus[task])) end
end
if phase == "" then phase = nil end
local summary = tostring(phase or "Pending")
if #parts > 0 then summary = summary .. ": " .. table.concat(parts, ", ") end
if obj.status.reason ~= nil and obj.status.reason ~= "" then summary = summary .. " (" .. obj.status.reason .. ")" end
if obj.status.message ~= nil and obj.status.message ~= "" then summary = summary .. " " .. obj.status.message end
if ready ~= nil and ready.status ~= "True" then summary = summary .. " | " .. describe(ready) end
hs.message = summary

if phase == "Succeeded" then
  hs.status = "Healthy"
elseif phase == "Failed" or phase == "ApprovalReject" or phase == "Cancelled" then
  hs.status = "Degraded"
elseif phase == "Suspended" or phase == "AwaitingApproval" then
  hs.status = "Suspended"
elseif stalled ~= nil then
  hs.status = "Degraded"
  hs.message = describe(stalled) .. " | " .. summary
elseif ready ~= nil and ready.status == "False" then
  hs.status = "Degraded"
elseif phase == nil and ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
end
return hs

-- Mirrored by paddle-kuscia-operator. status.phase is Kuscia's job phase and decides first: a finished
-- job is Healthy, a failed/rejected/cancelled one Degraded, one waiting for approval or suspended
-- Suspended. Otherwise Stalled=True or Ready=False is Degraded; before Kuscia reports a phase,
-- Ready=True is Healthy; anything else is Progressing.
local phase = obj.status.phase
if phase == "" then phase = nil end
-- "Running: job-psi=Succeeded, job-split=Running"
local parts = {}
if obj.status.taskStatus ~= nil then
  local tasks = {}
  for task, _ in pairs(obj.status.taskStatus) do table.insert(tasks, task) end
  table.sort(tasks)
  for _, task in ipairs(tasks) do table.insert(parts, task .. "=" .. tostring(obj.status.taskStatus[task])) end
end
hs.message = summarize(phase, table.concat(parts, ", "))

if phase == "Succeeded" then
  hs.status = "Healthy"
elseif phase == "Failed" or phase == "ApprovalReject" or phase == "Cancelled" then
  hs.status = "Degraded"
elseif phase == "Suspended" or phase == "AwaitingApproval" then
  hs.status = "Suspended"
elseif stalled ~= nil then
  hs.status = "Degraded"
  hs.message = describe(stalled) .. " | " .. hs.message
elseif ready ~= nil and ready.status == "False" then
  hs.status = "Degraded"
elseif phase == nil and ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
end

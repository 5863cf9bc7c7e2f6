-- Mirrored by paddle-kuscia-operator. The operator's Ready condition decides when present (it folds in
-- Kuscia's phase and mirroring errors); without it, Kuscia's phase: Available is Healthy, Failed
-- Degraded, Progressing/PartialAvailable/empty Progressing.
local phase = obj.status.phase
if phase == "" then phase = nil end
local parties = nil
if obj.status.totalParties ~= nil then
  parties = tostring(obj.status.availableParties or 0) .. "/" .. obj.status.totalParties .. " parties available"
end
hs.message = summarize(phase, parties)

if stalled ~= nil then
  hs.status = "Degraded"
  hs.message = describe(stalled) .. " | " .. hs.message
elseif phase == "Failed" or (ready ~= nil and ready.status == "False") then
  hs.status = "Degraded"
elseif ready ~= nil then
  if ready.status == "True" then hs.status = "Healthy" end
elseif phase == "Available" then
  hs.status = "Healthy"
end

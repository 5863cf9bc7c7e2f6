-- kstatus compliant: status.observedGeneration and every condition's observedGeneration are compared
-- with metadata.generation, the Ready condition decides, Stalled=True means failed.
if obj.status.conditions == nil or #obj.status.conditions == 0 then return hs end
if stalled ~= nil then
  hs.status = "Degraded"
  hs.message = with_details(describe(stalled), details)
  return hs
end
if ready == nil then
  hs.message = with_details("Waiting for the Ready condition", details)
  return hs
end
if ready.status == "True" then
  hs.status = "Healthy"
elseif ready.status == "False" then
  hs.status = "Degraded"
end
hs.message = with_details(describe(ready), details)

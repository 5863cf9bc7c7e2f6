-- Written for Argo CD's default Lua sandbox (no string library): only .., ipairs, pairs, tostring, table.
local hs = { status = "Progressing", message = WAITING }

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

if obj.status == nil then return hs end
if is_stale(obj.status.observedGeneration) then
  hs.message = "Waiting for the operator to observe generation " .. generation
  return hs
end

-- kstatus: a summary Ready condition, Stalled=True for a failure retrying cannot fix; the other
-- conditions that are not True are listed after the deciding one.
local ready, stalled = nil, nil
local details = {}
for _, c in ipairs(obj.status.conditions or {}) do
  if c.type == "Ready" then
    ready = c
  elseif c.type == "Stalled" then
    if c.status == "True" and not is_stale(c.observedGeneration) then stalled = c end
  elseif c.type ~= "Reconciling" and c.status ~= "True" then
    table.insert(details, describe(c))
  end
end
if ready ~= nil and is_stale(ready.observedGeneration) then
  hs.message = with_details("Ready reflects generation " .. ready.observedGeneration
    .. ", waiting for generation " .. generation, details)
  return hs
end

-- Kuscia's phase summary: "<phase>[: <detail>] (<reason>) <message> | Ready=... (...)".
local function summarize(phase, detail)
  local text = tostring(phase or "Pending")
  if detail ~= nil and detail ~= "" then text = text .. ": " .. detail end
  if obj.status.reason ~= nil and obj.status.reason ~= "" then text = text .. " (" .. obj.status.reason .. ")" end
  if obj.status.message ~= nil and obj.status.message ~= "" then text = text .. " " .. obj.status.message end
  if ready ~= nil and ready.status ~= "True" then text = text .. " | " .. describe(ready) end
  return text
end

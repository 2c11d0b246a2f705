-- Argo CD health check for hearth.dev/Ingester (resource.customizations.health.hearth.dev_Ingester).
-- Reads the conditions the operator writes: Degraded, Progressing, Available.
local hs = {}
if obj.status == nil or obj.status.conditions == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to report status"
  return hs
end
if obj.metadata ~= nil and obj.metadata.generation ~= nil and
   (obj.status.observedGeneration == nil or obj.status.observedGeneration < obj.metadata.generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. obj.metadata.generation
  return hs
end
local available, progressing, degraded
for _, c in ipairs(obj.status.conditions) do
  if c.type == "Available" then
    available = c
  elseif c.type == "Progressing" then
    progressing = c
  elseif c.type == "Degraded" then
    degraded = c
  end
end
local function describe(c)
  local m = c.reason or ""
  if c.message ~= nil and c.message ~= "" then
    m = m .. ": " .. c.message
  end
  return m
end
if degraded ~= nil and degraded.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(degraded)
  return hs
end
if obj.spec ~= nil and obj.spec.paused == true then
  hs.status = "Suspended"
  hs.message = "spec.paused is true: the operator changes nothing"
  return hs
end
if progressing ~= nil and progressing.status == "True" then
  hs.status = "Progressing"
  hs.message = describe(progressing)
  return hs
end
if available ~= nil and available.status == "True" then
  hs.status = "Healthy"
  hs.message = describe(available)
  return hs
end
if available ~= nil and available.reason == "ScaledToZero" then
  hs.status = "Suspended"
  hs.message = describe(available)
  return hs
end
hs.status = "Progressing"
if available ~= nil then
  hs.message = describe(available)
else
  hs.message = "Waiting for the Available condition"
end
return hs

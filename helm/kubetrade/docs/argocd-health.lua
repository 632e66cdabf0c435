-- Argo CD health check for kubetrade.io/LiveTradingSession.
--
-- Install it in Argo CD's argocd-cm ConfigMap (see README.md next to this file):
--   resource.customizations.health.kubetrade.io_LiveTradingSession: |
--     <this file>
--
-- Progressing  until the operator has seen the newest spec (status.observedGeneration),
--              while the runner starts, stops or is replaced, and while a new spec is on
--              probation (Reconciling: its runner is up, not yet proven stable);
-- Degraded     when the session is stalled (nothing improves until someone changes
--              something), degraded, failed, or running an older spec after a rollback;
-- Suspended    when spec.suspend holds the runner stopped;
-- Healthy      when the runner is Running and Ready, or the session Completed (its
--              market data ended).
local hs = {}
local status = obj.status
if status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the kubetrade operator to see the session"
  return hs
end

local generation = (obj.metadata or {}).generation or 0
if (status.observedGeneration or 0) < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to act on generation " .. tostring(generation)
  return hs
end

local conditions = {}
for _, condition in ipairs(status.conditions or {}) do
  if condition.type ~= nil then
    conditions[condition.type] = condition
  end
end

local function holds(kind)
  local condition = conditions[kind]
  return condition ~= nil and condition.status == "True"
end

local function said(kind)
  local condition = conditions[kind] or {}
  local text = condition.message
  if text == nil or text == "" then
    text = condition.reason or ""
  end
  return text
end

local phase = status.phase or ""
local explained = status.message
if explained == nil or explained == "" then
  explained = status.reason or phase
end

if holds("RolledBack") then
  hs.status = "Degraded"
  hs.message = "Rolled back to the last stable spec: " .. said("RolledBack")
  return hs
end
if holds("Stalled") then
  hs.status = "Degraded"
  hs.message = said("Stalled")
  if hs.message == "" then hs.message = explained end
  return hs
end
if phase == "Degraded" or phase == "Failed" then
  hs.status = "Degraded"
  hs.message = explained
  return hs
end
if phase == "Suspended" or holds("Suspended") then
  hs.status = "Suspended"
  hs.message = "Suspended by spec.suspend"
  return hs
end
if phase == "Running" and holds("Reconciling") then
  hs.status = "Progressing"
  hs.message = said("Reconciling")
  return hs
end
if (phase == "Running" and holds("Ready")) then
  hs.status = "Healthy"
  hs.message = explained
  return hs
end
if phase == "Completed" then
  hs.status = "Healthy"
  hs.message = "Completed: " .. explained
  return hs
end
hs.status = "Progressing"
hs.message = explained
return hs

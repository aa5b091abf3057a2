-- Argo CD health check for splice.dev/v1alpha1 CompilerVersion, installed as the argocd-cm key
-- resource.customizations.health.splice.dev_CompilerVersion (docs/argocd.md says how, and why
-- each state maps as it does). go test ./test/argocd/ runs every case of health_test.yaml.
--
-- Argo CD runs an argocd-cm script without Lua's string library (useOpenLibs is off unless set),
-- so this script only compares and concatenates strings: it cannot cut a message, and quotes only
-- the controller's messages that are one short line.
--
-- The first rule that applies wins:
--  1. no status, status.observedGeneration < metadata.generation, or a Built condition of an older
--     generation: Progressing. Until both reconcilers have seen the spec, phase and conditions
--     describe an older one (a Completed CompilerVersion whose new revision is not built yet).
--  2. Ready False with reason InvalidSelector: Degraded; nothing rolls out until spec.selector is
--     fixed.
--  3. phase Completed: Healthy when Ready is True; Degraded when a pod failed or cannot load the
--     artifact since (status.failed, status.incompatible); else Progressing (a new or restarted
--     pod is still swapping, or no pod is targeted).
--  4. Pending, Building, Progressing: Progressing, saying what it waits for.
--  5. Paused (splice.dev/paused, a canary pause, or a failed analysis held by onFailure: Pause):
--     Suspended, with the Paused condition's message, which says how to go on.
--  6. RolledBack, Degraded: Degraded with the Degraded condition's message. BuildFailed:
--     Degraded, from the Built condition.
--  7. any other phase (a newer Splice): Unknown.

local hs = {}

-- get returns value[k1][k2]..., or nil as soon as one level is missing.
local function get(value, ...)
  for _, key in ipairs({...}) do
    if type(value) ~= "table" then
      return nil
    end
    value = value[key]
  end
  return value
end

-- count reads a number that may be missing.
local function count(value)
  if value == nil then
    return 0
  end
  return tonumber(value) or 0
end

local function condition(conditionType)
  for _, c in ipairs(get(obj, "status", "conditions") or {}) do
    if c.type == conditionType then
      return c
    end
  end
  return nil
end

-- messageOf is the condition's message, or fallback when it has none.
local function messageOf(c, fallback)
  if c ~= nil and type(c.message) == "string" and c.message ~= "" then
    return c.message
  end
  return fallback
end

local function health(status, message)
  hs.status = status
  hs.message = message
  return hs
end

local generation = count(get(obj, "metadata", "generation"))
if obj.status == nil then
  return health("Progressing", "waiting for the Splice controller to observe generation " .. generation)
end
local observed = count(obj.status.observedGeneration)
if observed < generation then
  return health("Progressing", "waiting for the Splice controller to observe generation " .. generation ..
    " (status is of generation " .. observed .. ")")
end
local built = condition("Built")
if built ~= nil and count(built.observedGeneration) < generation then
  return health("Progressing", "waiting for the Splice build controller to observe generation " .. generation)
end

local ready = condition("Ready")
if ready ~= nil and ready.status == "False" and ready.reason == "InvalidSelector" then
  return health("Degraded", messageOf(ready, "spec.selector cannot be used"))
end

local phase = obj.status.phase
local noPods = ready ~= nil and ready.reason == "NoTargetPods"

if phase == "Completed" then
  if ready ~= nil and ready.status == "True" then
    return health("Healthy", messageOf(ready, "every targeted pod runs the artifact"))
  end
  local broken = count(obj.status.failed) + count(obj.status.incompatible)
  if broken > 0 then
    local digest = get(obj, "status", "artifact", "digest") or "the artifact"
    return health("Degraded", "after the rollout completed, " .. broken .. " of " .. count(obj.status.targeted) ..
      " targeted pods failed to run " .. digest .. "; status.recentFailures says why")
  end
  return health("Progressing", messageOf(ready, "waiting for every targeted pod to run the artifact"))
end

if phase == "Building" then
  return health("Progressing", messageOf(built, "the plugin is being built"))
end
if phase == "Pending" then
  -- Built False while Pending is a registry that cannot be read yet, which the controller retries.
  if built ~= nil and built.status == "False" then
    return health("Progressing", messageOf(built, "waiting for the artifact"))
  end
  return health("Progressing", messageOf(ready, "waiting for an artifact and pods to roll it out to"))
end
if phase == "Progressing" then
  if noPods then
    return health("Progressing", messageOf(ready, "no pod is targeted"))
  end
  return health("Progressing", messageOf(condition("Progressing"), messageOf(ready, "pods are moving to the artifact")))
end

if phase == "Paused" then
  local paused = condition("Paused")
  -- The controller's message names the annotation but not the way out; the canary's own pause
  -- and a held analysis failure say how to go on themselves.
  if paused ~= nil and paused.reason == "PausedByUser" then
    return health("Suspended", messageOf(paused, "paused by annotation splice.dev/paused") .. "; remove it to resume")
  end
  return health("Suspended", messageOf(paused, "the rollout is paused"))
end

-- A retry does nothing while splice.dev/abort still says "true": the rollout is aborted again.
local retry = "; annotate splice.dev/retry to try again"
if get(obj, "metadata", "annotations", "splice.dev/abort") == "true" then
  retry = "; remove splice.dev/abort and annotate splice.dev/retry to try again"
end
local degraded = condition("Degraded")

if phase == "RolledBack" then
  -- The Degraded condition keeps the failure's own message, which does not say how to go on.
  return health("Degraded", "rolled back: " .. messageOf(degraded, "the rollout failed") .. retry)
end
if phase == "Degraded" then
  local message = messageOf(degraded, messageOf(ready, "pods failed to swap or are incompatible"))
  if degraded ~= nil and degraded.reason == "Aborted" then
    message = message .. retry
  end
  return health("Degraded", message)
end
if phase == "BuildFailed" then
  local reason = get(built, "reason") or "unknown reason"
  local revision = get(obj, "spec", "plugin", "source", "git", "revision")
  -- A failed build Job's message goes on with the tail of its build log, up to 8 KiB; the other
  -- refusals (a prebuilt artifact that does not fit the spec, a Job in the way) are one line
  -- that says what to change.
  if revision == nil or reason == "BuildJobConflict" then
    return health("Degraded", messageOf(built, "the build failed"))
  end
  return health("Degraded", "build of revision " .. revision .. " failed (" .. reason ..
    "): the Built condition's message has the error and the end of the build log")
end

return health("Unknown", "unknown phase " .. tostring(phase) .. ": use the health check of the Splice release that runs")

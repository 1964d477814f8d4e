-- The generations this editor asked for and has not seen end. When the daemon dies they are lost with it (the
-- daemon's queue lives in memory): say which, and queue them again after the restart or offer to, per
-- `daemon.resubmit_lost_jobs` ("ask" | "always" | "never"). Nothing here waits on the user.
local M = {}

local submitted = {} -- track_id -> { params = generate params, at = order }
local order = 0
local lost = {} -- params of the generations lost in the last crash, oldest first
local finished = {} -- track_id -> true: ended before the generate reply was handled (notifications can lead)

--- Remember a generation the daemon accepted.
function M.submitted(track_id, params)
  if track_id and finished[track_id] then
    finished[track_id] = nil
  elseif track_id and not submitted[track_id] then
    order = order + 1
    submitted[track_id] = { params = vim.deepcopy(params), at = order }
  end
end

--- A generate request died with the daemon before it was answered: it is lost too.
function M.unanswered(params)
  order = order + 1
  submitted["?" .. order] = { params = vim.deepcopy(params), at = order }
end

--- A generation ended (complete, error, cancelled): it can't be lost any more.
function M.ended(track_id)
  if track_id and not submitted[track_id] then
    finished[track_id] = true
  end
  submitted[track_id or ""] = nil
end

--- Params of the generations that were lost and not resubmitted yet.
function M.lost()
  return vim.deepcopy(lost)
end

local function short(prompt)
  prompt = tostring(prompt or "")
  return #prompt > 30 and (prompt:sub(1, 29) .. "…") or prompt
end

local function describe(list)
  local names = {}
  for i, p in ipairs(list) do
    if i > 2 then
      names[#names + 1] = string.format("%d more", #list - 2)
      break
    end
    names[#names + 1] = "“" .. short(p.prompt) .. "”"
  end
  return table.concat(names, ", ")
end

--- The daemon died: everything still submitted is lost. Returns the text to add to the crash message (one
--- message, since two echoed in a row would wait for Enter), or nil when nothing was lost.
---@param restarting boolean
---@return string|nil
function M.on_daemon_exit(restarting)
  local items = {}
  for _, j in pairs(submitted) do
    items[#items + 1] = j
  end
  submitted = {}
  if #items == 0 then
    return nil
  end
  table.sort(items, function(a, b)
    return a.at < b.at
  end)
  for _, j in ipairs(items) do
    lost[#lost + 1] = j.params
  end
  local mode = require("lofi.config").get().daemon.resubmit_lost_jobs
  local what = string.format(
    "%d generation%s lost with the daemon: %s",
    #items,
    #items == 1 and "" or "s",
    describe(lost)
  )
  local next_step = ""
  if mode == "always" and restarting then
    next_step = "; queued again after the restart"
  elseif mode ~= "never" then
    next_step = "; :Lofi resubmit queues " .. (#lost == 1 and "it" or "them") .. " again"
  end
  return what .. next_step
end

--- The daemon (re)started: with "always", queue the lost generations again.
function M.on_daemon_started()
  if #lost > 0 and require("lofi.config").get().daemon.resubmit_lost_jobs == "always" then
    M.resubmit()
  end
end

--- Queue the lost generations again (:Lofi resubmit). Returns how many.
---@param cb? fun(err, result) called for each
function M.resubmit(cb)
  local list = lost
  lost = {}
  if #list == 0 then
    require("lofi.ui").info("no lost generations to resubmit")
    return 0
  end
  for _, params in ipairs(list) do
    require("lofi").generate(params, cb)
  end
  require("lofi.ui").info(string.format("resubmitted %d generation%s", #list, #list == 1 and "" or "s"))
  return #list
end

return M

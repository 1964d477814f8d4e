-- What lofi does with each daemon notification, in this order: update the cached state, redraw the statuslines,
-- show progress and messages (lofi.ui), fire the User event. lofi.client calls M.handle for every notification and
-- M.state_cleared when the daemon is gone.
local M = {}

local state = require("lofi.state")
local events = require("lofi.events")
local ui = require("lofi.ui")

-- Notifications that change what lofi.statusline() shows.
local REDRAW = {
  generation_started = true,
  generation_progress = true,
  generation_complete = true,
  generation_error = true,
  generation_cancelled = true,
  download_progress = true,
  playback_started = true,
  playback_paused = true,
  playback_resumed = true,
  playback_ended = true,
  playback_position = true,
  radio_started = true,
  radio_window = true,
  radio_stopped = true,
}

--- Redraw every statusline: the plain one re-evaluates lofi.statusline(); lualine keeps a rendered string, so it
--- is asked to refresh (it would otherwise catch up only on its own timer or events).
function M.redraw()
  pcall(vim.cmd.redrawstatus, { bang = true })
  local lualine = package.loaded["lualine"]
  if type(lualine) == "table" and type(lualine.refresh) == "function" then
    pcall(lualine.refresh, { place = { "statusline" } })
  end
end

local function show(method, p)
  local short = ui.short
  if method == "generation_started" then
    ui.progress(p.track_id, string.format("generating “%s”…", short(p.prompt)))
  elseif method == "generation_progress" then
    local g = state.current.generating[p.track_id]
    local eta = p.eta_sec and string.format(", ~%ds left", math.floor(p.eta_sec)) or ""
    ui.progress(
      p.track_id,
      string.format("generating “%s” %d%%%s", short(g and g.prompt), p.percent or 0, eta)
    )
  elseif method == "generation_complete" and p.cached then
    ui.notify(string.format("“%s” was already in the cache (%s)", short(p.prompt), p.track_id))
  elseif method == "generation_complete" then
    ui.progress(
      p.track_id,
      string.format(
        "track ready: “%s” (%s, generated in %.0fs)",
        short(p.prompt),
        state.format_time(p.duration_sec),
        tonumber(p.generation_time_sec) or 0
      ),
      true
    )
  elseif method == "generation_error" then
    ui.progress(p.track_id, "generation failed", true)
    ui.error("generation failed: " .. ui.format_error({ message = p.message, data = p }))
  elseif method == "generation_cancelled" then
    ui.progress(p.track_id, "generation cancelled", true)
  elseif method == "download_progress" then
    local key = "download:" .. tostring(p.backend)
    if p.state == "complete" then
      ui.progress(key, string.format("%s model downloaded", p.backend), true)
    elseif p.state == "error" then
      ui.progress(key, "download failed", true)
      ui.error(string.format("downloading %s failed: %s", p.backend, p.message or "unknown error"))
    else
      ui.progress(
        key,
        string.format(
          "downloading %s %d%% (%s/%s files)",
          p.backend,
          p.percent or 0,
          p.files_completed or "?",
          p.files_total or "?"
        )
      )
    end
  elseif method == "radio_started" then
    ui.notify(string.format("radio on: “%s”%s", short(p.prompt), p.plan and (", plan " .. p.plan) or ""))
  elseif method == "radio_stopped" then
    ui.notify("radio off: " .. tostring(p.reason))
  elseif method == "log" then
    local level = ({ warning = vim.log.levels.WARN, error = vim.log.levels.ERROR })[p.level]
    if level then
      ui.notify_once_in(tostring(p.message), level, 60000)
    end
  end
end

--- Handle one daemon notification.
---@param method string
---@param p table
function M.handle(method, p)
  -- Prefetch runs in the background: the statusline shows it, notifications don't.
  local before = state.current.generating[p.track_id or ""]
  local quiet = (p.priority or (before and before.priority)) == "prefetch"
  state.apply(method, p)
  if method == "radio_started" or method == "radio_stopped" then
    -- the editor's energy is measured only while an adaptive radio is on
    require("lofi.energy").follow(method == "radio_started" and p.adaptive == true)
  end
  if method == "generation_complete" or method == "generation_error" or method == "generation_cancelled" then
    require("lofi.jobs").ended(p.track_id) -- it can't be lost with the daemon any more
  end
  if REDRAW[method] then
    M.redraw()
  end
  if not quiet or method == "generation_error" then
    show(method, p)
  end
  local pattern = events.by_notification[method]
  if pattern then
    local data = vim.deepcopy(p)
    if pattern == "LofiPlaybackChanged" then
      data.event = method:gsub("^playback_", "")
      data.state = state.current.playback.state
      if method == "playback_ended" then
        -- The event is about the track that ended; a crossfade may already be playing the next one.
        data.state = "stopped"
        local now = state.current.playback
        data.next_track_id = (now.state == "playing" and now.track_id ~= p.track_id) and now.track_id or nil
      end
    elseif pattern == "LofiRadioChanged" then
      data.on = method == "radio_started"
    end
    events.fire(pattern, data)
  end
end

--- The daemon is gone (exit, crash, restart): nothing plays or generates any more; say so in the statuslines.
function M.state_cleared()
  state.current.generating = {}
  state.current.connecting = 0
  state.current.downloads = {}
  state.current.radio = nil
  if package.loaded["lofi.energy"] then
    require("lofi.energy").follow(false)
  end
  state.set_playback({ state = "stopped", track_id = nil, position_sec = 0, duration_sec = 0 })
  ui.progress_reset()
  M.redraw()
end

return M

-- In-memory state kept up to date by daemon notifications and replies. The statusline reads only this (no RPC).
local M = {}

local uv = vim.uv or vim.loop

local function fresh()
  return {
    daemon = { running = false, pid = nil, log_file = nil, cache_dir = nil, version = nil, restarts = 0 },
    playback = {
      state = "stopped", -- "playing" | "paused" | "stopped"
      track_id = nil,
      position_sec = 0,
      duration_sec = 0,
      volume = nil,
      updated_at = 0, -- uv.now() when position_sec was last set
    },
    generating = {}, -- track_id -> { track_id, prompt, backend, percent, eta_sec, started_at }
    connecting = 0, -- generate requests sent and not answered yet (a remote generator still connecting)
    downloads = {}, -- backend -> { percent, state }
    tracks = {}, -- track_id -> last Track record seen (for completion and pickers)
    last_complete = nil, -- track_id of the last completed generation
    radio = nil, -- while the radio is on: { radio_id, prompt, plan, section, windows }
  }
end

M.current = fresh()

function M.reset()
  M.current = fresh()
end

--- Merge a playback state object (`{state, track_id, position_sec, duration_sec, volume}`) from a reply.
---@param pb table
function M.set_playback(pb)
  if type(pb) ~= "table" or not pb.state then
    return
  end
  local p = M.current.playback
  p.state = pb.state
  p.track_id = pb.track_id
  p.position_sec = tonumber(pb.position_sec) or 0
  p.duration_sec = tonumber(pb.duration_sec) or p.duration_sec
  if pb.volume ~= nil then
    p.volume = pb.volume
  end
  p.updated_at = uv.now()
end

--- Position now, interpolated from the last update while playing.
function M.position()
  local p = M.current.playback
  local pos = p.position_sec or 0
  if p.state == "playing" then
    pos = pos + (uv.now() - p.updated_at) / 1000
  end
  if p.duration_sec and p.duration_sec > 0 then
    pos = math.min(pos, p.duration_sec)
  end
  return pos
end

function M.is_playing()
  return M.current.playback.state == "playing"
end

function M.is_generating()
  return next(M.current.generating) ~= nil
end

--- The running generation with the highest percent (the one the worker is on).
function M.active_generation()
  local best
  for _, g in pairs(M.current.generating) do
    if g.running and (not best or (g.percent or 0) > (best.percent or 0)) then
      best = g
    end
  end
  if not best then
    for _, g in pairs(M.current.generating) do
      best = best or g
    end
  end
  return best
end

---@param sec number
---@return string
function M.format_time(sec)
  sec = math.max(0, math.floor(tonumber(sec) or 0))
  return string.format("%d:%02d", math.floor(sec / 60), sec % 60)
end

--- Record a track (from cache_list or generation_complete) for pickers and completion.
function M.remember_track(t)
  if type(t) == "table" and t.track_id then
    M.current.tracks[t.track_id] = vim.tbl_extend("force", M.current.tracks[t.track_id] or {}, t)
  end
end

--- Apply one daemon notification to the state.
---@param method string
---@param p table
function M.apply(method, p)
  p = p or {}
  local s = M.current
  if method == "generation_started" then
    s.generating[p.track_id] = {
      track_id = p.track_id,
      prompt = p.prompt,
      backend = p.backend,
      priority = p.priority,
      percent = 0,
      running = true,
      started_at = uv.now(),
    }
  elseif method == "generation_progress" then
    local g = s.generating[p.track_id] or { track_id = p.track_id, running = true, priority = p.priority }
    g.percent = tonumber(p.percent) or g.percent
    g.eta_sec = p.eta_sec
    g.running = true
    s.generating[p.track_id] = g
  elseif method == "generation_complete" then
    s.generating[p.track_id] = nil
    s.last_complete = p.track_id
    M.remember_track(p)
  elseif method == "generation_error" or method == "generation_cancelled" then
    s.generating[p.track_id] = nil
  elseif method == "playback_started" then
    M.set_playback({
      state = "playing",
      track_id = p.track_id,
      position_sec = 0,
      duration_sec = p.duration_sec,
    })
  elseif method == "playback_paused" then
    M.set_playback({ state = "paused", track_id = p.track_id, position_sec = p.position_sec })
  elseif method == "playback_resumed" then
    M.set_playback({ state = "playing", track_id = p.track_id, position_sec = p.position_sec })
  elseif method == "playback_position" then
    M.set_playback({
      state = s.playback.state == "stopped" and "playing" or s.playback.state,
      track_id = p.track_id,
      position_sec = p.position_sec,
      duration_sec = p.duration_sec,
    })
  elseif method == "playback_ended" then
    -- A crossfade may already have started the next track; only stop if the ended track is the current one.
    if s.playback.track_id == nil or s.playback.track_id == p.track_id then
      M.set_playback({ state = "stopped", track_id = nil, position_sec = 0, duration_sec = 0 })
    end
  elseif method == "radio_started" then
    s.radio = { radio_id = p.radio_id, prompt = p.prompt, plan = p.plan, windows = 0 }
  elseif method == "radio_window" then
    if s.radio and s.radio.radio_id == p.radio_id then
      s.radio.windows = (p.index or 0) + 1
      s.radio.section = p.section
    end
  elseif method == "radio_stopped" then
    if s.radio and s.radio.radio_id == p.radio_id then
      s.radio = nil
    end
  elseif method == "download_progress" then
    if p.state == "downloading" then
      s.downloads[p.backend] = { percent = p.percent, file = p.file }
    else
      s.downloads[p.backend] = nil
    end
  end
end

--- Statusline text from cached state: "▶ 0:15/0:30", "⏸ 0:15/0:30", "◌ 45%" ("◌ …" while a generate waits for
--- its answer: a remote generator connecting), both, or "". While the radio is
--- on: "📻", its section when it follows a plan, and the pause icon when paused ("📻 groove", "📻 ⏸").
---@param icons table
---@return string
function M.statusline(icons)
  local parts = {}
  local p = M.current.playback
  local radio = M.current.radio
  if radio then
    local text = icons.radio or "📻"
    if radio.section then
      text = text .. " " .. radio.section
    end
    if p.state == "paused" and p.track_id == radio.radio_id then
      text = text .. " " .. icons.paused
    end
    parts[#parts + 1] = text
  elseif p.state == "playing" or p.state == "paused" then
    local icon = p.state == "playing" and icons.playing or icons.paused
    parts[#parts + 1] =
      string.format("%s %s/%s", icon, M.format_time(M.position()), M.format_time(p.duration_sec))
  end
  local g = M.active_generation()
  if g then
    parts[#parts + 1] = string.format("%s %d%%", icons.generating, math.floor(g.percent or 0))
  elseif (M.current.connecting or 0) > 0 then -- asked for, no answer yet (daemon starting, remote connecting)
    parts[#parts + 1] = icons.generating .. " …"
  end
  local _, d = next(M.current.downloads)
  if d then
    parts[#parts + 1] = string.format("%s %d%%", icons.downloading, math.floor(d.percent or 0))
  end
  return table.concat(parts, " ")
end

return M

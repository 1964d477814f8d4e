-- Pure helpers: formatting daemon replies into lines (arguments are parsed by lofi.args).
local M = {}

local state = require("lofi.state")

--- Lines describing the queue (pure; used by :Lofi queue).
function M.queue(q)
  local lines = {}
  if q.running then
    lines[#lines + 1] = string.format(
      "▶ %s  %3d%%  %s  [%s]",
      q.running.track_id,
      math.floor(q.running.percent or 0),
      q.running.prompt or "",
      q.running.backend or ""
    )
  end
  for _, w in ipairs(q.waiting or {}) do
    lines[#lines + 1] = string.format(
      "%d. %s  %s  [%s, %s]",
      w.position or 0,
      w.track_id,
      w.prompt or "",
      w.backend or "",
      w.priority or ""
    )
  end
  for _, c in ipairs(type(q.connecting) == "table" and q.connecting or {}) do
    lines[#lines + 1] =
      string.format("… %s  [%s, waiting for the remote generator]", c.prompt or "", c.backend or "")
  end
  if #lines == 0 then
    lines[1] = "the queue is empty"
  end
  return lines
end

--- One player per machine: say which other lofi has the sound (the daemon reports its pid).
---@param pid integer|nil
---@return string
function M.elsewhere(pid)
  if type(pid) ~= "number" then
    return ""
  end
  return string.format(" (another lofi plays: pid %d, another Neovim?)", pid)
end

function M.status(st)
  local pb = st.playback or {}
  local q = st.queue or {}
  return {
    string.format(
      "daemon %s (pid %s, up %s)",
      st.version or "?",
      st.pid or "?",
      state.format_time(st.uptime_sec)
    ),
    pb.track_id and string.format(
      "playback: %s %s %s/%s, volume %d%%",
      pb.state,
      pb.track_id,
      state.format_time(pb.position_sec),
      state.format_time(pb.duration_sec),
      math.floor((tonumber(pb.volume) or 0) * 100 + 0.5)
    ) or ("playback: " .. tostring(pb.state or "stopped") .. M.elsewhere(pb.playing_elsewhere)),
    string.format(
      "queue: %s running, %d waiting%s",
      (q.running and q.running ~= vim.NIL) and "1" or "0",
      type(q.waiting) == "table" and #q.waiting or tonumber(q.waiting) or 0,
      (tonumber(q.connecting) or 0) > 0 and string.format(", %d connecting", q.connecting) or ""
    ),
    "model: " .. tostring(st.loaded_backend or "none loaded"),
    M.generator(st.generator),
    "log: " .. tostring(st.log_file or "?"),
    "cache: " .. tostring(st.cache_dir or "?"),
  }
end

--- The remote generator in one line: host, state, round trip, and what runs there.
---@param g table|nil the `generator` field of `status`
---@return string
function M.generator(g)
  if type(g) ~= "table" then
    return "generator: local"
  end
  local names = {}
  for _, b in ipairs(type(g.backends) == "table" and g.backends or {}) do
    local provider = type(b.provider) == "string" and (" on " .. b.provider) or ""
    names[#names + 1] = tostring(b.name) .. provider
  end
  local err = (type(g.error) == "string" and g.state ~= "ready") and (": " .. g.error) or ""
  return string.format(
    "generator: %s %s%s%s%s",
    tostring(g.host or "?"),
    tostring(g.state or "?"),
    type(g.latency_ms) == "number" and string.format(", %.0f ms round trip", g.latency_ms) or "",
    #names > 0 and (", " .. table.concat(names, ", ")) or "",
    err
  )
end

function M.backends(res)
  local lines = {}
  for _, b in ipairs(res.backends or {}) do
    lines[#lines + 1] = string.format(
      "%s %s (%s)%s  %s-%ss @ %s Hz%s",
      b.installed and "✓" or "✗",
      b.name,
      b.display_name or b.name,
      b.name == res.default_backend and " [default]" or "",
      b.min_duration_sec or "?",
      b.max_duration_sec or "?",
      b.sample_rate or "?",
      b.installed and "" or ("  — :Lofi download " .. b.name)
    )
    if type(b.lora_styles) == "table" and #b.lora_styles > 0 then
      lines[#lines + 1] = "    LoRA styles (lora=): " .. table.concat(b.lora_styles, ", ")
    end
  end
  return lines
end

return M

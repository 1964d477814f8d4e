-- lofi: public Lua API. Every function mirrors a :Lofi subcommand; all daemon calls are asynchronous and take an
-- optional callback `cb(err, result)`. Without a callback, errors are shown with vim.notify.
local M = {}

---@alias lofi.Callback fun(err: {code: integer, message: string, data?: table}|nil, result: table|nil)

-- Modules are loaded on first use, not here: a plugin manager that loads lofi early (lazy.nvim does when lualine
-- requires lofi's component) and calls setup() must not pay for the client, RPC and UI modules at startup.
local function lazy(name)
  return setmetatable({}, {
    __index = function(_, key)
      return require(name)[key]
    end,
  })
end
local client = lazy("lofi.client")
local state = lazy("lofi.state")
local events = lazy("lofi.events")
local ui = lazy("lofi.ui")
local fmt = lazy("lofi.format")

local function cfg()
  return require("lofi.config").get()
end

local function default_cb(on_ok)
  return function(err, result)
    if err then
      ui.error(ui.format_error(err))
    elseif on_ok then
      on_ok(result)
    end
  end
end

--- Optional: configure lofi (also read from vim.g.lofi). Idempotent; never starts the daemon.
---@param opts? table
function M.setup(opts)
  require("lofi.config").setup(opts)
end

--- Queue a generation. `opts` is a prompt string or {prompt, backend, duration_sec, seed, priority, ...}.
---@param opts? string|table
---@param cb? fun(err, result)
function M.generate(opts, cb)
  if type(opts) == "string" then
    opts = { prompt = opts }
  end
  opts = vim.deepcopy(opts or {})
  local c = cfg()
  if not opts.prompt or vim.trim(opts.prompt) == "" then
    opts.prompt = c.generate.prompt
  end
  opts.backend = opts.backend or c.backend
  opts.duration_sec = opts.duration_sec or c.generate.duration_sec
  if opts.allow_download == nil then
    opts.allow_download = c.generate.allow_download
  end
  if opts.format == nil then
    opts.format = c.cache.format
  end
  client.request("generate", opts, function(err, result)
    if not err and result then
      if result.status == "queued" or result.status == "running" then
        local g = state.current.generating[result.track_id]
          or { track_id = result.track_id, percent = 0, running = result.status == "running" }
        g.prompt, g.backend = opts.prompt, result.backend
        state.current.generating[result.track_id] = g
        if result.status == "queued" and (result.position or 0) > 0 then
          ui.notify(string.format("queued “%s” (position %d)", ui.short(opts.prompt), result.position))
        end
      end
    end
    if cb then
      cb(err, result)
    elseif err then
      ui.error(ui.format_error(err))
    end
  end)
end

--- Ask for a prompt (vim.ui.input, prefilled with the default prompt), then generate.
---@param cb? lofi.Callback
function M.generate_input(cb)
  vim.ui.input({ prompt = "lofi prompt: ", default = cfg().generate.prompt }, function(text)
    if text and vim.trim(text) ~= "" then
      M.generate(require("lofi.format").parse_generate_args(vim.split(vim.trim(text), "%s+")), cb)
    end
  end)
end

--- Playback calls all answer with the playback state, which updates the statusline at once.
local function playback_call(method, params, cb)
  client.request(method, params, function(err, result)
    if not err then
      state.set_playback(result)
      require("lofi.notify").redraw()
      events.fire("LofiPlaybackChanged", vim.tbl_extend("force", result or {}, { event = method }))
    end
    if cb then
      cb(err, result)
    elseif err then
      ui.error(ui.format_error(err))
    end
  end)
end

---@param track_id? string
---@param cb? lofi.Callback
function M.play(track_id, cb)
  playback_call("play", { track_id = track_id }, cb)
end

---@param cb? lofi.Callback
function M.pause(cb)
  playback_call("pause", nil, cb)
end

---@param cb? lofi.Callback
function M.resume(cb)
  playback_call("resume", nil, cb)
end

---@param cb? lofi.Callback
function M.stop(cb)
  playback_call("stop", nil, cb)
end

---@param cb? lofi.Callback
function M.skip(cb)
  playback_call("skip", nil, cb)
end

--- Toggle play/pause; with nothing playing, play the newest cached track, or generate one if the cache is empty.
---@param cb? lofi.Callback
function M.toggle(cb)
  local pb = state.current.playback.state
  if client.is_ready() and (pb == "playing" or pb == "paused") then
    return playback_call("toggle", nil, cb)
  end
  client.request("status", nil, function(err, st)
    if err then
      return (cb or default_cb())(err)
    end
    state.set_playback(st.playback)
    if st.playback and (st.playback.state == "playing" or st.playback.state == "paused") then
      return playback_call("toggle", nil, cb)
    end
    client.request("cache_list", { limit = 1, sort = "created" }, function(lerr, list)
      if lerr then
        return (cb or default_cb())(lerr)
      end
      local tracks = list and list.tracks or {}
      if #tracks == 0 then
        ui.notify("the cache is empty: generating a first track")
        return M.generate(nil, cb)
      end
      playback_call("play", { track_id = tracks[1].track_id }, cb)
    end)
  end)
end

--- Seek to an absolute position in seconds, "+N"/"-N" relative, or "M:SS".
---@param pos number|string
---@param cb? lofi.Callback
function M.seek(pos, cb)
  local target
  if type(pos) == "number" then
    target = pos
  elseif type(pos) == "string" then
    local sign, rest = pos:match("^([+-])(.+)$")
    local m, s = (rest or pos):match("^(%d+):(%d+)$")
    local sec = m and (tonumber(m) * 60 + tonumber(s)) or tonumber(rest or pos)
    if not sec then
      return ui.error("seek: expected seconds, +N, -N or M:SS, got " .. pos)
    end
    target = sign == "+" and state.position() + sec or sign == "-" and state.position() - sec or sec
  end
  if not target then
    return ui.error("seek: missing position")
  end
  playback_call("seek", { position_sec = math.max(0, target) }, cb)
end

--- Volume: nil shows it; 0-100 sets it; "+N"/"-N" changes it. (The daemon works in 0..1.)
---@param level? number|string
---@param cb? lofi.Callback
function M.volume(level, cb)
  if level == nil then
    return playback_call("volume", nil, cb or function(err, pb)
      if err then
        return ui.error(ui.format_error(err))
      end
      ui.notify(string.format("volume %d%%", math.floor((pb.volume or 0) * 100 + 0.5)))
    end)
  end
  local current = state.current.playback.volume or cfg().playback.volume
  local n
  if type(level) == "string" and level:match("^[+-]%d+$") then
    n = current * 100 + tonumber(level)
  else
    n = tonumber(level)
  end
  if not n then
    return ui.error("volume: expected 0-100, +N or -N, got " .. tostring(level))
  end
  n = math.max(0, math.min(100, n))
  playback_call("volume", { level = n / 100 }, cb)
end

function M.volume_up()
  M.volume("+10")
end

function M.volume_down()
  M.volume("-10")
end

--- Cancel a generation: the given id, else the running one, else the newest queued.
---@param track_id? string
---@param cb? lofi.Callback
function M.cancel(track_id, cb)
  local function do_cancel(id)
    client.request("cancel", { track_id = id }, cb or default_cb(function()
      ui.notify("cancelled " .. id)
    end))
  end
  if track_id then
    return do_cancel(track_id)
  end
  client.request("queue_status", nil, function(err, q)
    if err then
      return (cb or default_cb())(err)
    end
    local id = q.running and q.running.track_id or (q.waiting and q.waiting[#q.waiting] or {}).track_id
    if not id then
      return ui.notify("nothing to cancel")
    end
    do_cancel(id)
  end)
end

---@param cb? lofi.Callback
function M.queue(cb)
  client.request("queue_status", nil, cb or default_cb(function(q)
    ui.show_lines("queue", fmt.queue(q))
  end))
end

---@param cb? lofi.Callback
function M.status(cb)
  client.request("status", nil, cb or default_cb(function(st)
    state.set_playback(st.playback)
    state.current.daemon.log_file = st.log_file or state.current.daemon.log_file
    ui.show_lines("status", fmt.status(st))
  end))
end

---@param cb? lofi.Callback
function M.models(cb)
  client.request("get_backends", nil, cb or default_cb(function(res)
    ui.show_lines("models", fmt.backends(res))
  end))
end

---@param backend string
---@param cb? lofi.Callback
function M.download(backend, cb)
  if not backend or backend == "" then
    return ui.error("download: which backend? (musicgen, ace_step)")
  end
  client.request("download_backend", { backend = backend }, cb or default_cb(function(res)
    local text = ({
      started = "downloading %s…",
      already_installed = "%s is already installed",
      already_downloading = "%s is already downloading",
    })[res.status] or ("%s: " .. tostring(res.status))
    ui.notify(string.format(text, backend))
  end))
end

---@param track_id string
---@param cb? lofi.Callback
function M.playlist_add(track_id, cb)
  client.request("playlist_add", { track_id = track_id }, cb or default_cb(function()
    ui.notify("added " .. track_id .. " to the playlist")
  end))
end

---@param cb? lofi.Callback
function M.cache_clear(cb)
  client.request("cache_clear", { keep_favourites = true }, cb or default_cb(function(res)
    ui.notify(string.format("removed %d tracks from the cache (favourites kept)", res.removed or 0))
  end))
end

---@param cb? lofi.Callback
function M.cache_stats(cb)
  client.request("cache_stats", nil, cb or default_cb(function(s)
    ui.notify(
      string.format(
        "cache: %d tracks, %.1f of %s MB in %s",
        s.count or 0,
        s.size_mb or 0,
        tostring(s.max_mb or "?"),
        tostring(s.dir or "?")
      )
    )
  end))
end

--- Open the daemon log (path from the running daemon, else from `lofi-daemon health --json`).
function M.log()
  local function open(path)
    if not path or path == "" then
      return ui.error("the daemon log path is unknown (is the daemon installed? see :checkhealth lofi)")
    end
    if vim.fn.filereadable(path) == 0 then
      return ui.warn("no log yet at " .. path)
    end
    vim.cmd("split " .. vim.fn.fnameescape(path))
    vim.bo.readonly = true
    vim.cmd("normal! G")
  end
  if state.current.daemon.log_file then
    return open(state.current.daemon.log_file)
  end
  local report = require("lofi.health").daemon_report()
  open(report and report.log_file)
end

function M.tracks(opts)
  require("lofi.picker").tracks(opts)
end

function M.prompts(opts)
  require("lofi.picker").prompts(opts)
end

function M.daemon_start()
  local ok, err = client.start()
  if not ok then
    ui.error(err)
  end
end

function M.daemon_stop()
  client.stop({ wait_ms = 2000 })
end

function M.daemon_restart()
  local ok, err = client.restart()
  if not ok then
    ui.error(err)
  end
end

function M.health()
  vim.cmd("checkhealth lofi")
end

--- Statusline text from cached state (no RPC): "▶ 0:15/0:30", "⏸ 0:15/0:30", "◌ 45%", both, or "".
---@return string
function M.statusline()
  return state.statusline(cfg().ui.icons)
end

function M.is_playing()
  return state.is_playing()
end

function M.is_generating()
  return state.is_generating()
end

--- Snapshot of the cached state (playback, generating, daemon).
function M.get_state()
  return vim.deepcopy(state.current)
end

return M

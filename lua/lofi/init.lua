-- lofi: public Lua API. Every function mirrors a :Lofi subcommand; all daemon calls are asynchronous and take an
-- optional callback `cb(err, result)`. Without a callback, errors are shown with vim.notify.
local M = {}

---@alias lofi.Callback fun(err: {code: integer, message: string, data?: table}|nil, result: table|nil)

---@class lofi.GenerateOpts
---@field prompt? string
---@field preset? string a style preset (presets/styles.json); the prompt, if any, goes after its tags
---@field backend? string "musicgen" | "ace_step" (default: config `backend`)
---@field duration_sec? number nil = the backend's default
---@field seed? integer
---@field priority? "normal"|"high"
---@field allow_download? boolean
---@field [string] any backend parameters (guidance_scale, top_k, inference_steps, lora, ...)

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
local args = lazy("lofi.args")
local messages = lazy("lofi.messages")

local function cfg()
  return require("lofi.config").get()
end

--- Show an error answer to `method` at its level (benign states such as "nothing is playing" are INFO).
local function report(err, method, params)
  if type(err) == "table" and err.code == client.E_DAEMON_EXITED then
    return -- the daemon's exit is reported once, by lofi.client (with what was lost)
  end
  ui.notify(messages.error_text(err), messages.error_level(err, method, params))
end

local function default_cb(on_ok, method)
  return function(err, result)
    if err then
      report(err, method)
    elseif on_ok then
      on_ok(result)
    end
  end
end

--- A usage error found before anything was sent: to the callback when there is one, else shown.
local function usage_error(text, cb)
  if cb then
    return vim.schedule(function()
      cb({ code = -32602, message = text, data = { error_code = "INVALID_PARAMS" } }, nil)
    end)
  end
  ui.error(text)
end

--- Optional: configure lofi (also read from vim.g.lofi). Idempotent; never starts the daemon.
---@param opts? lofi.Config a partial config: only the keys to change
function M.setup(opts)
  require("lofi.config").setup(opts)
end

--- Queue a generation. `opts` is a prompt string or {prompt, backend, duration_sec, seed, priority, ...}.
---@param opts? string|lofi.GenerateOpts
---@param cb? lofi.Callback
function M.generate(opts, cb)
  local perr
  if type(opts) == "string" then
    opts, perr = args.parse_generate(opts)
  elseif type(opts) == "table" then
    opts, perr = args.check_generate(opts)
  elseif opts ~= nil then
    perr = "generate: expected a prompt string or an options table, got " .. type(opts)
  end
  if perr then
    return usage_error(perr, cb)
  end
  opts = opts or {}
  local c = cfg()
  if (not opts.prompt or vim.trim(opts.prompt) == "") and not opts.preset then
    opts.prompt = c.generate.prompt -- a preset alone is a whole prompt
  end
  opts.backend = opts.backend or c.backend
  opts.duration_sec = opts.duration_sec or c.generate.duration_sec
  if opts.allow_download == nil then
    opts.allow_download = c.generate.allow_download
  end
  if opts.format == nil then
    opts.format = c.cache.format
  end
  state.current.connecting = state.current.connecting + 1 -- shown ("◌ …") until answered
  client.request("generate", opts, function(err, result)
    state.current.connecting = math.max(0, state.current.connecting - 1)
    if err and err.code == client.E_DAEMON_EXITED then
      require("lofi.jobs").unanswered(opts)
    end
    if not err and result then
      if result.status == "queued" or result.status == "running" then
        local g = state.current.generating[result.track_id]
          or { track_id = result.track_id, percent = 0, running = result.status == "running" }
        g.prompt, g.backend = opts.prompt, result.backend
        state.current.generating[result.track_id] = g
        -- With its seed, a resubmission after a crash makes the very same track.
        require("lofi.jobs").submitted(result.track_id, vim.tbl_extend("force", opts, { seed = result.seed }))
        if result.status == "queued" and (result.position or 0) > 0 then
          ui.notify(string.format("queued “%s” (position %d)", ui.short(opts.prompt), result.position))
        end
      end
    end
    if cb then
      cb(err, result)
    elseif err and type(err.data) == "table" and err.data.error_code == "CANCELLED" then
      ui.notify("generation cancelled before it was queued") -- the user asked for it: no error
    elseif err then
      report(err, "generate")
    end
  end)
end

--- Start the endless radio (:h lofi-radio). `opts` is a prompt string (with options: "rainy jazz plan=focus") or
--- {prompt?, plan?, adaptive?, save?, seed?, ...MusicGen params}; unset fields come from config `radio`.
---@param opts? string|table
---@param cb? lofi.Callback
function M.radio(opts, cb)
  local params, perr = {}, nil
  if type(opts) == "string" then
    local parsed
    parsed, perr = args.parse_radio(opts)
    if parsed and parsed.action ~= "start" then
      perr = "radio: expected a prompt and options, got `"
        .. parsed.action
        .. "` (use lofi.radio_"
        .. parsed.action
        .. ")"
    end
    params = parsed and parsed.params or {}
  elseif type(opts) == "table" then
    params = vim.deepcopy(opts)
  elseif opts ~= nil then
    perr = "radio: expected a prompt string or an options table, got " .. type(opts)
  end
  if perr then
    return usage_error(perr, cb)
  end
  local c = cfg()
  if not params.prompt or vim.trim(params.prompt) == "" then
    params.prompt = c.radio.prompt or c.generate.prompt
  end
  for _, key in ipairs({ "plan", "adaptive", "save" }) do
    if params[key] == nil then
      params[key] = c.radio[key]
    end
  end
  client.request("radio_start", params, cb or default_cb(nil, "radio_start"))
end

--- Stop the radio.
---@param cb? lofi.Callback
function M.radio_stop(cb)
  client.request("radio_stop", nil, cb or default_cb(function(res)
    if not res.stopped then
      ui.notify("the radio is off")
    end
  end, "radio_stop"))
end

--- Change what the radio plays from its next window: {prompt?, plan?, energy?} (a string is a new prompt).
---@param params string|table
---@param cb? lofi.Callback
function M.radio_steer(params, cb)
  if type(params) == "string" then
    params = { prompt = params }
  end
  client.request("radio_steer", params, cb or default_cb(function()
    ui.notify("the radio changes at its next window")
  end, "radio_steer"))
end

--- Show the radio's state.
---@param cb? lofi.Callback
function M.radio_status(cb)
  client.request("radio_status", nil, cb or default_cb(function(st)
    if not st.on then
      return ui.notify("the radio is off (plans: " .. table.concat(st.plans or {}, ", ") .. ")")
    end
    ui.notify(
      string.format(
        "radio: “%s”%s, %s, %d windows, %.0fs buffered",
        ui.short(st.prompt),
        st.plan and (", plan " .. st.plan) or "",
        st.state or "?",
        st.windows or 0,
        tonumber(st.buffered_sec) or 0
      )
    )
  end, "radio_status"))
end

--- Ask for a prompt (vim.ui.input, prefilled with the default prompt), then generate.
---@param cb? lofi.Callback
function M.generate_input(cb)
  vim.ui.input({ prompt = "lofi prompt: ", default = cfg().generate.prompt }, function(text)
    if text and vim.trim(text) ~= "" then
      M.generate(text, cb)
    end
  end)
end

--- Playback calls all answer with the playback state, which updates the statusline at once.
-- Changes the daemon announces with its own playback_* notification (each becomes the one LofiPlaybackChanged
-- event of the action); only the others fire an event from the reply.
local ANNOUNCED = { play = true, pause = true, resume = true, toggle = true, skip = true, stop = true }

local function playback_call(method, params, cb)
  client.request(method, params, function(err, result)
    if not err then
      state.set_playback(result)
      require("lofi.notify").redraw()
      if not ANNOUNCED[method] then
        events.fire("LofiPlaybackChanged", vim.tbl_extend("force", result or {}, { event = method }))
      end
    end
    if cb then
      cb(err, result)
    elseif err then
      report(err, method, params)
    end
  end)
end

--- Requests that only act on something already running (stop, pause, skip...): without a daemon there is nothing
--- to act on, so answer from the idle state instead of starting a daemon to do nothing.
local function idle_answer(text, cb)
  if client.is_running() then
    return false
  end
  local idle = { state = "stopped", position_sec = 0, duration_sec = 0 }
  if cb then
    vim.schedule(function()
      cb(nil, idle)
    end)
  else
    ui.info(text)
  end
  return true
end

---@param track_id? string
---@param cb? lofi.Callback
function M.play(track_id, cb)
  playback_call("play", { track_id = track_id }, cb)
end

---@param cb? lofi.Callback
function M.pause(cb)
  if idle_answer("nothing is playing", cb) then
    return
  end
  playback_call("pause", nil, cb)
end

---@param cb? lofi.Callback
function M.resume(cb)
  playback_call("resume", nil, cb)
end

---@param cb? lofi.Callback
function M.stop(cb)
  if idle_answer("nothing is playing", cb) then
    return
  end
  playback_call("stop", nil, cb)
end

---@param cb? lofi.Callback
function M.skip(cb)
  if idle_answer("nothing is playing", cb) then
    return
  end
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
  local target, err = args.seek(pos, state.position())
  if not target then
    return usage_error(err, cb)
  end
  if idle_answer("nothing is playing", cb) then
    return
  end
  playback_call("seek", { position_sec = target }, cb)
end

--- Volume: nil shows it; 0-100 sets it; "+N"/"-N" changes it. (The daemon works in 0..1.)
---@param level? number|string
---@param cb? lofi.Callback
function M.volume(level, cb)
  if level == nil then
    return playback_call("volume", nil, cb or function(err, pb)
      if err then
        return report(err, "volume")
      end
      ui.notify(string.format("volume %d%%", math.floor((pb.volume or 0) * 100 + 0.5)))
    end)
  end
  local current = state.current.playback.volume or cfg().playback.volume
  local n, err = args.volume(level, current * 100)
  if not n then
    return usage_error(err, cb)
  end
  playback_call("volume", { level = n / 100 }, cb or function(verr, pb)
    if verr then
      return report(verr, "volume")
    end
    ui.notify(string.format("volume %d%%", math.floor((pb.volume or 0) * 100 + 0.5)))
  end)
end

--- Volume +10 (of 100).
function M.volume_up()
  M.volume("+10")
end

--- Volume -10 (of 100).
function M.volume_down()
  M.volume("-10")
end

--- Cancel a generation: the given id, else the running one, else the newest queued, else those waiting for the
--- remote generator to connect (they have no track id yet: queue_clear drops them).
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
  if idle_answer("nothing to cancel", cb) then
    return
  end
  client.request("queue_status", nil, function(err, q)
    if err then
      return (cb or default_cb())(err)
    end
    local id = q.running and q.running.track_id or (q.waiting and q.waiting[#q.waiting] or {}).track_id
    if not id and type(q.connecting) == "table" and #q.connecting > 0 then
      return client.request("queue_clear", {}, cb or default_cb(function(res)
        ui.notify(
          string.format("cancelled %d generation(s) waiting for the remote generator", res.connecting or 0)
        )
      end, "queue_clear"))
    end
    if not id then
      return ui.notify("nothing to cancel")
    end
    do_cancel(id)
  end)
end

---@param cb? lofi.Callback
function M.queue(cb)
  if not client.is_running() then
    local empty = { running = nil, waiting = {} }
    if cb then
      return vim.schedule(function()
        cb(nil, empty)
      end)
    end
    return ui.info("the queue is empty (the daemon is not running)")
  end
  client.request("queue_status", nil, cb or default_cb(function(q)
    ui.show_lines("queue", fmt.queue(q))
  end))
end

---@param cb? lofi.Callback
function M.status(cb)
  if not client.is_running() then
    -- Nothing to ask: don't start a daemon just to report that nothing happens.
    local idle = { running = false, playback = { state = "stopped" }, queue = { waiting = {} } }
    if cb then
      return vim.schedule(function()
        cb(nil, idle)
      end)
    end
    return ui.info("the daemon is not running (it starts on the first :Lofi command that needs it)")
  end
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

local function fmt_size(bytes)
  bytes = tonumber(bytes)
  if not bytes then
    return nil
  end
  return bytes >= 1e9 and string.format("%.1f GB", bytes / 1e9)
    or string.format("%d MB", math.ceil(bytes / 1e6))
end

local function confirm(...)
  return messages.confirm(...)
end

--- Download a backend's model. Asks first, with the size from the daemon's model registry, unless opts.force
--- (:Lofi! download); the call itself is the user's consent (see docs/protocol.md).
---@param backend string
---@param cb? lofi.Callback
---@param opts? {force?: boolean}
function M.download(backend, cb, opts)
  if not backend or backend == "" then
    return usage_error("download: which backend? (musicgen, ace_step)", cb)
  end
  local function start()
    client.request("download_backend", { backend = backend }, cb or default_cb(function(res)
      local text = ({
        started = "downloading %s…",
        already_installed = "%s is already installed",
        already_downloading = "%s is already downloading",
      })[res.status] or ("%s: " .. tostring(res.status))
      ui.notify(string.format(text, backend))
    end, "download_backend"))
  end
  if opts and opts.force then
    return start()
  end
  client.request("get_backends", nil, function(err, res)
    if err then
      return (cb or default_cb(nil, "get_backends"))(err)
    end
    local info
    for _, b in ipairs(res and res.backends or {}) do
      if b.name == backend then
        info = b
      end
    end
    if not info or info.installed or info.downloading then
      return start() -- the daemon answers (unknown backend, already installed/downloading)
    end
    local size = fmt_size(info.download_size_bytes)
    confirm(
      string.format(
        "Download the %s model%s? (:Lofi! download %s skips this question)",
        info.display_name or backend,
        size and (" (" .. size .. ")") or " (size unknown)",
        backend
      ),
      "Download" .. (size and (" " .. size) or ""),
      start
    )
  end)
end

---@param track_id string
---@param cb? lofi.Callback
function M.playlist_add(track_id, cb)
  client.request("playlist_add", { track_id = track_id }, cb or default_cb(function()
    ui.notify("added " .. track_id .. " to the playlist")
  end))
end

--- Clear the cache (favourites are kept). Asks first unless opts.force (:Lofi! cache clear).
---@param cb? lofi.Callback
---@param opts? {force?: boolean}
function M.cache_clear(cb, opts)
  local function clear()
    client.request("cache_clear", { keep_favourites = true }, cb or default_cb(function(res)
      ui.notify(string.format("removed %d tracks from the cache (favourites kept)", res.removed or 0))
    end, "cache_clear"))
  end
  if opts and opts.force then
    return clear()
  end
  confirm(
    "Delete every cached track except favourites? (:Lofi! cache clear skips this question)",
    "Delete",
    clear
  )
end

--- Toggle a track's favourite mark (favourites are never evicted); the current track by default.
---@param track_id? string
---@param cb? lofi.Callback
---@param opts? {favourite?: boolean} set instead of toggling
function M.favourite(track_id, cb, opts)
  local function set(id, value)
    client.request("cache_favourite", { track_id = id, favourite = value }, function(err, t)
      if not err then
        state.remember_track(t)
      end
      if cb then
        return cb(err, t)
      elseif err then
        return report(err, "cache_favourite")
      end
      ui.info(
        string.format(
          "%s “%s”",
          value and "★ favourite:" or "no longer a favourite:",
          ui.short(t and t.prompt)
        )
      )
    end)
  end
  local id = track_id or state.current.playback.track_id
  if not id then
    return usage_error("favourite: nothing is playing; give a track id (:Lofi favourite <Tab>)", cb)
  end
  if opts and opts.favourite ~= nil then
    return set(id, opts.favourite)
  end
  -- Toggle from the daemon's record (this editor's copy may be stale: another Neovim may have changed it).
  client.request("cache_list", { favourite = true, limit = 10000 }, function(err, res)
    if err then
      return (cb or default_cb(nil, "cache_list"))(err)
    end
    local is_fav = false
    for _, t in ipairs(res and res.tracks or {}) do
      is_fav = is_fav or t.track_id == id
    end
    set(id, not is_fav)
  end)
end

--- Edit a cached track with ACE-Step (upstream's editing tasks; the track may come from any backend except for
--- "retake"): "retake" (:Lofi vary, a variation), "repaint" (regenerate repaint_start–repaint_end seconds) or
--- "extend" (add extend_left / extend_right seconds). The current track unless `track_id` is given; the source's
--- prompt unless opts.prompt is given. The result is a new track, queued like any generation.
---@param task "retake"|"repaint"|"extend"|"audio2audio"|"edit"
---@param track_id? string
---@param opts? lofi.GenerateOpts task params: retake_variance, repaint_start, repaint_end, extend_left, ...
---@param cb? lofi.Callback
function M.edit(task, track_id, opts, cb)
  local checked, perr = args.check_generate(vim.tbl_extend("force", opts or {}, { task = task }))
  if perr then
    return usage_error(perr, cb)
  end
  local id = track_id or state.current.playback.track_id
  if not id then
    return usage_error(string.format("%s: nothing is playing; give a track id (<Tab> lists them)", task), cb)
  end
  local function submit(t)
    local extra = (checked.extend_left or 0) + (checked.extend_right or 0)
    local params = vim.tbl_extend("force", {
      prompt = t.prompt,
      backend = "ace_step",
      -- the daemon takes the length from the source; this keeps the request's own duration truthful
      duration_sec = math.max(5, math.min(240, (t.duration_sec or 30) + extra)),
    }, checked, { source_track = id })
    M.generate(params, cb)
  end
  local known = state.current.tracks[id]
  if known and known.prompt and known.duration_sec then
    return submit(known)
  end
  client.request("cache_list", { limit = 10000 }, function(err, res)
    if err then
      return (cb or default_cb(nil, "cache_list"))(err)
    end
    for _, t in ipairs(res and res.tracks or {}) do
      if t.track_id == id then
        state.remember_track(t)
        return submit(t)
      end
    end
    usage_error(string.format("%s: no cached track %s", task, id), cb)
  end)
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
  local health = require("lofi.health").daemon_report()
  open(health and health.log_file)
end

--- Pick a cached track (Telescope when installed, else vim.ui.select).
---@param opts? table picker options (Telescope's, when it is used)
function M.tracks(opts)
  require("lofi.picker").tracks(opts)
end

--- Pick a prompt from the history and presets, then generate it.
---@param opts? table picker options (Telescope's, when it is used)
function M.prompts(opts)
  require("lofi.picker").prompts(opts)
end

--- Start the daemon now (it otherwise starts on the first call that needs it).
function M.daemon_start()
  local ok, err = client.start()
  if not ok then
    ui.error(err)
  end
end

--- Stop the daemon (waits up to 2 s for it to exit).
function M.daemon_stop()
  client.stop({ wait_ms = 2000 })
end

--- Stop and start the daemon.
function M.daemon_restart()
  local ok, err = client.restart()
  if not ok then
    ui.error(err)
  end
end

--- Same as :checkhealth lofi.
function M.health()
  vim.cmd("checkhealth lofi")
end

--- Statusline text from cached state (no RPC): "▶ 0:15/0:30", "⏸ 0:15/0:30", "◌ 45%", both, or "".
---@return string
function M.statusline()
  return state.statusline(cfg().ui.icons)
end

---@return boolean
function M.is_playing()
  return state.is_playing()
end

---@return boolean
function M.is_generating()
  return state.is_generating()
end

--- Snapshot of the cached state (playback, generating, daemon).
---@return table
function M.get_state()
  return vim.deepcopy(state.current)
end

return M

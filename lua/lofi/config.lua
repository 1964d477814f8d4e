-- Configuration: a documented defaults table, deep-merged with `vim.g.lofi` and `setup(opts)`, then validated.
-- The same validator feeds `:checkhealth lofi`.
local M = {}

--- The whole configuration; every field is optional in setup() and vim.g.lofi.
---@class lofi.Config
---@field daemon? lofi.DaemonConfig
---@field backend? string "musicgen" | "ace_step" | a daemon plugin backend's name
---@field provider? "auto"|"cpu"|"cuda"|"coreml"
---@field threads? integer 0 = onnxruntime's default
---@field models? table<string, {dir?: string, variant?: string}>
---@field generate? {prompt?: string, duration_sec?: number, allow_download?: boolean}
---@field cache? {dir?: string, max_mb?: number, max_tracks?: integer, format?: "flac"|"wav"|"ogg"|"mp3"}
---@field playback? lofi.PlaybackConfig
---@field prefetch? lofi.PrefetchConfig
---@field radio? lofi.RadioConfig
---@field ui? lofi.UiConfig

---@class lofi.DaemonConfig
---@field cmd? string|string[]
---@field env? table<string, string>
---@field auto_restart? boolean
---@field max_restarts? integer
---@field request_timeout_ms? integer

---@class lofi.PlaybackConfig
---@field volume? number 0..1
---@field loop? "off"|"track"|"playlist"
---@field crossfade_sec? number
---@field auto_play? boolean
---@field stream? boolean
---@field device? string|integer

---@class lofi.PrefetchConfig
---@field enabled? boolean
---@field strategy? "same_prompt"|"preset_cycle"|"random_preset"
---@field trigger_percent? number
---@field presets? string[]

---@class lofi.RadioConfig
---@field prompt? string nil = generate.prompt
---@field plan? string|table a shipped plan's name or a plan table ({sections = {...}}); nil = the prompt alone
---@field adaptive? boolean follow the editor's activity (typing, mode changes, diagnostics)
---@field save? boolean keep every radio window as a track of the cache
---@field energy_interval_ms? integer how often the editor's energy is measured and (if it changed) sent

---@class lofi.UiConfig
---@field notify? boolean
---@field progress? "notify"|"cmdline"|"none"
---@field progress_interval_ms? integer
---@field icons? table<string, string>

---@type lofi.Config
M.defaults = {
  daemon = {
    -- Command that starts the daemon (list or string). nil = `<plugin>/.venv/bin/lofi-daemon`, then `lofi-daemon`
    -- on PATH. It may run elsewhere: { "ssh", "gpu-box", "lofi-daemon" }.
    cmd = nil,
    env = {}, -- extra environment for the daemon process
    auto_restart = true, -- restart after a crash (backoff 0.5 s, 1 s, 2 s)
    max_restarts = 3, -- crashes tolerated before giving up (the count resets after a minute of uptime)
    request_timeout_ms = 10000, -- only for synchronous calls (completion, health); normal calls are async
    -- Generations lost when the daemon crashed: "ask" (say which, offer :Lofi resubmit), "always" (queue them
    -- again after the restart), "never" (only say which).
    resubmit_lost_jobs = "ask",
  },
  -- A remote generator (|lofi-remote|): the models run where `cmd` reaches a `lofi-daemon serve --generator`
  -- (e.g. { "ssh", "gpu-box", "lofi-daemon", "serve", "--generator" }); cache, player and prefetch stay here.
  generator = {
    cmd = nil, -- list of words (or one shell string); nil = everything runs locally
    backends = nil, -- e.g. { "ace_step" }; nil = every backend
    retry = true, -- a link lost before any audio arrived connects again and retries the job once
    connect_timeout_sec = 30,
  },
  backend = "musicgen", -- default backend: "musicgen" | "ace_step" (or a daemon plugin backend's name)
  provider = "auto", -- onnxruntime execution provider: "auto" | "cpu" | "cuda" | "coreml"
  threads = 0, -- inference threads, 0 = onnxruntime's default
  models = {
    musicgen = { dir = nil, variant = nil }, -- dir: local model directory (offline); variant: e.g. "small_i8"
    ace_step = { dir = nil, variant = nil },
  },
  generate = {
    prompt = "lofi hip hop, chill, mellow piano, vinyl crackle", -- used by `:Lofi` / `:Lofi generate` without words
    duration_sec = nil, -- nil = the backend's default (MusicGen 30 s, ACE-Step 60 s)
    allow_download = false, -- let `generate` download a missing model without asking
  },
  cache = {
    dir = nil, -- nil = the daemon's default (platform user cache dir, lofi/)
    max_mb = 500,
    max_tracks = nil,
    format = "flac", -- "flac" | "wav" | "ogg" | "mp3"
  },
  playback = {
    volume = 0.3, -- 0..1
    loop = nil, -- "off" | "track" | "playlist"; nil = the daemon's default
    crossfade_sec = 2.0,
    auto_play = true, -- play a generation as soon as it completes
    stream = true, -- start playing while a track is still generated, when the backend can (MusicGen)
    device = nil, -- output device name or index, nil = system default
  },
  prefetch = {
    enabled = true,
    strategy = "same_prompt", -- "same_prompt" | "preset_cycle" | "random_preset"
    trigger_percent = 50,
    presets = {
      "lofi hip hop, rainy day, mellow piano",
      "chill beats, coffee shop, jazz chords",
      "lofi, late night coding, ambient synth",
      "lofi hip hop, vinyl crackle, nostalgic",
    },
  },
  radio = {
    prompt = nil, -- nil = generate.prompt
    plan = nil, -- "focus" | "pomodoro" | "late_night" | a plan table (:h lofi-radio-plans); nil = no plan
    adaptive = false, -- the music follows the editor's activity (opt-in; costs nothing when off)
    save = false, -- keep every window as a track (off: played radio audio is dropped)
    energy_interval_ms = 4000, -- adaptive: how often energy is measured and sent (only when it changed)
  },
  ui = {
    notify = true, -- notifications for completed tracks and playback changes (errors are always shown)
    progress = "notify", -- "notify" | "cmdline" | "none"
    progress_interval_ms = 500, -- at most one progress update per interval
    icons = { playing = "▶", paused = "⏸", generating = "◌", downloading = "↓", radio = "📻" },
  },
}

-- Options whose default is nil (so the defaults table has no key for them).
M.defaults_nil = {
  ["daemon.cmd"] = true,
  ["generator.cmd"] = true,
  ["generator.backends"] = true,
  ["generate.duration_sec"] = true,
  ["cache.dir"] = true,
  ["cache.max_tracks"] = true,
  ["playback.loop"] = true,
  ["playback.device"] = true,
  ["radio.prompt"] = true,
  ["radio.plan"] = true,
}

local ENUMS = {
  provider = { "auto", "cpu", "cuda", "coreml" },
  ["cache.format"] = { "flac", "wav", "ogg", "mp3" },
  ["prefetch.strategy"] = { "same_prompt", "preset_cycle", "random_preset" },
  ["ui.progress"] = { "notify", "cmdline", "none" },
  ["playback.loop"] = { "off", "track", "playlist" },
  ["daemon.resubmit_lost_jobs"] = { "ask", "always", "never" },
}

local function one_of(path)
  local allowed = ENUMS[path]
  return function(v)
    return vim.tbl_contains(allowed, v)
  end, "one of " .. table.concat(allowed, ", ")
end

local function num_range(lo, hi, optional)
  return function(v)
    return (v == nil and optional) or (type(v) == "number" and v >= lo and v <= hi)
  end,
    string.format("%sa number from %s to %s", optional and "nil or " or "", lo, hi)
end

-- The daemon's options schema wants integers here: 2.5 would make it refuse `initialize`.
local function int_range(lo, hi, optional)
  return function(v)
    return (v == nil and optional) or (type(v) == "number" and v >= lo and v <= hi and v == math.floor(v))
  end,
    string.format("%san integer from %s to %s", optional and "nil or " or "", lo, hi)
end

local function all_strings(v)
  for _, a in ipairs(v) do
    if type(a) ~= "string" then
      return false
    end
  end
  return true
end

local function is_cmd(v)
  return v == nil or (type(v) == "string" and v ~= "") or (type(v) == "table" and #v > 0 and all_strings(v))
end

local function string_list(v)
  return type(v) == "table" and all_strings(v)
end

-- { path, validator, expectation }: validator is a type name (optional when it ends in "?") or a predicate.
local RULES = {
  { "daemon", "table" },
  { "daemon.cmd", is_cmd, "a string or a non-empty list of strings" },
  { "daemon.env", "table" },
  { "daemon.auto_restart", "boolean" },
  { "daemon.max_restarts", num_range(0, 100) },
  { "daemon.request_timeout_ms", num_range(1, 600000) },
  { "daemon.resubmit_lost_jobs", one_of("daemon.resubmit_lost_jobs") },
  { "generator", "table" },
  { "generator.cmd", is_cmd, "nil, a string or a non-empty list of strings" },
  {
    "generator.backends",
    function(v)
      return v == nil or (string_list(v) and #v > 0)
    end,
    "nil or a non-empty list of backend names",
  },
  { "generator.retry", "boolean" },
  { "generator.connect_timeout_sec", num_range(1, 600) },
  {
    "backend",
    function(v)
      return type(v) == "string" and v:match("^[%w_%-]+$") ~= nil
    end,
    "a backend name such as musicgen or ace_step",
  },
  { "provider", one_of("provider") },
  { "threads", int_range(0, 256) },
  { "models", "table" },
  { "models.musicgen", "table" },
  { "models.musicgen.dir", "string?" },
  { "models.musicgen.variant", "string?" },
  { "models.ace_step", "table" },
  { "models.ace_step.dir", "string?" },
  { "models.ace_step.variant", "string?" },
  { "generate", "table" },
  { "generate.prompt", "string" },
  { "generate.duration_sec", num_range(1, 240, true) },
  { "generate.allow_download", "boolean" },
  { "cache", "table" },
  { "cache.dir", "string?" },
  { "cache.max_mb", num_range(1, 1e7) },
  { "cache.max_tracks", int_range(1, 1e7, true) },
  { "cache.format", one_of("cache.format") },
  { "playback", "table" },
  { "playback.volume", num_range(0, 1) },
  {
    "playback.loop",
    function(v)
      return v == nil or vim.tbl_contains(ENUMS["playback.loop"], v)
    end,
    "nil or one of off, track, playlist",
  },
  { "playback.crossfade_sec", num_range(0, 30) },
  { "playback.auto_play", "boolean" },
  { "playback.stream", "boolean" },
  { "prefetch", "table" },
  { "prefetch.enabled", "boolean" },
  { "prefetch.strategy", one_of("prefetch.strategy") },
  { "prefetch.trigger_percent", num_range(1, 99) },
  { "prefetch.presets", string_list, "a list of strings" },
  { "radio", "table" },
  { "radio.prompt", "string?" },
  {
    "radio.plan",
    function(v)
      return v == nil or type(v) == "string" or (type(v) == "table" and type(v.sections) == "table")
    end,
    "nil, a plan name or a plan table with `sections`",
  },
  { "radio.adaptive", "boolean" },
  { "radio.save", "boolean" },
  { "radio.energy_interval_ms", int_range(1000, 600000) },
  { "ui", "table" },
  { "ui.notify", "boolean" },
  { "ui.progress", one_of("ui.progress") },
  { "ui.progress_interval_ms", num_range(0, 60000) },
  { "ui.icons", "table" },
}

local function get_path(tbl, path)
  local v = tbl
  for key in path:gmatch("[^.]+") do
    if type(v) ~= "table" then
      return nil
    end
    v = v[key]
  end
  return v
end

-- vim.validate(name, value, validator, optional_or_msg) since 0.11; 0.10 only has the table form, which 0.11+
-- deprecates (:checkhealth vim.deprecated).
local validate = vim.fn.has("nvim-0.11") == 1 and vim.validate
  or function(name, value, validator, optional_or_msg)
    vim.validate({ [name] = { value, validator, optional_or_msg } })
  end

-- Check one rule with vim.validate (its message names the key: "`playback.volume`: expected ..., got ...").
local function check_rule(cfg, rule)
  local path, check, expect = rule[1], rule[2], rule[3]
  local value = get_path(cfg, path)
  local validator, extra = check, expect
  if type(check) == "string" then
    local optional = check:sub(-1) == "?"
    validator, extra = optional and check:sub(1, -2) or check, optional
  end
  local ok, err = pcall(validate, path, value, validator, extra)
  if ok then
    return true
  end
  return false, "lofi: invalid config: " .. tostring(err):gsub("^.-:%d+: ", "")
end

-- Keys the defaults don't have, at every level (typos such as `playback.volme`). `daemon.env` holds the user's
-- own names; `models` is keyed by backend (a daemon plugin may add one), each with musicgen's keys.
local function unknown_keys(user, defaults, prefix, out)
  if
    prefix == "daemon.env"
    or type(defaults) ~= "table"
    or (next(defaults) ~= nil and vim.islist(defaults))
  then
    return
  end
  for key, value in pairs(user) do
    local path = prefix == "" and tostring(key) or (prefix .. "." .. tostring(key))
    local default = defaults[key]
    if prefix:match("^models%.[^.]+$") then
      default = ({ dir = "", variant = "" })[key] -- both default to nil
    elseif prefix == "models" then
      default = {}
    end
    if default == nil and not M.defaults_nil[path] then
      out[#out + 1] = string.format("lofi: invalid config: unknown option `%s`", path)
    elseif type(value) == "table" then
      unknown_keys(value, default, path, out)
    end
  end
end

--- Validate a full config table. Returns ok and a list of messages that name the bad key.
---@param cfg table
---@return boolean ok, string[] errors
function M.validate(cfg)
  local errors, bad = {}, {}
  for _, rule in ipairs(RULES) do
    -- A wrong table (`playback = "loud"`) is one error, not one more per key below it.
    local parent = rule[1]:match("^(.+)%.[^.]+$")
    if parent and bad[parent] then
      bad[rule[1]] = true
    else
      local ok, err = check_rule(cfg, rule)
      if not ok then
        bad[rule[1]] = true
        errors[#errors + 1] = err
      end
    end
  end
  unknown_keys(cfg, M.defaults, "", errors)
  return #errors == 0, errors
end

local user_opts = nil -- set by setup()
local current = nil -- merged and validated config, computed lazily

--- Merge defaults, vim.g.lofi and setup() options. Invalid options are reported once and replaced by defaults.
---@return lofi.Config
function M.get()
  if current then
    return current
  end
  local merged = vim.tbl_deep_extend("force", vim.deepcopy(M.defaults), vim.g.lofi or {}, user_opts or {})
  local ok, errors = M.validate(merged)
  if not ok then
    vim.schedule(function()
      -- One line (several echoed lines would wait for Enter); :checkhealth lofi lists them all.
      local more = #errors > 1 and string.format(" (and %d more: :checkhealth lofi)", #errors - 1) or ""
      local messages = require("lofi.messages")
      local text = errors[1] .. more
      vim.notify(messages.builtin_notifier() and messages.fit(text) or text, vim.log.levels.ERROR)
    end)
    -- Keep going with the defaults for the keys that were wrong, so a typo doesn't disable the plugin.
    for _, rule in ipairs(RULES) do
      if not check_rule(merged, rule) then
        local parent, key = rule[1]:match("^(.-)%.?([^.]+)$")
        local holder = parent == "" and merged or get_path(merged, parent)
        if type(holder) == "table" then
          holder[key] = vim.deepcopy(get_path(M.defaults, rule[1]))
        end
      end
    end
  end
  current = merged
  return current
end

--- The user's raw options merged with defaults, without fixing errors (for :checkhealth).
function M.raw()
  return vim.tbl_deep_extend("force", vim.deepcopy(M.defaults), vim.g.lofi or {}, user_opts or {})
end

--- Apply user options. Idempotent: calling it again replaces the previous options.
---@param opts? lofi.Config
function M.setup(opts)
  user_opts = opts or {}
  current = nil
  return M.get()
end

--- Root directory of this plugin (the folder that holds lua/, plugin/, doc/).
function M.plugin_root()
  local src = debug.getinfo(1, "S").source:sub(2)
  return vim.fn.fnamemodify(src, ":p:h:h:h")
end

--- Resolve the daemon command: config, then the plugin's own venv, then PATH. With opts.serve, a local daemon
--- we found ourselves also gets `--parent-pid`, so it never outlives a crashed editor.
---@param opts? {serve?: boolean}
---@return string[]|nil cmd, string|nil err
function M.daemon_cmd(opts)
  local cmd = M.get().daemon.cmd
  if type(cmd) == "string" then
    return { cmd }
  elseif type(cmd) == "table" then
    return vim.deepcopy(cmd)
  end
  local root = M.plugin_root()
  local is_win = vim.fn.has("win32") == 1
  local venv = is_win and (root .. "/.venv/Scripts/lofi-daemon.exe") or (root .. "/.venv/bin/lofi-daemon")
  local watch = (opts and opts.serve) and { "--parent-pid", tostring(vim.fn.getpid()) } or {}
  if vim.fn.executable(venv) == 1 then
    return { venv, unpack(watch) }
  end
  local on_path = vim.fn.exepath("lofi-daemon")
  if on_path ~= "" then
    return { on_path, unpack(watch) }
  end
  return nil,
    string.format(
      "`lofi-daemon` not found (in %s or on PATH): run %s/scripts/setup, or set daemon.cmd",
      venv,
      vim.fn.fnameescape(root)
    )
end

--- The `options` object sent with `initialize`.
function M.initialize_options()
  local c = M.get()
  -- Only models with a setting; an empty Lua table would encode as a JSON array.
  local models = vim.empty_dict()
  for name, m in pairs(c.models) do
    if m.dir or m.variant then
      -- absolute against Neovim's cwd, like cache.dir: the daemon refuses relative model paths
      models[name] =
        { dir = m.dir and vim.fn.fnamemodify(vim.fn.expand(m.dir), ":p") or nil, variant = m.variant }
    end
  end
  return {
    default_backend = c.backend,
    provider = c.provider,
    threads = c.threads,
    models = models,
    -- absolute against Neovim's cwd: the daemon rejects relative paths (its cwd is not the user's)
    cache_dir = c.cache.dir and vim.fn.fnamemodify(vim.fn.expand(c.cache.dir), ":p") or nil,
    cache = { max_mb = c.cache.max_mb, max_tracks = c.cache.max_tracks, format = c.cache.format },
    playback = {
      volume = c.playback.volume,
      loop = c.playback.loop,
      crossfade_sec = c.playback.crossfade_sec,
      auto_play = c.playback.auto_play,
      stream = c.playback.stream,
      device = c.playback.device,
    },
    prefetch = {
      enabled = c.prefetch.enabled,
      strategy = c.prefetch.strategy,
      trigger_percent = c.prefetch.trigger_percent,
      presets = c.prefetch.presets,
    },
    generator = c.generator.cmd and {
      -- one shell string runs through sh, like `daemon.cmd`'s string form
      cmd = type(c.generator.cmd) == "string" and { "sh", "-c", c.generator.cmd } or c.generator.cmd,
      backends = c.generator.backends,
      retry = c.generator.retry,
      connect_timeout_sec = c.generator.connect_timeout_sec,
    } or nil,
  }
end

return M

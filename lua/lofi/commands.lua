-- :Lofi {subcommand} [args]: dispatch and context-aware completion.
local M = {}

local function lofi()
  return require("lofi")
end

local function known_track_ids()
  local ids, seen = {}, {}
  local state = require("lofi.state").current
  local client = require("lofi.client")
  -- Ask the running daemon (briefly) for recent ids; never start the daemon just to complete.
  if client.is_ready() then
    local err, res = client.request_sync("cache_list", { limit = 50, sort = "created" }, 300)
    if not err and res then
      for _, t in ipairs(res.tracks or {}) do
        require("lofi.state").remember_track(t)
        if not seen[t.track_id] then
          seen[t.track_id] = true
          ids[#ids + 1] = t.track_id
        end
      end
    end
  end
  for id in pairs(state.tracks) do
    if not seen[id] then
      seen[id] = true
      ids[#ids + 1] = id
    end
  end
  return ids
end

local function generating_ids()
  local ids = {}
  for id in pairs(require("lofi.state").current.generating) do
    ids[#ids + 1] = id
  end
  table.sort(ids)
  return ids
end

local BUILTIN_BACKENDS = { "musicgen", "ace_step", "riffusion" }
local RADIO_PLANS = { "focus", "pomodoro", "late_night" } -- the daemon's shipped plans (radio/plans.py)

-- Backend names: what the running daemon announced in `initialize`, else the built-in ones.
local function backends()
  local info = require("lofi.client").server_info()
  local names = {}
  for _, b in ipairs(info and info.backends or {}) do
    if type(b) == "table" and b.name then
      names[#names + 1] = b.name
    end
  end
  return #names > 0 and names or BUILTIN_BACKENDS
end

-- LoRA styles of the ACE-Step backend: asked of the running daemon (briefly; styles installed since it started
-- count), else what it announced in `initialize`. Never starts the daemon just to complete.
local function lora_styles()
  local client = require("lofi.client")
  local list
  if client.is_ready() then
    local err, res = client.request_sync("get_backends", nil, 300)
    list = not err and res and res.backends or nil
  end
  list = list or (client.server_info() or {}).backends or {}
  for _, b in ipairs(list) do
    if type(b) == "table" and b.name == "ace_step" and type(b.lora_styles) == "table" then
      return b.lora_styles
    end
  end
  return {}
end

local function presets()
  return require("lofi.config").get().prefetch.presets
end

local function generate_complete(arglead)
  local key = arglead:match("^%-?%-?([%w_]+)=")
  if key == "backend" then
    return vim.tbl_map(function(b)
      return "backend=" .. b
    end, backends())
  elseif key == "lora" then
    return vim.tbl_map(function(s)
      return "lora=" .. s
    end, lora_styles())
  elseif key == "priority" then
    return { "priority=high", "priority=normal" }
  elseif key == "preset" then
    return vim.tbl_map(function(s)
      return "preset=" .. s
    end, require("lofi.args").style_presets())
  elseif key == "scheduler" then
    return vim.tbl_map(function(s)
      return "scheduler=" .. s
    end, require("lofi.args").SCHEDULERS)
  end
  local out = {}
  for _, k in ipairs(require("lofi.args").generate_keys()) do
    out[#out + 1] = k .. "="
  end
  -- Preset prompts (quoted words aren't a thing in :command args, so offer them as-is).
  vim.list_extend(out, presets())
  return out
end

local function edit_command(name)
  return {
    run = function(args)
      local track_id, params, err = require("lofi.args").parse_edit(name, args)
      if not params then
        return require("lofi.ui").error(err)
      end
      local task = params.task
      params.task = nil
      lofi().edit(task, track_id, params)
    end,
    -- the track id first, then the task's options
    complete = function(_arglead, args)
      local keys = ({
        vary = { "variance=", "seed=" },
        repaint = { "variance=", "seed=", "steps=" },
        extend = { "left=", "right=", "seed=", "steps=" },
      })[name]
      if #args == 0 then
        return vim.list_extend(known_track_ids(), keys)
      end
      return keys
    end,
    multi = true,
  }
end

---@class lofi.Subcommand
---@field run fun(args: string[], opts: table)
---@field complete? fun(arglead: string, args: string[]): string[]
---@field multi? boolean completes every argument, not only the first
---@field desc string

---@type table<string, lofi.Subcommand>
M.subcommands = {
  generate = {
    desc = "generate [prompt] [duration=N seed=N backend=NAME priority=high] (or --duration N ...)",
    run = function(args)
      local params, err = require("lofi.args").parse_generate(args)
      if not params then
        return require("lofi.ui").error(err)
      end
      lofi().generate(params)
    end,
    complete = generate_complete,
  },
  radio = {
    desc = "radio [prompt] [plan=NAME adaptive=true save=true] | radio stop|status | steer <prompt> | plan <name>",
    multi = true,
    run = function(args)
      local parsed, err = require("lofi.args").parse_radio(args)
      if not parsed then
        return require("lofi.ui").error(err)
      end
      local p = parsed.params
      if parsed.action == "start" then
        lofi().radio(p)
      elseif parsed.action == "stop" then
        lofi().radio_stop()
      elseif parsed.action == "status" then
        lofi().radio_status()
      else
        lofi().radio_steer(p)
      end
    end,
    complete = function(arglead, args)
      if #args == 0 and not arglead:find("=") then
        return { "stop", "steer", "plan", "status", "plan=", "adaptive=true", "save=true" }
      elseif args[1] == "plan" or arglead:match("^plan=") then
        local prefix = args[1] == "plan" and "" or "plan="
        return vim.tbl_map(function(n)
          return prefix .. n
        end, RADIO_PLANS)
      end
      return { "plan=", "adaptive=true", "save=true", "seed=" }
    end,
  },
  play = {
    desc = "play [track_id]",
    run = function(args)
      lofi().play(args[1])
    end,
    complete = known_track_ids,
  },
  pause = {
    desc = "pause playback",
    run = function()
      lofi().pause()
    end,
  },
  resume = {
    desc = "resume playback",
    run = function()
      lofi().resume()
    end,
  },
  toggle = {
    desc = "toggle play/pause",
    run = function()
      lofi().toggle()
    end,
  },
  stop = {
    desc = "stop playback",
    run = function()
      lofi().stop()
    end,
  },
  skip = {
    desc = "next track",
    run = function()
      lofi().skip()
    end,
  },
  seek = {
    desc = "seek SECONDS|+N|-N|M:SS",
    run = function(args)
      lofi().seek(args[1])
    end,
    complete = function()
      return { "0", "+10", "-10" }
    end,
  },
  volume = {
    desc = "volume [0-100|+N|-N]",
    run = function(args)
      lofi().volume(args[1])
    end,
    complete = function()
      return { "+10", "-10", "0", "30", "50", "100" }
    end,
  },
  cancel = {
    desc = "cancel [track_id]",
    run = function(args)
      lofi().cancel(args[1])
    end,
    complete = generating_ids,
  },
  queue = {
    desc = "show the generation queue",
    run = function()
      lofi().queue()
    end,
  },
  tracks = {
    desc = "browse cached tracks",
    run = function()
      lofi().tracks()
    end,
  },
  prompts = {
    desc = "browse prompts",
    run = function()
      lofi().prompts()
    end,
  },
  status = {
    desc = "daemon and playback status",
    run = function()
      lofi().status()
    end,
  },
  models = {
    desc = "list backends and whether their models are installed",
    run = function()
      lofi().models()
    end,
  },
  download = {
    desc = "download <backend> (asks first, showing the size; :Lofi! download does not ask)",
    run = function(args, opts)
      lofi().download(args[1], nil, { force = opts.bang })
    end,
    complete = backends,
  },
  favourite = {
    desc = "favourite [track_id]: toggle (the current track by default)",
    run = function(args)
      lofi().favourite(args[1])
    end,
    complete = known_track_ids,
  },
  vary = vim.tbl_extend("force", edit_command("vary"), {
    desc = "vary [track_id] [variance=0.5 seed=N]: a variation of an ace_step track (the current one by default)",
  }),
  repaint = vim.tbl_extend("force", edit_command("repaint"), {
    desc = "repaint [track_id] START-END [variance=0.5] [prompt]: regenerate that time range, keep the rest",
  }),
  extend = vim.tbl_extend("force", edit_command("extend"), {
    desc = "extend [track_id] [left=N] [right=N]: add seconds before/after the track (right=30 by default)",
  }),
  resubmit = {
    desc = "queue again the generations lost when the daemon died",
    run = function()
      require("lofi.jobs").resubmit()
    end,
  },
  cache = {
    desc = "cache clear|stats (clear asks first; :Lofi! cache clear does not)",
    run = function(args, opts)
      if args[1] == "clear" then
        lofi().cache_clear(nil, { force = opts.bang })
      elseif args[1] == "stats" or args[1] == nil then
        lofi().cache_stats()
      else
        require("lofi.ui").error("cache: expected clear or stats, got " .. args[1])
      end
    end,
    complete = function()
      return { "clear", "stats" }
    end,
  },
  log = {
    desc = "open the daemon log",
    run = function()
      lofi().log()
    end,
  },
  daemon = {
    desc = "daemon start|stop|restart",
    run = function(args)
      local fn = ({ start = "daemon_start", stop = "daemon_stop", restart = "daemon_restart" })[args[1] or ""]
      if not fn then
        return require("lofi.ui").error("daemon: expected start, stop or restart")
      end
      lofi()[fn]()
    end,
    complete = function()
      return { "start", "stop", "restart" }
    end,
  },
  health = {
    desc = "run :checkhealth lofi",
    run = function()
      lofi().health()
    end,
  },
}

function M.names()
  local names = vim.tbl_keys(M.subcommands)
  table.sort(names)
  return names
end

---@param opts table the user-command callback's argument
function M.run(opts)
  local args = opts.fargs or {}
  if #args == 0 then
    return lofi().toggle()
  end
  local name = table.remove(args, 1)
  local sub = M.subcommands[name]
  if not sub then
    local near = require("lofi.messages").suggest(name, M.names())
    return require("lofi.ui").error(
      string.format(
        "unknown subcommand `%s`%s",
        name,
        near and string.format(": did you mean `%s`?", near) or " (:Lofi <Tab> lists them)"
      )
    )
  end
  sub.run(args, opts)
end

local function filter(items, arglead)
  return vim.tbl_filter(function(s)
    return vim.startswith(s, arglead)
  end, items)
end

--- Completion for :Lofi: subcommands first, then the subcommand's own candidates.
function M.complete(arglead, cmdline, _cursorpos)
  -- Words before the one being completed (drop the command name itself, possibly abbreviated: ":Lo").
  local words = vim.split(cmdline, "%s+", { trimempty = true })
  table.remove(words, 1)
  if arglead ~= "" then
    table.remove(words)
  end
  if #words == 0 then
    return filter(M.names(), arglead)
  end
  local sub = M.subcommands[words[1]]
  if not sub or not sub.complete then
    return {}
  end
  -- Subcommands with a single argument complete only that argument.
  if words[1] ~= "generate" and not sub.multi and #words > 1 then
    return {}
  end
  local args = vim.list_slice(words, 2)
  return filter(sub.complete(arglead, args), arglead)
end

return M

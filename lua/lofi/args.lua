-- The one argument parser behind every entry point (:Lofi, <Plug> maps, picker actions, the Lua API).
-- Options are accepted as `key=value`, `--key value` or `--key=value` (the CLI's spelling); plain words form the
-- prompt. Anything it cannot parse is an error that names the word, never a silent guess or a clamp.
local M = {}

local function number(v)
  return type(v) == "number" and v or tonumber(v)
end

local function integer(v)
  local n = number(v)
  return (n and n == math.floor(n)) and n or nil
end

--- Seconds from "30", "30s", "1:30" or a number.
---@return number|nil
function M.seconds(v)
  if type(v) == "number" then
    return v
  end
  if type(v) ~= "string" then
    return nil
  end
  local m, s = v:match("^(%d+):(%d%d?%.?%d*)$")
  if m then
    s = tonumber(s)
    return (s and s < 60) and tonumber(m) * 60 + s or nil
  end
  return tonumber((v:gsub("s$", "")))
end

local function enum(values)
  return function(v)
    return vim.tbl_contains(values, v) and v or nil
  end,
    "one of " .. table.concat(values, ", ")
end

local function str(v)
  return (type(v) == "string" and v ~= "") and v or nil
end

local function boolean(v)
  if type(v) == "boolean" then
    return v
  end
  return ({ ["true"] = true, yes = true, ["1"] = true, ["false"] = false, no = false, ["0"] = false })[v]
end

M.SCHEDULERS = { "euler", "heun", "pingpong", "dpmsolver++", "ddim" }

-- name -> { param = daemon param, parse = fn(value) -> value|nil, expect = text }
local GENERATE = {}
local function opt(names, param, parse, expect)
  for _, n in ipairs(names) do
    GENERATE[n] = { param = param, parse = parse, expect = expect }
  end
end
opt({ "prompt" }, "prompt", str, "text")
opt({ "duration", "duration_sec" }, "duration_sec", M.seconds, "seconds (30, 30s or 1:30)")
opt({ "seed" }, "seed", function(v)
  local n = integer(v)
  return (n and n >= 0) and n or nil
end, "a whole number ≥ 0")
opt({ "backend" }, "backend", str, "a backend name (musicgen, ace_step, riffusion)")
opt({ "priority" }, "priority", enum({ "high", "normal" }))
opt({ "steps", "inference_steps" }, "inference_steps", integer, "a whole number")
opt({ "guidance", "guidance_scale" }, "guidance_scale", number, "a number")
-- ace_step: euler, heun, pingpong; riffusion: dpmsolver++, ddim (the daemon checks the pair)
opt({ "scheduler" }, "scheduler", enum(M.SCHEDULERS))
opt({ "top_k" }, "top_k", integer, "a whole number")
opt({ "top_p" }, "top_p", number, "a number")
opt({ "temperature" }, "temperature", number, "a number")
opt({ "cfg_type" }, "cfg_type", str, "text")
opt({ "omega" }, "omega", number, "a number")
opt({ "guidance_interval" }, "guidance_interval", number, "a number")
opt({ "lyrics" }, "lyrics", function(v)
  return type(v) == "string" and v or nil
end, "text")
opt({ "preset" }, "preset", str, "a style preset name (:Lofi generate preset=<Tab>)")
opt({ "lora" }, "lora", str, "a LoRA name or path")
opt({ "lora_weight" }, "lora_weight", number, "a number")
opt({ "negative_prompt", "negative" }, "negative_prompt", str, "text")
opt({ "cfg_scale" }, "cfg_scale", number, "a number")
opt({ "denoising" }, "denoising", number, "a number between 0 and 1")
opt({ "interpolate_to" }, "interpolate_to", str, "text")
-- ace_step editing tasks (:Lofi vary / repaint / extend set task and source_track themselves)
M.TASKS = { "text2music", "retake", "repaint", "extend", "audio2audio", "edit" }
opt({ "task" }, "task", enum(M.TASKS))
opt({ "source_track", "source" }, "source_track", function(v)
  return type(v) == "string" and v:match("^%x+$") and #v == 16 and v:lower() or nil
end, "a track id (16 hex digits)")
opt({ "variance", "retake_variance" }, "retake_variance", number, "a number between 0 and 1")
opt({ "repaint_start" }, "repaint_start", M.seconds, "seconds (30, 30s or 1:30)")
opt({ "repaint_end" }, "repaint_end", M.seconds, "seconds (30, 30s or 1:30)")
opt({ "left", "extend_left" }, "extend_left", M.seconds, "seconds (30, 30s or 1:30)")
opt({ "right", "extend_right" }, "extend_right", M.seconds, "seconds (30, 30s or 1:30)")
opt({ "strength", "ref_audio_strength" }, "ref_audio_strength", number, "a number between 0 and 1")
opt({ "edit_n_min" }, "edit_n_min", number, "a number between 0 and 1")
opt({ "edit_n_max" }, "edit_n_max", number, "a number between 0 and 1")
opt({ "init" }, "init", str, "a track id or an audio file's path")
opt({ "init_strength" }, "init_strength", number, "a number between 0 and 1")
opt({ "format" }, "format", enum({ "flac", "wav", "ogg", "mp3" }))
opt({ "allow_download" }, "allow_download", boolean, "true or false")
opt({ "loop" }, "loop", boolean, "true or false")
opt({ "bpm" }, "bpm", number, "a tempo in BPM (40–240)")
M.GENERATE = GENERATE

local style_presets
--- Style preset names, read once from the data file the daemon expands them with (sorted).
---@return string[]
function M.style_presets()
  if not style_presets then
    local path = require("lofi.config").plugin_root() .. "/daemon/lofi_daemon/presets/styles.json"
    local ok, data = pcall(function()
      return vim.json.decode(table.concat(vim.fn.readfile(path), "\n"))
    end)
    style_presets = (ok and type(data) == "table" and type(data.presets) == "table")
        and vim.tbl_keys(data.presets)
      or {}
    table.sort(style_presets)
  end
  return style_presets
end

--- Option names for completion (the short spelling of each).
function M.generate_keys()
  local out = {}
  for name, o in pairs(GENERATE) do
    if name ~= "prompt" and (name == o.param or not GENERATE[o.param] or #name < #o.param) then
      out[#out + 1] = name
    end
  end
  table.sort(out)
  return out
end

-- :Lofi radio [prompt] options: the radio's own, and MusicGen's sampling params
local RADIO = {}
local function radio_opt(names, param, parse, expect)
  for _, n in ipairs(names) do
    RADIO[n] = { param = param, parse = parse, expect = expect }
  end
end
radio_opt({ "prompt" }, "prompt", str, "text")
radio_opt({ "plan" }, "plan", str, "a plan name (focus, pomodoro, late_night)")
radio_opt({ "adaptive" }, "adaptive", boolean, "true or false")
radio_opt({ "save" }, "save", boolean, "true or false")
for _, name in ipairs({
  "seed",
  "backend",
  "guidance",
  "guidance_scale",
  "top_k",
  "top_p",
  "temperature",
  "negative",
  "negative_prompt",
}) do
  RADIO[name] = GENERATE[name]
end
M.RADIO = RADIO

local function norm(key)
  return (key:gsub("%-", "_"))
end

local function set(out, key, raw, options)
  options = options or GENERATE
  local o = options[norm(key)]
  if not o then
    local near = require("lofi.messages").suggest(norm(key), vim.tbl_keys(options))
    return string.format("unknown option `%s`%s", key, near and (" (did you mean `" .. near .. "`?)") or "")
  end
  local v = o.parse(raw)
  if v == nil then
    return string.format("`%s` expects %s, got `%s`", key, o.expect, tostring(raw))
  end
  out[o.param] = v
end

--- Parse words into params: `key=value`, `--key value`, `--key=value`, the rest is the prompt.
local function parse(words, options, what)
  if type(words) == "string" then
    words = vim.split(vim.trim(words), "%s+", { trimempty = true })
  end
  local out, prompt = {}, {}
  local i = 1
  while i <= #words do
    local w = words[i]
    local flag, flag_value = w:match("^%-%-([%a][%w_%-]*)=(.*)$")
    local long = not flag and w:match("^%-%-([%a][%w_%-]*)$")
    local key, kv_value = w:match("^([%a][%w_]*)=(.*)$")
    local err
    if flag then
      err = set(out, flag, flag_value, options)
    elseif long then
      local o = options[norm(long)]
      local nxt = words[i + 1]
      if o and o.parse == boolean and (nxt == nil or boolean(nxt) == nil) then
        out[o.param] = true -- a bare switch (--allow-download, --loop, --adaptive)
      elseif nxt == nil then
        err = o and string.format("`--%s` needs a value (%s)", long, o.expect) or set(out, long, "", options)
      else
        i = i + 1
        err = set(out, long, nxt, options)
      end
    elseif key then
      err = set(out, key, kv_value, options)
    else
      prompt[#prompt + 1] = w
    end
    if err then
      return nil, what .. ": " .. err
    end
    i = i + 1
  end
  if #prompt > 0 then
    out.prompt = table.concat(prompt, " ")
  end
  return out
end

--- Parse generate words (or one string) into generate params. Returns params, or nil and an error text.
---@param words string|string[]
---@return table|nil params, string|nil err
function M.parse_generate(words)
  return parse(words, GENERATE, "generate")
end

--- Parse `:Lofi radio` words: `stop`, `status`, `steer <prompt>`, `plan <name>`, or a start with an optional
--- prompt and options (plan=, adaptive=, save=, seed=, guidance=, …).
---@param words string|string[]
---@return {action: "start"|"stop"|"status"|"steer"|"plan", params: table}|nil, string|nil err
function M.parse_radio(words)
  if type(words) == "string" then
    words = vim.split(vim.trim(words), "%s+", { trimempty = true })
  end
  local action = words[1]
  if action == "stop" or action == "status" then
    if #words > 1 then
      return nil, string.format("radio %s: takes no arguments, got `%s`", action, words[2])
    end
    return { action = action, params = {} }
  elseif action == "steer" then
    local prompt = table.concat(vim.list_slice(words, 2), " ")
    if prompt == "" then
      return nil, "radio steer: needs the new prompt"
    end
    return { action = "steer", params = { prompt = prompt } }
  elseif action == "plan" then
    if #words ~= 2 then
      return nil, "radio plan: needs one plan name (focus, pomodoro, late_night)"
    end
    return { action = "plan", params = { plan = words[2] } }
  end
  local params, err = parse(words, RADIO, "radio")
  if not params then
    return nil, err
  end
  return { action = "start", params = params }
end

--- A time range "12-20", "1:00-1:30" or "12s-20s" → start, end seconds (start < end), or nil.
---@return number|nil start, number|nil stop
function M.range(v)
  if type(v) ~= "string" then
    return nil
  end
  local a, b = v:match("^([%d:%.s]+)%-([%d:%.s]+)$")
  local start, stop = M.seconds(a), M.seconds(b)
  if start and stop and start < stop then
    return start, stop
  end
  return nil
end

local EDIT = { vary = "retake", repaint = "repaint", extend = "extend" }

--- Words of :Lofi vary / repaint / extend → track id (nil: the current track), generate params, or nil and an
--- error. An optional first word is the track id; repaint takes a range (START-END); the rest are generate
--- options, and plain words replace the source's prompt.
---@param command "vary"|"repaint"|"extend"
---@param words string[]
---@return string|nil track_id, table|nil params, string|nil err
function M.parse_edit(command, words)
  words = vim.deepcopy(words)
  local track_id
  if words[1] and #words[1] == 16 and words[1]:match("^%x+$") then
    track_id = table.remove(words, 1):lower()
  end
  local start, stop
  if command == "repaint" then
    for i, w in ipairs(words) do
      start, stop = M.range(w)
      if start then
        table.remove(words, i)
        break
      end
    end
    if not start then
      return nil, nil, "repaint: give the range to regenerate as START-END seconds (12-20 or 1:00-1:30)"
    end
  end
  local params, err = M.parse_generate(words)
  if not params then
    return nil, nil, (err:gsub("^generate:", command .. ":"))
  end
  params.task, params.repaint_start, params.repaint_end = EDIT[command], start, stop
  if command == "extend" and not params.extend_left and not params.extend_right then
    params.extend_right = 30
  end
  return track_id, params
end

--- Check a generate params table from Lua (API, pickers): same names and checks as the command line.
---@param opts table
---@return table|nil params, string|nil err
function M.check_generate(opts)
  local out = {}
  for k, v in pairs(opts) do
    if type(k) ~= "string" then
      return nil, "generate: options must be named (got a list entry)"
    end
    local err = set(out, k, v, GENERATE)
    if err then
      return nil, "generate: " .. err
    end
  end
  return out
end

--- Volume "0-100", "+N" or "-N" against the current level (0-100). Relative steps stop at the ends (that is what
--- volume-up at 100 means); an absolute level outside 0-100 is an error.
---@return number|nil level, string|nil err
function M.volume(arg, current)
  if type(arg) == "number" then
    arg = tostring(arg)
  end
  if type(arg) ~= "string" then
    return nil, "volume: expected 0-100, +N or -N"
  end
  local sign, rel = arg:match("^([+-])(%d+%.?%d*)%%?$")
  if sign then
    local n = current + (sign == "+" and 1 or -1) * tonumber(rel)
    return math.max(0, math.min(100, n))
  end
  local n = tonumber((arg:gsub("%%$", "")))
  if not n then
    return nil, string.format("volume: expected 0-100, +N or -N, got `%s`", arg)
  end
  if n < 0 or n > 100 then
    return nil, string.format("volume: %s is outside 0-100", arg)
  end
  return n
end

--- Seek target: seconds, "M:SS" (SS below 60), or "+N"/"-N" (seconds or M:SS) relative to `position`.
---@return number|nil target, string|nil err
function M.seek(arg, position)
  if type(arg) == "number" then
    return arg >= 0 and arg or nil, arg < 0 and "seek: position must be ≥ 0" or nil
  end
  if type(arg) ~= "string" or arg == "" then
    return nil, "seek: missing position (seconds, +N, -N or M:SS)"
  end
  local sign, rest = arg:match("^([+-])(.+)$")
  local sec = M.seconds(rest or arg)
  if not sec or sec < 0 then
    return nil, string.format("seek: expected seconds, M:SS, +N or -N, got `%s`", arg)
  end
  if sign == "+" then
    return position + sec
  elseif sign == "-" then
    return math.max(0, position - sec)
  end
  return sec
end

return M

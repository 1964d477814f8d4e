-- Message text and level: daemon errors in human words (no internal codes, no pydantic wording), benign states at
-- INFO, every message on one line (a multi-line echo stops at a hit-enter prompt), and "did you mean" hints.
local M = {}

local levels = vim.log.levels

local function distance(a, b)
  -- Levenshtein distance; words here are short.
  local prev = {}
  for j = 0, #b do
    prev[j] = j
  end
  for i = 1, #a do
    local cur = { [0] = i }
    for j = 1, #b do
      local cost = a:sub(i, i) == b:sub(j, j) and 0 or 1
      cur[j] = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
    end
    prev = cur
  end
  return prev[#b]
end

--- The candidate closest to `word` (a prefix, or at most a third of its letters wrong), or nil.
---@param word string
---@param candidates string[]
---@return string|nil
function M.suggest(word, candidates)
  local best, best_d
  local sorted = vim.deepcopy(candidates)
  table.sort(sorted)
  for _, c in ipairs(sorted) do
    local d = vim.startswith(c, word) and 0 or distance(word, c)
    if d <= math.max(1, math.floor(#word / 3)) and (not best_d or d < best_d) then
      best, best_d = c, d
    end
  end
  return best
end

--- Collapse a text to one line (newlines become "; "), so the default notifier never asks for Enter.
function M.one_line(text)
  text = tostring(text or ""):gsub("%s*\n+%s*", "; ")
  return vim.trim(text)
end

-- pydantic's wording -> plain words (the daemon validates params with pydantic; `data.details` lists them).
local PYDANTIC = {
  { "^Input should be a valid integer", "expects a whole number" },
  { "^Input should be a valid number", "expects a number" },
  { "^Input should be a valid string", "expects text" },
  { "^Input should be a valid boolean", "expects true or false" },
  { "^Input should be greater than or equal to (.+)$", "must be at least %1" },
  { "^Input should be greater than (.+)$", "must be more than %1" },
  { "^Input should be less than or equal to (.+)$", "must be at most %1" },
  { "^Input should be less than (.+)$", "must be less than %1" },
  { "^Input should be (.+)$", "must be %1" },
  { "^Extra inputs are not permitted", "is not a known option" },
  { "^Field required", "is required" },
  { "^String should have at most (%d+) characters?", "must be at most %1 characters" },
  { "^String should have at least (%d+) characters?", "must be at least %1 characters" },
  { "^Value error, (.+)$", "%1" },
}

local function human_problem(problem)
  problem = tostring(problem or "")
  for _, rule in ipairs(PYDANTIC) do
    local out, n = problem:gsub(rule[1], rule[2])
    if n > 0 then
      return (out:gsub(", unable to parse.*$", ""):gsub("%s*%[.*%]$", ""))
    end
  end
  return problem
end

-- Daemon params -> the names users type.
local PARAM_NAMES = { duration_sec = "duration", inference_steps = "steps", guidance_scale = "guidance" }

local function invalid_params(data, message)
  local details = type(data.details) == "table" and data.details or {}
  local parts = {}
  for _, d in ipairs(details) do
    if type(d) == "table" then
      local field = tostring(d.field or ""):gsub("^params%.?", "")
      field = PARAM_NAMES[field] or field
      parts[#parts + 1] = (field ~= "" and field ~= "(params)" and ("`" .. field .. "` ") or "")
        .. human_problem(d.problem)
    end
  end
  if #parts > 0 then
    return "invalid option: " .. table.concat(parts, "; ")
  end
  -- No details: drop the pydantic part of "invalid params for generate: field: problem".
  local field, problem = tostring(message):match("^invalid params for [%w_]+: ([^:]+): (.+)$")
  if field then
    return string.format("invalid option: `%s` %s", PARAM_NAMES[field] or field, human_problem(problem))
  end
  return message
end

-- error_code -> function(message, data) -> text. Codes not listed keep the daemon's (already human) message.
local BY_CODE = {
  INVALID_PARAMS = function(message, data)
    return invalid_params(data, message)
  end,
  METHOD_NOT_FOUND = function()
    return "the daemon does not know this command; update it (./scripts/setup)"
  end,
  INTERNAL_ERROR = function(message)
    return "the daemon hit a bug: " .. message .. " (details in :Lofi log)"
  end,
  BACKEND_NOT_INSTALLED = function(message, data)
    if data.backend then
      return string.format("the %s model is not installed: run :Lofi download %s", data.backend, data.backend)
    end
    return message
  end,
  QUEUE_FULL = function()
    return "the queue is full (10 waiting): wait, or :Lofi cancel"
  end,
  TRACK_NOT_FOUND = function(message, data)
    if data.track_id then
      return string.format("track %s is not in the cache", data.track_id)
    end
    return message
  end,
}

--- One human line for a JSON-RPC error object (or a string).
---@param err table|string
---@return string
function M.error_text(err)
  if type(err) ~= "table" then
    return M.one_line(err)
  end
  local data = type(err.data) == "table" and err.data or {}
  local message = tostring(err.message or "unknown error")
  local fn = BY_CODE[data.error_code or ""]
  local text = fn and fn(message, data) or message
  if type(data.hint) == "string" and data.error_code ~= "BACKEND_NOT_INSTALLED" then
    text = text .. " — " .. data.hint
  end
  return M.one_line(text)
end

-- Playback requests whose TRACK_NOT_FOUND means "there is nothing to act on": a state, not a failure.
local BENIGN = { skip = true, seek = true, pause = true, resume = true, toggle = true, stop = true }

--- The level for an error answer to `method` (INFO for benign states such as "nothing is playing").
---@param err table
---@param method? string
---@param params? table
function M.error_level(err, method, params)
  local data = type(err) == "table" and type(err.data) == "table" and err.data or {}
  if data.error_code == "TRACK_NOT_FOUND" then
    if BENIGN[method or ""] or (method == "play" and not (params and params.track_id)) then
      return levels.INFO
    end
  end
  return levels.ERROR
end

--- Ask a yes/no question through vim.ui.select (a picker plugin shows it in a float; nothing waits on the
--- daemon meanwhile); on_yes runs only when `yes_label` is chosen.
---@param question string
---@param yes_label string
---@param on_yes fun()
function M.confirm(question, yes_label, on_yes)
  vim.ui.select({ yes_label, "Cancel" }, { prompt = question, kind = "lofi_confirm" }, function(choice)
    if choice == yes_label then
      on_yes()
    end
  end)
end

--- Is vim.notify still Neovim's own (it echoes on the command line)? See lofi.ui.
function M.builtin_notifier()
  return require("lofi.ui").builtin_notifier()
end

local last_important = nil -- uv.now() of the last WARN/ERROR shown

--- The text of a message: one line, without a "lofi: " of its own (lofi.ui adds it where no title shows).
---@param msg string
---@param level integer
---@return string
function M.prepare(msg, level)
  if level >= levels.WARN then
    last_important = (vim.uv or vim.loop).now()
  end
  return (M.one_line(msg):gsub("^lofi:%s*", ""))
end

--- Whether an echoed progress line would now hide a warning or error shown moments ago.
---@param window_ms? integer
function M.important_recently(window_ms)
  return last_important ~= nil and (vim.uv or vim.loop).now() - last_important < (window_ms or 5000)
end

--- Echo-safe text for Neovim's own notifier: cut to what fits on the command line (v:echospace: the columns
--- left of the ruler and showcmd), since a wrapped echo stops at a hit-enter prompt (messages say the essential
--- first).
function M.fit(text)
  local width = math.max(20, vim.v.echospace > 0 and vim.v.echospace or (vim.o.columns - 12))
  if vim.fn.strdisplaywidth(text) <= width then
    return text
  end
  return vim.fn.strcharpart(text, 0, width - 1) .. "…"
end

local queue, draining = {}, false

local function drain()
  local item = table.remove(queue, 1)
  if not item then
    draining = false
    return
  end
  if M.builtin_notifier() then
    item[1] = M.fit(item[1])
  end
  vim.notify(item[1], item[2], item[3])
  -- Let the screen redraw before the next one: with Neovim's own notifier, a message that follows an error in
  -- the same redraw cycle stops at a hit-enter prompt (measured with an 80x24 UI; 10 ms apart was enough).
  vim.defer_fn(drain, 20)
end

--- Hand a message to vim.notify from the main loop, one at a time.
---@param text string
---@param level integer
---@param opts? table
function M.show(text, level, opts)
  queue[#queue + 1] = { text, level, opts }
  if not draining then
    draining = true
    vim.schedule(drain)
  end
end

return M

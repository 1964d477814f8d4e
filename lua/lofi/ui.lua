-- Messages and progress. Everything goes through vim.notify (scheduled), so nvim-notify, snacks, mini.notify or
-- fidget pick it up. vim.notify may be any callable (nvim-notify's is a callable table). A notifier plugin gets
-- `title = "lofi"` and the bare text; Neovim's own vim.notify, which shows no title, gets "lofi: text".
-- Progress replaces itself in place when the notifier supports it, and is echoed on the command line otherwise.
local M = {}

local uv = vim.uv or vim.loop
local levels = vim.log.levels

local function cfg()
  return require("lofi.config").get()
end

--- Is vim.notify still Neovim's own (an echo without title, no replace)? Any other callable is a notifier plugin.
function M.builtin_notifier()
  local fn = vim.notify
  if type(fn) ~= "function" then
    return false -- a callable table (nvim-notify) or something else a plugin put there
  end
  local info = debug.getinfo(fn, "S")
  return info ~= nil and info.source ~= nil and info.source:find("vim/_editor.lua", 1, true) ~= nil
end

--- The message body: prefixed with "lofi: " only where no title shows where it comes from.
function M.body(msg)
  return M.builtin_notifier() and ("lofi: " .. msg) or msg
end

--- Shorten a prompt for one-line messages.
function M.short(prompt)
  prompt = tostring(prompt or "")
  return #prompt > 40 and (prompt:sub(1, 39) .. "…") or prompt
end

--- Notify, scheduled (some notifiers fail when called from fast contexts or a statusline).
---@param msg string
---@param level? integer
---@param opts? table
function M.notify(msg, level, opts)
  level = level or levels.INFO
  if level < levels.WARN and not cfg().ui.notify then
    return
  end
  -- One line, one message at a time (lofi.messages: so Neovim's own notifier never asks for Enter).
  local messages = require("lofi.messages")
  messages.show(
    M.body(messages.prepare(msg, level)),
    level,
    vim.tbl_extend("keep", opts or {}, { title = "lofi" })
  )
end

function M.info(msg)
  M.notify(msg, levels.INFO)
end

local recent = {} -- message -> uv.now() when last shown

--- Notify, unless the same message was shown less than `interval_ms` ago (daemon warnings can repeat).
function M.notify_once_in(msg, level, interval_ms)
  local now = uv.now()
  if recent[msg] and now - recent[msg] < interval_ms then
    return
  end
  recent[msg] = now
  M.notify(msg, level)
end

function M.error(msg)
  M.notify(msg, levels.ERROR)
end

function M.warn(msg)
  M.notify(msg, levels.WARN)
end

--- Turn a JSON-RPC error object into one readable line (human words, no internal codes: lofi.messages).
---@param err table|string
---@return string
function M.format_error(err)
  return require("lofi.messages").error_text(err)
end

--- Show a few lines of information (:Lofi status, queue, models): through the notifier when it is a real one
--- (nvim-notify, snacks, mini...), else in a small float closed with q or <Esc> (a multi-line echo would
--- stop at a hit-enter prompt).
---@param title string
---@param lines string[]
function M.show_lines(title, lines)
  if not M.builtin_notifier() then
    -- Asked for explicitly, so shown even with ui.notify = false.
    return vim.schedule(function()
      vim.notify(M.body(title .. "\n" .. table.concat(lines, "\n")), levels.INFO, { title = "lofi" })
    end)
  end
  vim.schedule(function()
    local buf = vim.api.nvim_create_buf(false, true)
    vim.api.nvim_buf_set_lines(buf, 0, -1, false, lines)
    vim.bo[buf].modifiable = false
    vim.bo[buf].bufhidden = "wipe"
    vim.bo[buf].filetype = "lofi"
    local width = #title + 4
    for _, l in ipairs(lines) do
      width = math.max(width, vim.fn.strdisplaywidth(l))
    end
    width = math.min(width + 2, math.max(20, vim.o.columns - 4))
    local height = math.min(#lines, math.max(1, vim.o.lines - 6))
    local win = vim.api.nvim_open_win(buf, true, {
      relative = "editor",
      width = width,
      height = height,
      row = math.floor((vim.o.lines - height) / 2) - 1,
      col = math.floor((vim.o.columns - width) / 2),
      style = "minimal",
      border = "rounded",
      title = " lofi " .. title .. " ",
      title_pos = "center",
    })
    for _, key in ipairs({ "q", "<Esc>" }) do
      vim.keymap.set("n", key, function()
        pcall(vim.api.nvim_win_close, win, true)
      end, { buffer = buf, nowait = true, desc = "close" })
    end
  end)
end

local progress = { record = nil, owner = nil, last = 0, key = nil }

--- Forget the progress notification (the daemon is gone: its jobs will not report again).
function M.progress_reset()
  progress.record, progress.key, progress.last = nil, nil, 0
end

--- Show progress of a job (`key` identifies it; done=true ends it).
---@param key string
---@param text string
---@param done? boolean
function M.progress(key, text, done)
  local mode = cfg().ui.progress
  if mode == "none" then
    return
  end
  local now = uv.now()
  if not done and progress.key == key and now - progress.last < cfg().ui.progress_interval_ms then
    return -- throttled
  end
  local messages = require("lofi.messages")
  if not done and (mode == "cmdline" or M.builtin_notifier()) and messages.important_recently() then
    return -- an echo replaces the command line: don't hide a warning or error shown moments ago
  end
  progress.last = now
  progress.key = key
  vim.schedule(function()
    if mode == "cmdline" or M.builtin_notifier() then
      -- Neovim's vim.notify cannot replace a message: echo instead. Progress stays out of :messages so it never
      -- floods it; the final line is kept. Cut to the echo area: a wrapped echo asks for Enter.
      vim.api.nvim_echo({ { messages.fit("lofi: " .. text) } }, done == true, {})
      return
    end
    local this = {}
    local ok, rec = pcall(vim.notify, text, levels.INFO, {
      title = "lofi",
      id = "lofi_progress", -- snacks.nvim / mini.notify style
      replace = progress.record, -- nvim-notify style: the record its previous call returned
      hide_from_history = not done,
      timeout = done and 3000 or false,
      -- nvim-notify: once the user dismisses it, replacing it fails ("No matching notification"): start anew.
      on_close = function()
        if progress.owner == this then
          progress.record = nil
        end
      end,
    })
    progress.owner = this
    progress.record = (ok and not done and type(rec) == "table") and rec or nil
  end)
end

return M

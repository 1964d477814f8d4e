-- Test double of nvim-notify for CI (the real plugin is used when LOFI_TEST_PLUGINS is set). Like nvim-notify it is
-- a callable TABLE (debug.getinfo() on it raises), shows `opts.title` as a title, returns a record `{id = n}` and
-- replaces the notification whose record (or id) is given as `opts.replace`; replacing one that is unknown or already
-- closed is an error that nvim-notify shows to the user, so it is recorded as one.
local M = { notes = {}, open = {}, errors = {}, on_close = {} }

local function level_number(level)
  if type(level) == "string" then
    return vim.log.levels[level:upper()] or vim.log.levels.INFO
  end
  return level or vim.log.levels.INFO
end

setmetatable(M, {
  __call = function(_, msg, level, opts)
    opts = opts or {}
    local replace = type(opts.replace) == "table" and opts.replace.id or opts.replace
    if replace ~= nil and not M.open[replace] then
      table.insert(M.errors, "Invalid notification to replace: " .. tostring(replace))
      return nil
    end
    local id = #M.notes + 1
    if replace ~= nil then
      M.open[replace] = nil
    end
    if opts.timeout ~= 0 then
      M.open[id] = true
    end
    local note = {
      id = id,
      msg = msg,
      level = level_number(level),
      title = opts.title,
      replace = replace,
      timeout = opts.timeout,
      hide_from_history = opts.hide_from_history,
    }
    table.insert(M.notes, note)
    M.on_close[id] = opts.on_close
    return { id = id }
  end,
})

--- The user closes every open notification (nvim-notify's dismiss()); their on_close callbacks run.
function M.dismiss()
  for id in pairs(M.open) do
    M.open[id] = nil
    if M.on_close[id] then
      M.on_close[id]()
    end
  end
end

--- What a user sees of note `n`: the title shown above (here: before) the message.
function M.shown(n)
  return n.title and (n.title .. ": " .. n.msg) or n.msg
end

return M

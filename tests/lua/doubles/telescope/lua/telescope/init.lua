-- Test double of telescope.nvim for CI (the real one is used when LOFI_TEST_PLUGINS is set). It keeps what lofi's
-- extension depends on and what broke against the real plugin: extensions load `telescope._extensions.<name>`
-- on first access; entries come from the finder's entry_maker; the default actions read the entry fields the way
-- Telescope does (<C-q> quickfix via path/filename/value and text, <C-v>/<C-x>/<C-t> open path/filename/value,
-- <Tab> marks entries for get_multi_selection()); `map()` and `action:replace()` override them. Tests drive the
-- open picker through `require("telescope").double`.
local M = {}

M.extensions = setmetatable({}, {
  __index = function(t, name)
    local exports = require("telescope._extensions." .. name)
    rawset(t, name, exports)
    return exports
  end,
})

function M.register_extension(ext)
  return ext.exports
end

M.double = {}

--- The picker on screen (nil when closed).
function M.double.current()
  return require("telescope.pickers")._current
end

--- Type a query into the prompt (filters entries by ordinal, like a substring sorter).
function M.double.type(query)
  local p = M.double.current()
  p.prompt = query
  p:_compute()
end

--- Press a key in the prompt: the picker's own mapping if it set one, else Telescope's default.
function M.double.press(key)
  local p = M.double.current()
  local fn = p.maps[key] or require("telescope.actions")._defaults[key]
  assert(fn, "no mapping for " .. key)
  fn(p.prompt_bufnr)
end

return M

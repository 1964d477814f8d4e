-- Test double of telescope.actions.state.
local M = {}

function M.get_current_picker(_)
  return require("telescope.pickers")._current
end

function M.get_selected_entry()
  local p = require("telescope.pickers")._current
  return p and p:get_selection()
end

return M

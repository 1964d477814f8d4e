-- Test double of telescope.finders.
local M = {}

function M.new_table(spec)
  return { results = spec.results, entry_maker = spec.entry_maker }
end

return M

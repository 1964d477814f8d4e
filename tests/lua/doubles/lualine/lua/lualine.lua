-- Test double of lualine.nvim for CI (the real one is used when LOFI_TEST_PLUGINS is set). What it keeps of the
-- real plugin: setup() requires every section's component module at once (at startup, before lofi is used), and
-- refresh() builds ONE string from the components' output and sets it as the window's 'statusline', so the text
-- is re-interpreted as statusline syntax (a lone "%" is E539, and after repeated failures lualine stops refreshing).
local M = { components = {}, failures = 0, stopped = false }

function M.setup(opts)
  M.components = {}
  for _, section in pairs((opts or {}).sections or {}) do
    for _, name in ipairs(section) do
      local class = require("lualine.components." .. name)
      table.insert(M.components, class({ name }))
    end
  end
  M.refresh()
end

function M.refresh()
  if M.stopped then
    return
  end
  local parts = {}
  for _, c in ipairs(M.components) do
    parts[#parts + 1] = "%#StatusLine# " .. c:update_status() .. " "
  end
  local ok = pcall(function()
    vim.wo.statusline = table.concat(parts) .. "%="
  end)
  if not ok then
    M.failures = M.failures + 1
    M.stopped = M.failures >= 3 -- lualine's timer_call gives up after 3 errors: the statusline freezes
  end
end

return M

-- lualine component: `sections = { lualine_x = { "lofi" } }`. Shows lofi's statusline text from cached state (no
-- RPC) and nothing while lofi is idle. Loaded only by lualine. It reads lofi's state only once lofi has been used
-- (lofi.state loaded): requiring lofi here would load the plugin's modules at startup, which lazy.nvim users with
-- `cmd = "Lofi"` expect not to happen.
local component = require("lualine.component"):extend()

function component:init(options)
  component.super.init(self, options)
end

--- lualine re-interprets what a component returns as 'statusline' syntax: a literal "%" must be "%%", else
--- "◌ 55%" is E539 and the whole statusline stops updating.
function component.escape(text)
  return (text:gsub("%%", "%%%%"))
end

function component:update_status()
  local state = package.loaded["lofi.state"]
  if not state then
    return "" -- lofi hasn't been used in this session
  end
  return component.escape(state.statusline(require("lofi.config").get().ui.icons))
end

return component

-- lualine component: `sections = { lualine_x = { "lofi" } }`. Shows require("lofi").statusline() (cached state,
-- no RPC) and nothing while lofi is idle. Loaded only by lualine.
local component = require("lualine.component"):extend()

function component:init(options)
  component.super.init(self, options)
end

function component:update_status()
  if not package.loaded["lofi"] then
    return "" -- lofi hasn't been used in this session: don't load it just for the statusline
  end
  return require("lofi").statusline()
end

return component

-- Test double of lualine.component: the class lofi's component extends (extend(), super.init, callable class).
local Component = {}
Component.__index = Component

function Component:init(options)
  self.options = options
end

function Component:update_status()
  return ""
end

function Component:extend()
  local class = setmetatable({}, {
    __index = self,
    __call = function(cls, options)
      local obj = setmetatable({}, { __index = cls })
      obj:init(options)
      return obj
    end,
  })
  class.super = self
  return class
end

return Component

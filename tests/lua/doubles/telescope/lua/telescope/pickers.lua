-- Test double of telescope.pickers (see telescope/init.lua in this folder).
local M = { _current = nil }

local Picker = {}
Picker.__index = Picker

function M.new(opts, spec)
  return setmetatable(
    { opts = opts, spec = spec, finder = spec.finder, prompt = "", cursor = 1, marked = {}, maps = {} },
    Picker
  )
end

-- Entries are made once per finder (marks stay on them while the query changes), then filtered by the query.
function Picker:_make_entries()
  self.all = {}
  for _, item in ipairs(self.finder.results) do
    local e = self.finder.entry_maker(item)
    if e then
      table.insert(self.all, e)
    end
  end
end

function Picker:_compute()
  self.entries = {}
  for _, e in ipairs(self.all) do
    if self.prompt == "" or e.ordinal:lower():find(self.prompt:lower(), 1, true) then
      table.insert(self.entries, e)
    end
  end
  self.cursor = math.max(1, math.min(self.cursor, #self.entries))
  local sel = self.entries[self.cursor]
  if sel and self.spec.previewer then
    -- Telescope previews the selection at once: a failing preview is an error the user sees.
    local buf = vim.api.nvim_create_buf(false, true)
    self.spec.previewer.define_preview({ state = { bufnr = buf } }, sel, {})
    vim.api.nvim_buf_delete(buf, { force = true })
  end
end

function Picker:find()
  require("telescope.actions")._reset()
  self.prompt_bufnr = vim.api.nvim_create_buf(false, true)
  vim.bo[self.prompt_bufnr].filetype = "TelescopePrompt"
  vim.api.nvim_win_set_buf(0, self.prompt_bufnr)
  M._current = self
  self:_make_entries()
  self:_compute()
  self.spec.attach_mappings(self.prompt_bufnr, function(_, key, fn)
    self.maps[key] = fn
  end)
end

function Picker:get_selection()
  return self.entries[self.cursor]
end

function Picker:get_multi_selection()
  local out = {}
  for _, e in ipairs(self.entries) do
    if self.marked[e] then
      out[#out + 1] = e
    end
  end
  return out
end

function Picker:toggle_selection()
  local e = self.entries[self.cursor]
  if e then
    self.marked[e] = not self.marked[e] or nil
  end
end

function Picker:_get_prompt()
  return self.prompt
end

function Picker:refresh(finder, opts)
  self.finder = finder or self.finder
  if not (opts and opts.reset_prompt == false) then
    self.prompt = ""
  end
  self.marked = {}
  self:_make_entries()
  self:_compute()
end

function Picker:close()
  if M._current == self then
    M._current = nil
  end
  if vim.api.nvim_buf_is_valid(self.prompt_bufnr) then
    vim.api.nvim_buf_delete(self.prompt_bufnr, { force = true })
  end
end

return M

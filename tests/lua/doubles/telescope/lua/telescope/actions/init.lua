-- Test double of telescope.actions: actions are callable objects whose :replace() holds for the open picker, and
-- the defaults read entries the way Telescope's do.
local M = {}

local replaced = {}

function M._reset()
  replaced = {}
end

local function action(name, fn)
  local a = setmetatable({}, {
    __call = function(_, bufnr)
      return (replaced[name] or fn)(bufnr)
    end,
  })
  function a:replace(f)
    replaced[name] = f
    return self
  end
  M[name] = a
  return a
end

local function picker()
  return require("telescope.pickers")._current
end

-- telescope.from_entry.path: path, else filename, else the value itself.
local function entry_path(e)
  local path = e.path or e.filename
  if path == nil then
    path = e.value
  end
  return path
end

action("close", function()
  picker():close()
end)

action("select_default", function()
  local e = picker():get_selection()
  M.close()
  vim.cmd.edit(vim.fn.fnameescape(entry_path(e)))
end)

local function open_with(cmd)
  return function()
    local e = picker():get_selection()
    local path = entry_path(e)
    M.close()
    if type(path) ~= "string" then
      error("telescope double: " .. cmd .. " of an entry without path/filename opens a junk buffer")
    end
    vim.cmd[cmd](vim.fn.fnameescape(path))
  end
end
action("select_horizontal", open_with("split"))
action("select_vertical", open_with("vsplit"))
action("select_tab", open_with("tabedit"))

action("send_to_qflist", function()
  local p = picker()
  local items = {}
  for _, e in ipairs(p.entries) do
    local text = e.text
    if not text then
      text = type(e.value) == "table" and e.value.text or e.value
    end
    items[#items + 1] = { filename = entry_path(e), lnum = e.lnum or 1, col = e.col or 1, text = text }
  end
  M.close()
  vim.fn.setqflist(items, " ") -- a table where a string belongs is E731, as with the real Telescope
  vim.cmd.copen()
end)

action("toggle_selection", function()
  local p = picker()
  p:toggle_selection()
  p.cursor = math.min(p.cursor + 1, #p.entries)
end)

action("preview_scrolling_down", function()
  picker().preview_scrolled = (picker().preview_scrolled or 0) + 1
end)

M._defaults = {
  ["<CR>"] = M.select_default,
  ["<C-x>"] = M.select_horizontal,
  ["<C-v>"] = M.select_vertical,
  ["<C-t>"] = M.select_tab,
  ["<C-q>"] = M.send_to_qflist,
  ["<Tab>"] = M.toggle_selection,
  ["<C-d>"] = M.preview_scrolling_down,
  ["<Esc>"] = M.close,
}

return M

-- Telescope front end for lofi's pickers (`:Telescope lofi tracks|prompts`). All logic (entries, display, preview,
-- actions) lives in lua/lofi/picker.lua; this file only wires it to Telescope. Loaded only by Telescope.
local has_telescope, telescope = pcall(require, "telescope")
if not has_telescope then
  error("lofi's Telescope extension requires telescope.nvim")
end

local pickers = require("telescope.pickers")
local finders = require("telescope.finders")
local previewers = require("telescope.previewers")
local actions = require("telescope.actions")
local action_state = require("telescope.actions.state")
local conf = require("telescope.config").values
local picker = require("lofi.picker")

--- Telescope entries. Track entries carry the cached file as `path`/`filename` and their display line as `text`,
--- so Telescope's own actions that read them (<C-q> quickfix, <M-q>) get strings, not the Track table.
local function finder_for(items, entry)
  return finders.new_table({
    results = items,
    entry_maker = function(item)
      local e = { value = item, display = entry.display(item), ordinal = entry.ordinal(item) }
      e.text = e.display
      if entry.path then
        e.path = entry.path(item)
        e.filename = e.path
        e.lnum = 1
      end
      return e
    end,
  })
end

--- The marked entries (<Tab>), else the one under the cursor.
local function selection(prompt_bufnr)
  local current = action_state.get_current_picker(prompt_bufnr)
  local marked = current and current:get_multi_selection() or {}
  if #marked > 0 then
    return vim.tbl_map(function(e)
      return e.value
    end, marked)
  end
  local selected = action_state.get_selected_entry()
  return selected and { selected.value } or {}
end

---@param spec table {title, items, entry, preview, keymaps, item_actions, list_actions?, refetch?, on_split?}
local function open(spec, opts)
  pickers
    .new(opts, {
      prompt_title = spec.title,
      finder = finder_for(spec.items, spec.entry),
      sorter = conf.generic_sorter(opts),
      previewer = previewers.new_buffer_previewer({
        title = spec.title,
        define_preview = function(self, e)
          vim.api.nvim_buf_set_lines(self.state.bufnr, 0, -1, false, spec.preview(e.value))
        end,
      }),
      attach_mappings = function(prompt_bufnr, map)
        for _, km in ipairs(spec.keymaps) do
          local function run()
            local chosen = selection(prompt_bufnr)
            if #chosen == 0 then
              return
            end
            local arg = spec.list_actions and chosen or chosen[1]
            if km.action == "delete" and spec.refetch then
              -- Stay in the picker: refresh its results in place, keeping the query.
              return spec.item_actions.delete(arg, function(err)
                if err and err.cancelled then
                  return
                end
                spec.refetch(function(items)
                  local current = action_state.get_current_picker(prompt_bufnr)
                  if current then
                    current:refresh(finder_for(items, spec.entry), { reset_prompt = false })
                  end
                end)
              end)
            end
            if km.key == "<CR>" or km.action == "edit" then
              actions.close(prompt_bufnr)
            end
            spec.item_actions[km.action](arg)
          end
          if km.key == "<CR>" then
            actions.select_default:replace(run)
          else
            map({ "i", "n" }, km.key, run)
          end
        end
        if spec.on_split then
          -- A track is audio: <C-x>/<C-v>/<C-t> open its details as text instead of the binary file.
          for action, cmd in pairs({
            select_horizontal = "split",
            select_vertical = "vsplit",
            select_tab = "tabnew",
          }) do
            actions[action]:replace(function()
              local chosen = selection(prompt_bufnr)
              actions.close(prompt_bufnr)
              for _, item in ipairs(chosen) do
                spec.on_split(item, cmd)
              end
            end)
          end
        end
        return true
      end,
    })
    :find()
end

local function tracks(opts)
  opts = opts or {}
  local function refetch(fn)
    picker.fetch_tracks(opts, fn)
  end
  refetch(function(items)
    if #items == 0 then
      return require("lofi.ui").notify(picker.EMPTY_HINT)
    end
    open({
      title = "lofi tracks",
      items = items,
      entry = {
        display = picker.track_display,
        ordinal = picker.track_ordinal,
        path = function(t)
          return t.path
        end,
      },
      preview = picker.track_preview,
      keymaps = picker.track_keymaps,
      item_actions = picker.track_actions,
      list_actions = true,
      refetch = refetch,
      on_split = picker.open_track_info,
    }, opts)
  end)
end

local function prompts(opts)
  opts = opts or {}
  picker.fetch_tracks(opts, function(items)
    local entries = picker.prompt_entries(items, require("lofi.config").get().prefetch.presets)
    open({
      title = "lofi prompts",
      items = entries,
      entry = {
        display = picker.prompt_display,
        ordinal = function(e)
          return e.prompt
        end,
      },
      preview = picker.prompt_preview,
      keymaps = picker.prompt_keymaps,
      item_actions = picker.prompt_actions,
    }, opts)
  end)
end

return telescope.register_extension({
  exports = { lofi = tracks, tracks = tracks, prompts = prompts },
})

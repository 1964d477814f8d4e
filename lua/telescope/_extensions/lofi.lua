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

local function open(title, items, entry, preview, keymaps, item_actions, opts, refresh)
  pickers
    .new(opts, {
      prompt_title = title,
      finder = finders.new_table({
        results = items,
        entry_maker = function(item)
          return { value = item, display = entry.display(item), ordinal = entry.ordinal(item) }
        end,
      }),
      sorter = conf.generic_sorter(opts),
      previewer = previewers.new_buffer_previewer({
        title = title,
        define_preview = function(self, e)
          vim.api.nvim_buf_set_lines(self.state.bufnr, 0, -1, false, preview(e.value))
        end,
      }),
      attach_mappings = function(prompt_bufnr, map)
        for _, km in ipairs(keymaps) do
          local function run()
            local selected = action_state.get_selected_entry()
            if not selected then
              return
            end
            if km.key == "<CR>" or km.action == "edit" then
              actions.close(prompt_bufnr)
            end
            item_actions[km.action](selected.value, function(err)
              if not err and km.action == "delete" and refresh then
                actions.close(prompt_bufnr)
                refresh()
              end
            end)
          end
          if km.key == "<CR>" then
            actions.select_default:replace(run)
          else
            map({ "i", "n" }, km.key, run)
          end
        end
        return true
      end,
    })
    :find()
end

local function tracks(opts)
  opts = opts or {}
  picker.fetch_tracks(opts, function(items)
    open(
      "lofi tracks",
      items,
      { display = picker.track_display, ordinal = picker.track_ordinal },
      picker.track_preview,
      picker.track_keymaps,
      picker.track_actions,
      opts,
      function()
        tracks(opts)
      end
    )
  end)
end

local function prompts(opts)
  opts = opts or {}
  picker.fetch_tracks(opts, function(items)
    local entries = picker.prompt_entries(items, require("lofi.config").get().prefetch.presets)
    open("lofi prompts", entries, {
      display = picker.prompt_display,
      ordinal = function(e)
        return e.prompt
      end,
    }, picker.prompt_preview, picker.prompt_keymaps, picker.prompt_actions, opts)
  end)
end

return telescope.register_extension({
  exports = { lofi = tracks, tracks = tracks, prompts = prompts },
})

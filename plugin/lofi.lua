-- lofi: registers :Lofi and the <Plug>(lofi-...) mappings. Nothing else happens at startup: the lofi modules are
-- required inside the command and mapping bodies, so the daemon starts only on first use.
if vim.g.loaded_lofi or vim.g.lofi_disable then
  return
end
vim.g.loaded_lofi = true
if vim.fn.has("nvim-0.10") == 0 then
  vim.api.nvim_create_user_command("Lofi", function()
    vim.notify("lofi needs Neovim 0.10 or newer", vim.log.levels.ERROR)
  end, { nargs = "*" })
  return
end

vim.api.nvim_create_user_command("Lofi", function(opts)
  require("lofi.commands").run(opts)
end, {
  nargs = "*",
  bang = true, -- :Lofi! cache clear / :Lofi! download: act without asking
  range = false,
  desc = "lofi: generate and play local AI lofi music",
  complete = function(arglead, cmdline, cursorpos)
    return require("lofi.commands").complete(arglead, cmdline, cursorpos)
  end,
})

-- <Plug> mappings; lofi never maps keys itself (see :h lofi-mappings).
for name, fn in pairs({
  toggle = "toggle",
  generate = "generate_input",
  stop = "stop",
  skip = "skip",
  pause = "pause",
  resume = "resume",
  ["volume-up"] = "volume_up",
  ["volume-down"] = "volume_down",
  tracks = "tracks",
  prompts = "prompts",
  status = "status",
}) do
  -- nvim_set_keymap rather than vim.keymap.set: it doesn't load another Lua module at startup.
  vim.api.nvim_set_keymap("n", "<Plug>(lofi-" .. name .. ")", "", {
    desc = "lofi: " .. name,
    callback = function()
      require("lofi")[fn]()
    end,
  })
end

-- Drives the real daemon through Neovim's own LSP JSON-RPC client (vim.lsp.rpc.start) to prove that the
-- framing and message shapes are compatible. Writes one JSON line of results to stdout.
local python, pythonpath = arg[1], arg[2]
local out = { notifications = {} }
local done = false

local client = vim.lsp.rpc.start({ python, "-m", "lofi_daemon" }, {
  notification = function(method, params)
    table.insert(out.notifications, method)
    if method == "generation_complete" then
      out.complete = params
      done = true
    end
  end,
  on_exit = function(code)
    out.exit_code = code
  end,
}, { env = { PYTHONPATH = pythonpath } })

client.request("initialize", { client_info = { name = "nvim-test" } }, function(err, result)
  out.init_err, out.server = err, result and result.server
end)
client.request("generate", { prompt = "lsp rpc", duration_sec = 1, backend = "tone" }, function(err, result)
  out.gen_err, out.generate = err, result
end)
client.request("no_such_method", {}, function(err)
  out.unknown = err
end)
-- ceilings only (a loaded machine is slow): each wait returns as soon as its condition holds
vim.wait(120000, function()
  return done
end, 20)
client.request("shutdown", nil, function(_, result)
  out.shutdown = result
end)
vim.wait(120000, function()
  return out.exit_code ~= nil
end, 20)
io.stdout:write(vim.json.encode(out) .. "\n")

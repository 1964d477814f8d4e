-- The daemon client: spawns the daemon lazily on the first request, sends `initialize`, routes replies to
-- callbacks and notifications to state/events/UI, restarts after a crash (backoff, bounded) and shuts the daemon
-- down on VimLeavePre.
local M = {}

local rpc = require("lofi.rpc")
local state = require("lofi.state")
local events = require("lofi.events")

local uv = vim.uv or vim.loop

local PROTOCOL_VERSION = 1
-- Client-side error codes (outside the daemon's range) for failures that never reached the daemon.
M.E_DAEMON_UNAVAILABLE = -32099
M.E_DAEMON_EXITED = -32098
M.E_TIMEOUT = -32097

local S = {
  transport = nil, ---@type lofi.rpc.Transport|nil
  ready = false, -- initialize answered
  next_id = 0,
  pending = {}, -- id -> { method, cb }
  backlog = {}, -- requests waiting for initialize: { method, params, cb }
  stopping = false, -- an exit we asked for
  crashes = 0,
  started_at = 0,
  stderr = {}, -- last lines of the daemon's stderr, for error messages
  restart_timer = nil,
  init_result = nil,
  augroup = nil,
  notification_handler = nil,
}

local function cfg()
  return require("lofi.config").get()
end

function M.is_running()
  return S.transport ~= nil and not S.transport.closed
end

function M.is_ready()
  return M.is_running() and S.ready
end

function M.pid()
  return S.transport and S.transport.pid
end

--- The `initialize` result (server, capabilities, backends, log_file, cache_dir) or nil.
function M.server_info()
  return S.init_result
end

--- Replace the function that receives every notification (method, params); by default lofi.notify.handle.
function M.on_notification(fn)
  S.notification_handler = fn
end

local function stderr_tail()
  return table.concat(S.stderr, "\n", math.max(1, #S.stderr - 9), #S.stderr)
end

-- The last thing the daemon said on stderr, for a one-line message (the whole tail is in :Lofi log).
local function stderr_last()
  return S.stderr[#S.stderr]
end

local function send_request(method, params, cb)
  S.next_id = S.next_id + 1
  local id = S.next_id
  S.pending[id] = { method = method, cb = cb }
  local msg = { jsonrpc = "2.0", id = id, method = method }
  if params ~= nil then
    msg.params = next(params) == nil and vim.empty_dict() or params
  end
  if not S.transport:send(msg) then
    S.pending[id] = nil
    cb({ code = M.E_DAEMON_UNAVAILABLE, message = "cannot write to the lofi daemon" }, nil)
  end
  return id
end

local function fail_all(err)
  local pending, backlog = S.pending, S.backlog
  S.pending, S.backlog = {}, {}
  for _, p in pairs(pending) do
    pcall(p.cb, err, nil)
  end
  for _, b in ipairs(backlog) do
    pcall(b.cb, err, nil)
  end
end

local function handle_message(msg)
  if msg.id ~= nil and msg.method == nil then
    local p = S.pending[msg.id]
    S.pending[msg.id] = nil
    if p then
      local ok, err = pcall(p.cb, msg.error, msg.result)
      if not ok then
        require("lofi.ui").error("error in the callback of " .. p.method .. ": " .. tostring(err))
      end
    end
  elseif msg.method and msg.id == nil then
    local handler = S.notification_handler or require("lofi.notify").handle
    local ok, err = pcall(handler, msg.method, msg.params or {})
    if not ok then
      require("lofi.ui").error("error handling " .. msg.method .. ": " .. tostring(err))
    end
  elseif msg.method and msg.id ~= nil then
    -- The daemon never calls the client; answer politely so it never waits.
    S.transport:send({
      jsonrpc = "2.0",
      id = msg.id,
      error = { code = -32601, message = "method not found: " .. msg.method },
    })
  end
end

local schedule_restart
local announce_slow_start

local function on_exit(transport, code, signal)
  if S.transport ~= transport then
    return -- an old process
  end
  local expected = S.stopping
  S.transport, S.ready, S.stopping = nil, false, false
  local tail = stderr_tail()
  local reason = signal ~= 0 and ("signal " .. signal) or ("exit code " .. code)
  fail_all({
    code = M.E_DAEMON_EXITED,
    message = "the lofi daemon exited (" .. reason .. ")" .. (tail ~= "" and (":\n" .. tail) or ""),
  })
  state.current.daemon.running = false
  state.current.daemon.pid = nil
  require("lofi.notify").state_cleared() -- nothing plays or generates now: the statuslines must say so at once
  local crashed = not expected and (code ~= 0 or signal ~= 0)
  -- A daemon that stayed up for a minute had a one-off crash: start counting again.
  if crashed and uv.now() - S.started_at > 60000 then
    S.crashes = 0
  end
  local restarting = crashed and cfg().daemon.auto_restart and S.crashes < cfg().daemon.max_restarts
  events.fire("LofiDaemonExit", {
    code = code,
    signal = signal,
    expected = expected,
    restarting = restarting,
    attempt = restarting and (S.crashes + 1) or nil,
  })
  local lost = require("lofi.jobs").on_daemon_exit(restarting)
  lost = lost and ("; " .. lost) or ""
  if crashed then
    -- One line each (a longer message would wait for Enter, and so would the restart behind it).
    if restarting then
      S.crashes = S.crashes + 1
      require("lofi.ui").warn(
        string.format(
          "the daemon died (%s); restarting (attempt %d of %d)%s",
          reason,
          S.crashes,
          cfg().daemon.max_restarts,
          lost
        )
      )
      schedule_restart(500 * 2 ^ (S.crashes - 1))
    else
      local last = stderr_last()
      require("lofi.ui").error(
        string.format(
          "the daemon died (%s)%s; :Lofi log shows why, :Lofi daemon start tries again%s",
          reason,
          last and (": " .. last) or "",
          lost
        )
      )
    end
  elseif lost ~= "" then
    -- A stop or restart you asked for also ends the daemon's queue.
    require("lofi.ui").info(lost:sub(3))
  end
  S.stderr = {}
end

-- A cold start takes seconds (Python imports): say so once if the daemon is not up after a moment, so a first
-- `:Lofi generate` is not met with silence. Crash restarts say so themselves.
M.SLOW_START_MS = 800
announce_slow_start = function(transport)
  vim.defer_fn(function()
    if S.transport == transport and not S.ready then
      require("lofi.ui").info("starting lofi…")
    end
  end, M.SLOW_START_MS)
end

local function ensure_autocmds()
  if S.augroup then
    return
  end
  S.augroup = vim.api.nvim_create_augroup("lofi_client", { clear = true })
  vim.api.nvim_create_autocmd("VimLeavePre", {
    group = S.augroup,
    callback = function()
      M.stop({ wait_ms = 1000 })
    end,
  })
end

--- Start the daemon if it is not running. Returns true when a daemon is (being) started.
---@return boolean ok, string|nil err
function M.start(is_restart)
  if M.is_running() then
    return true
  end
  if S.restart_timer then
    S.restart_timer:stop()
    S.restart_timer:close()
    S.restart_timer = nil
  end
  local cmd, err = require("lofi.config").daemon_cmd({ serve = true })
  if not cmd then
    return false, err
  end
  local env = nil
  if next(cfg().daemon.env) ~= nil then
    env = cfg().daemon.env
  end
  S.stderr = {}
  local transport
  local spawn_err
  transport, spawn_err = rpc.spawn(cmd, { env = env }, {
    on_message = handle_message,
    on_stderr = function(text)
      for line in text:gmatch("[^\r\n]+") do
        S.stderr[#S.stderr + 1] = line
      end
      while #S.stderr > 50 do
        table.remove(S.stderr, 1)
      end
    end,
    on_error = function(e)
      S.stderr[#S.stderr + 1] = "(protocol) " .. e
    end,
    on_exit = function(code, signal)
      on_exit(transport, code, signal)
    end,
  })
  if not transport then
    return false, "cannot start the daemon `" .. table.concat(cmd, " ") .. "`: " .. tostring(spawn_err)
  end
  ensure_autocmds()
  S.transport, S.ready, S.stopping, S.started_at = transport, false, false, uv.now()
  state.current.daemon.running = true
  state.current.daemon.pid = transport.pid
  if not is_restart then
    announce_slow_start(transport)
  end
  send_request("initialize", {
    client_info = { name = "lofi.nvim", version = vim.version and tostring(vim.version()) or nil },
    protocol_version = PROTOCOL_VERSION,
    options = require("lofi.config").initialize_options(),
  }, function(ierr, result)
    if ierr and ierr.code == M.E_DAEMON_EXITED then
      return -- died during the handshake: on_exit reports it and restarts; nothing to refuse
    end
    if ierr then
      local ui = require("lofi.ui")
      local refused =
        { code = ierr.code, message = "the daemon refused initialize: " .. ui.format_error(ierr) }
      local backlog = S.backlog
      S.backlog = {}
      if #backlog == 0 then
        ui.error(refused.message)
      end
      for _, b in ipairs(backlog) do
        pcall(b.cb, refused, nil)
      end
      M.stop()
      return
    end
    S.ready = true
    S.init_result = result
    if result.protocol_version and result.protocol_version ~= PROTOCOL_VERSION then
      require("lofi.ui").warn(
        string.format(
          "the daemon speaks protocol %s, this plugin %d: update both (./scripts/setup)",
          tostring(result.protocol_version),
          PROTOCOL_VERSION
        )
      )
    end
    local d = state.current.daemon
    d.log_file = result.log_file
    d.cache_dir = result.cache_dir
    d.version = result.server and result.server.version
    d.restarts = S.crashes
    events.fire("LofiDaemonStarted", { pid = transport.pid, server = result.server, restarts = S.crashes })
    local backlog = S.backlog
    S.backlog = {}
    for _, b in ipairs(backlog) do
      send_request(b.method, b.params, b.cb)
    end
    require("lofi.jobs").on_daemon_started()
  end)
  return true
end

schedule_restart = function(delay_ms)
  local timer = uv.new_timer()
  S.restart_timer = timer
  timer:start(
    delay_ms,
    0,
    vim.schedule_wrap(function()
      if S.restart_timer == timer then
        S.restart_timer = nil
        timer:close()
        local ok, err = M.start(true)
        if not ok then
          require("lofi.ui").error(err)
        end
      end
    end)
  )
end

--- Send a request; starts the daemon if needed. cb(err, result) runs on the main loop.
---@param method string
---@param params? table
---@param cb? fun(err: table|nil, result: any)
function M.request(method, params, cb)
  cb = cb
    or function(err)
      -- A daemon exit is reported once, by on_exit, not once per request it took down.
      if err and err.code ~= M.E_DAEMON_EXITED then
        require("lofi.ui").error(require("lofi.ui").format_error(err))
      end
    end
  local ok, err = M.start()
  if not ok then
    vim.schedule(function()
      cb({ code = M.E_DAEMON_UNAVAILABLE, message = err }, nil)
    end)
    return
  end
  if S.ready then
    send_request(method, params, cb)
  else
    S.backlog[#S.backlog + 1] = { method = method, params = params, cb = cb }
  end
end

--- Blocking request with a timeout, for places that must answer at once (completion, tests). Never starts
--- the daemon unless `opts.start`.
---@return table|nil err, any result
function M.request_sync(method, params, timeout_ms, opts)
  if not M.is_running() and not (opts and opts.start) then
    return { code = M.E_DAEMON_UNAVAILABLE, message = "the lofi daemon is not running" }, nil
  end
  local done, rerr, rres = false, nil, nil
  M.request(method, params, function(e, r)
    done, rerr, rres = true, e, r
  end)
  if not vim.wait(timeout_ms or cfg().daemon.request_timeout_ms, function()
    return done
  end, 10) then
    return { code = M.E_TIMEOUT, message = method .. " timed out" }, nil
  end
  return rerr, rres
end

--- Stop the daemon: `shutdown`, then close stdin; with wait_ms, wait for the exit and kill it if it hangs.
---@param opts? {wait_ms?: integer}
function M.stop(opts)
  if S.restart_timer then
    S.restart_timer:stop()
    S.restart_timer:close()
    S.restart_timer = nil
  end
  local t = S.transport
  if not t or t.closed then
    return
  end
  S.stopping = true
  if S.ready then
    send_request("shutdown", nil, function() end)
  end
  t:close_stdin()
  if opts and opts.wait_ms then
    vim.wait(opts.wait_ms, function()
      return t.closed
    end, 10)
    if not t.closed then
      t:kill(15)
    end
  end
end

--- Stop then start; resets the crash counter (an explicit restart is a fresh start).
function M.restart()
  local t = S.transport
  M.stop({ wait_ms = 2000 })
  if t then
    vim.wait(500, function()
      return S.transport == nil
    end, 10)
  end
  S.crashes = 0
  return M.start()
end

return M

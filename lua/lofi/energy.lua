-- Editor-adaptive energy for the radio (opt-in: `radio.adaptive = true` or `:Lofi radio adaptive=true`).
-- Nothing here exists until a radio with adaptive on starts: then one autocmd group (a counter per typed
-- character, a counter per mode change) and one timer. Every `radio.energy_interval_ms` the timer turns the
-- counts and the error diagnostics into an energy 0–1, smooths it, and sends `radio_steer {energy}` when it moved
-- by at least MIN_CHANGE. When the radio stops, the group and the timer are deleted: no cost left behind.
local M = {}

local uv = vim.uv or vim.loop

M.SMOOTHING = 0.4 -- weight of the new measurement in the running energy
M.MIN_CHANGE = 0.05 -- smaller moves are not sent
M.FAST_TYPING = 6 -- characters per second that count as full typing energy
M.BUSY_MODES = 0.5 -- mode changes per second that count as full
M.MANY_ERRORS = 10 -- error diagnostics that pull the energy down fully (debugging wants calm)

local S = { group = nil, timer = nil, keys = 0, modes = 0, energy = nil, sent = nil }

--- Energy 0–1 from one interval's counts: typing and switching modes raise it, errors lower it.
---@param keys integer characters typed in the interval
---@param modes integer mode changes in the interval
---@param errors integer error diagnostics now
---@param interval_sec number
---@return number
function M.measure(keys, modes, errors, interval_sec)
  local typing = math.min(keys / interval_sec / M.FAST_TYPING, 1)
  local switching = math.min(modes / interval_sec / M.BUSY_MODES, 1)
  local trouble = math.min(errors / M.MANY_ERRORS, 1)
  return math.max(0, math.min(1, 0.25 + 0.55 * typing + 0.2 * switching - 0.15 * trouble))
end

--- The running energy after one more measurement (exponential smoothing; the first one is taken as is).
function M.smooth(previous, measured)
  if previous == nil then
    return measured
  end
  return previous + M.SMOOTHING * (measured - previous)
end

local function errors_now()
  local ok, counts = pcall(vim.diagnostic.count, nil, { severity = vim.diagnostic.severity.ERROR })
  if not ok or type(counts) ~= "table" then
    return 0
  end
  local n = 0
  for _, c in pairs(counts) do
    n = n + c
  end
  return n
end

--- One interval is over: measure, smooth, maybe send. Public for tests (which drive it without a timer).
---@param interval_sec number
---@return number energy, boolean sent
function M.tick(interval_sec)
  local measured = M.measure(S.keys, S.modes, errors_now(), interval_sec)
  S.keys, S.modes = 0, 0
  S.energy = M.smooth(S.energy, measured)
  local energy = math.floor(S.energy * 1000 + 0.5) / 1000
  if S.sent ~= nil and math.abs(energy - S.sent) < M.MIN_CHANGE then
    return energy, false
  end
  S.sent = energy
  require("lofi.client").request("radio_steer", { energy = energy }, function() end)
  return energy, true
end

function M.active()
  return S.group ~= nil
end

local function stop()
  if S.timer then
    S.timer:stop()
    S.timer:close()
  end
  if S.group then
    pcall(vim.api.nvim_del_augroup_by_id, S.group)
  end
  S = { group = nil, timer = nil, keys = 0, modes = 0, energy = nil, sent = nil }
end

--- Start (on = true) or stop following the editor. `opts.timer = false` leaves the timer out (tests tick).
---@param on boolean
---@param opts? {timer?: boolean}
function M.follow(on, opts)
  stop()
  if not on then
    return
  end
  S.group = vim.api.nvim_create_augroup("lofi_radio_energy", { clear = true })
  vim.api.nvim_create_autocmd("InsertCharPre", {
    group = S.group,
    callback = function()
      S.keys = S.keys + 1
    end,
  })
  vim.api.nvim_create_autocmd("ModeChanged", {
    group = S.group,
    callback = function()
      S.modes = S.modes + 1
    end,
  })
  if opts and opts.timer == false then
    return
  end
  local ms = require("lofi.config").get().radio.energy_interval_ms
  S.timer = uv.new_timer()
  S.timer:start(
    ms,
    ms,
    vim.schedule_wrap(function()
      if S.group then
        M.tick(ms / 1000)
      end
    end)
  )
end

--- Counters as they are (for tests and :checkhealth).
function M.counts()
  return { keys = S.keys, modes = S.modes, energy = S.energy, sent = S.sent }
end

return M

-- User autocmd events: every daemon notification becomes `User Lofi<Name>` with the notification params as `data`.
local M = {}

--- Notification method -> User event pattern.
M.by_notification = {
  generation_started = "LofiGenerationStarted",
  generation_progress = "LofiGenerationProgress",
  generation_complete = "LofiGenerationComplete",
  generation_error = "LofiGenerationError",
  generation_cancelled = "LofiGenerationCancelled",
  download_progress = "LofiDownloadProgress",
  playback_started = "LofiPlaybackChanged",
  playback_paused = "LofiPlaybackChanged",
  playback_resumed = "LofiPlaybackChanged",
  playback_ended = "LofiPlaybackChanged",
  playback_position = "LofiPlaybackPosition",
  radio_started = "LofiRadioChanged",
  radio_stopped = "LofiRadioChanged",
  radio_window = "LofiRadioWindow",
}

--- Every event lofi fires (documented in :h lofi-events).
M.all = {
  "LofiDaemonStarted",
  "LofiDaemonExit",
  "LofiGenerationStarted",
  "LofiGenerationProgress",
  "LofiGenerationComplete",
  "LofiGenerationError",
  "LofiGenerationCancelled",
  "LofiDownloadProgress",
  "LofiPlaybackChanged",
  "LofiPlaybackPosition",
  "LofiRadioChanged",
  "LofiRadioWindow",
}

--- Fire `User <pattern>` with data; a failing user handler is reported, never breaks lofi.
---@param pattern string
---@param data? table
function M.fire(pattern, data)
  local ok, err =
    pcall(vim.api.nvim_exec_autocmds, "User", { pattern = pattern, data = data or {}, modeline = false })
  if not ok then
    vim.notify("lofi: error in a User " .. pattern .. " autocmd: " .. tostring(err), vim.log.levels.WARN)
  end
end

return M

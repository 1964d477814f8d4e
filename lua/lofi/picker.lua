-- Pickers for cached tracks and prompts. The entries, display text, preview lines and actions are plain functions
-- here; Telescope (lua/telescope/_extensions/lofi.lua) and vim.ui.select are only two front ends for them.
local M = {}

local function fmt_time(sec)
  return require("lofi.state").format_time(sec)
end

local function fmt_date(ts)
  ts = tonumber(ts)
  return ts and os.date("%Y-%m-%d %H:%M", math.floor(ts)) or "?"
end

--- One line for a track: "a1b2c3d4  0:30  musicgen  2026-11-22 10:00  ★ rainy night jazz".
---@param t table Track
---@return string
function M.track_display(t)
  return string.format(
    "%s  %s  %-8s  %s  %s%s",
    tostring(t.track_id or ""):sub(1, 8),
    fmt_time(t.duration_sec),
    t.backend or "?",
    fmt_date(t.created_at),
    t.favourite and "★ " or "",
    t.prompt or ""
  )
end

--- Text a fuzzy finder matches against.
function M.track_ordinal(t)
  return table.concat({ t.track_id or "", t.prompt or "", t.backend or "" }, " ")
end

--- "never", "once", "2 times": how often a track was heard (the daemon counts every start, loops included).
---@param n integer|nil
---@return string
function M.times_played(n)
  n = tonumber(n) or 0
  if n <= 0 then
    return "never"
  end
  return n == 1 and "once" or (n .. " times")
end

--- Preview lines: prompt, seed, params, duration, generation time and the rest of the record.
---@param t table Track
---@return string[]
function M.track_preview(t)
  local lines = {
    "Prompt:     " .. tostring(t.prompt or ""),
    "Track id:   " .. tostring(t.track_id or ""),
    "Backend:    "
      .. tostring(t.backend or "?")
      .. (t.model_version and (" (" .. t.model_version .. ")") or ""),
    "Seed:       " .. tostring(t.seed or "?"),
    "Duration:   " .. fmt_time(t.duration_sec),
    "Generated:  " .. (t.generation_time_sec and string.format("in %.1f s", t.generation_time_sec) or "?"),
    "Created:    " .. fmt_date(t.created_at),
    "Played:     " .. M.times_played(t.play_count) .. (t.last_played and (", last " .. fmt_date(
      t.last_played
    )) or ""),
    "Favourite:  " .. (t.favourite and "yes" or "no"),
    "Format:     " .. tostring(t.format or "?") .. (t.sample_rate and (", " .. t.sample_rate .. " Hz") or ""),
    "Path:       " .. tostring(t.path or "?"),
  }
  if type(t.params) == "table" and next(t.params) then
    lines[#lines + 1] = "Params:"
    local keys = vim.tbl_keys(t.params)
    table.sort(keys)
    for _, k in ipairs(keys) do
      local v = t.params[k]
      lines[#lines + 1] =
        string.format("  %-16s %s", k, type(v) == "table" and vim.json.encode(v) or tostring(v))
    end
  end
  return lines
end

--- The generate request that reproduces a track (same prompt, seed, backend and params).
function M.regenerate_request(t)
  local req = {}
  if type(t.params) == "table" then
    for k, v in pairs(t.params) do
      req[k] = v
    end
  end
  req.prompt = t.prompt
  req.seed = t.seed
  req.backend = t.backend
  req.duration_sec = req.duration_sec or t.duration_sec
  return req
end

--- Ask before something that cannot be undone. vim.fn.confirm: synchronous, so it also works from inside an open
--- Telescope prompt, and every UI shows it.
---@param question string
---@return boolean
function M.confirm(question)
  return vim.fn.confirm(question, "&Yes\n&No", 2, "Question") == 1
end

--- A seed other than `old`: the daemon caches by (request, seed), so the same seed would only replay the cached
--- track.
function M.new_seed(old)
  local seed = math.floor((vim.uv or vim.loop).hrtime() / 1000) % 4294967296
  if seed == old then
    seed = (seed + 1) % 4294967296
  end
  return seed
end

local function run_all(tracks, each, done)
  local left, first_err = #tracks, nil
  if left == 0 then
    return done and done(nil, {})
  end
  for _, t in ipairs(tracks) do
    each(t, function(err)
      first_err = first_err or err
      left = left - 1
      if left == 0 and done then
        done(first_err, tracks)
      end
    end)
  end
end

-- A Track or a list of Tracks -> a list.
local function as_list(tracks)
  return tracks.track_id and { tracks } or tracks
end

--- Track actions, by name. Each takes a Track or a list of Tracks (the picker's selection) and an optional
--- callback run after the daemon answered for all of them.
M.track_actions = {
  play = function(tracks, done)
    tracks = as_list(tracks)
    require("lofi").play(tracks[1].track_id, done)
  end,
  playlist_add = function(tracks, done)
    tracks = as_list(tracks)
    run_all(tracks, function(t, one_done)
      require("lofi").playlist_add(t.track_id, function(err, res)
        local ui = require("lofi.ui")
        if err then
          ui.error(ui.format_error(err))
        else
          ui.notify("added " .. t.track_id .. " to the playlist")
        end
        one_done(err, res)
      end)
    end, done)
  end,
  delete = function(tracks, done)
    tracks = as_list(tracks)
    local question = #tracks == 1
        and string.format(
          "Delete “%s” (%s) from the cache?",
          tostring(tracks[1].prompt),
          tracks[1].track_id
        )
      or string.format("Delete %d tracks from the cache?", #tracks)
    if not M.confirm(question) then
      return done and done({ message = "cancelled", cancelled = true })
    end
    run_all(tracks, function(t, one_done)
      require("lofi.client").request("cache_delete", { track_id = t.track_id }, function(err, res)
        local ui = require("lofi.ui")
        if err then
          ui.error(ui.format_error(err))
        else
          require("lofi.state").current.tracks[t.track_id] = nil
          ui.notify("deleted " .. t.track_id)
        end
        one_done(err, res)
      end)
    end, done)
  end,
  yank = function(tracks, done)
    tracks = as_list(tracks)
    local ids = table.concat(
      vim.tbl_map(function(t)
        return t.track_id
      end, tracks),
      "\n"
    )
    vim.fn.setreg('"', ids)
    pcall(vim.fn.setreg, "+", ids)
    require("lofi.ui").notify("yanked " .. ids:gsub("\n", ", "))
    if done then
      done(nil, ids)
    end
  end,
  regenerate = function(tracks, done)
    tracks = as_list(tracks)
    run_all(tracks, function(t, one_done)
      local req = M.regenerate_request(t)
      req.seed = M.new_seed(t.seed)
      require("lofi").generate(req, one_done)
    end, done)
  end,
  -- A variation of each ACE-Step track (:Lofi vary): a new seed mixed into its own noise.
  vary = function(tracks, done)
    tracks = as_list(tracks)
    run_all(tracks, function(t, one_done)
      require("lofi").edit("retake", t.track_id, { seed = M.new_seed(t.seed) }, one_done)
    end, done)
  end,
  -- Toggle each track's favourite mark (favourites are never evicted nor cleared).
  favourite = function(tracks, done)
    tracks = as_list(tracks)
    run_all(tracks, function(t, one_done)
      require("lofi").favourite(t.track_id, function(err, res)
        local ui = require("lofi.ui")
        if err then
          ui.error(ui.format_error(err))
        else
          t.favourite = res and res.favourite
          ui.info(
            string.format("%s %s", t.favourite and "★ favourite:" or "no longer a favourite:", t.track_id)
          )
        end
        one_done(err, res)
      end, { favourite = not t.favourite })
    end, done)
  end,
}

--- The keys Telescope maps to the actions, and the labels of the vim.ui.select action menu. <C-d>/<C-u> stay
--- Telescope's preview scrolling; <C-q>, <C-v>, <C-x>, <C-t> keep their Telescope meaning (see the extension).
M.track_keymaps = {
  { key = "<CR>", action = "play", label = "Play" },
  { key = "<C-a>", action = "playlist_add", label = "Add to playlist" },
  { key = "<M-d>", action = "delete", label = "Delete from cache" },
  { key = "<C-y>", action = "yank", label = "Yank track id" },
  { key = "<C-s>", action = "regenerate", label = "Regenerate (new seed, same settings)" },
  { key = "<M-f>", action = "favourite", label = "Toggle favourite" },
  { key = "<M-v>", action = "vary", label = "Variation (ACE-Step tracks, :Lofi vary)" },
}

--- Shown instead of an empty picker.
M.EMPTY_HINT = "no cached tracks yet: try :Lofi generate"

--- Lines describing a track, in a scratch buffer opened with `cmd` ("split", "vsplit", "tabnew"): what Telescope's
--- <C-x>/<C-v>/<C-t> open for a track (the audio file itself is not text).
function M.open_track_info(t, cmd)
  vim.cmd(cmd)
  local buf = vim.api.nvim_create_buf(false, true)
  vim.api.nvim_buf_set_lines(buf, 0, -1, false, M.track_preview(t))
  vim.bo[buf].modifiable = false
  vim.bo[buf].bufhidden = "wipe"
  vim.bo[buf].filetype = "lofi"
  pcall(vim.api.nvim_buf_set_name, buf, "lofi://track/" .. tostring(t.track_id))
  vim.api.nvim_win_set_buf(0, buf)
end

--- Unique prompts from tracks plus presets, most used first. Each entry: {prompt, count, last_used, seed, track}.
---@param tracks table[]
---@param presets string[]
function M.prompt_entries(tracks, presets)
  local by_prompt, list = {}, {}
  for _, t in ipairs(tracks or {}) do
    if t.prompt then
      local e = by_prompt[t.prompt]
      if not e then
        e = { prompt = t.prompt, count = 0, last_used = 0 }
        by_prompt[t.prompt] = e
        list[#list + 1] = e
      end
      e.count = e.count + 1
      local used = tonumber(t.last_played) or tonumber(t.created_at) or 0
      if used >= e.last_used then
        e.last_used, e.seed, e.track = used, t.seed, t
      end
    end
  end
  table.sort(list, function(a, b)
    if a.count ~= b.count then
      return a.count > b.count
    end
    return a.last_used > b.last_used
  end)
  for _, p in ipairs(presets or {}) do
    if not by_prompt[p] then
      by_prompt[p] = { prompt = p, count = 0, last_used = 0, preset = true }
      list[#list + 1] = by_prompt[p]
    end
  end
  return list
end

function M.prompt_display(e)
  if e.preset then
    return string.format("preset  %s", e.prompt)
  end
  return string.format("%3d×  %s  %s", e.count, fmt_date(e.last_used), e.prompt)
end

function M.prompt_preview(e)
  local lines = { "Prompt:     " .. e.prompt }
  if e.preset then
    lines[#lines + 1] = "A preset from your config (prefetch.presets)."
  else
    lines[#lines + 1] = "Tracks:     " .. e.count
    lines[#lines + 1] = "Last used:  " .. fmt_date(e.last_used)
    lines[#lines + 1] = "Last seed:  " .. tostring(e.seed or "?")
  end
  return lines
end

M.prompt_actions = {
  generate = function(e, done)
    require("lofi").generate({ prompt = e.prompt }, done)
  end,
  regenerate = function(e, done)
    if e.track then
      require("lofi").generate(M.regenerate_request(e.track), done)
    else
      require("lofi").generate({ prompt = e.prompt }, done)
    end
  end,
  edit = function(e, done)
    vim.ui.input({ prompt = "lofi prompt: ", default = e.prompt }, function(text)
      if text and vim.trim(text) ~= "" then
        require("lofi").generate(text, done) -- parsed like :Lofi generate (duration=5, --seed 3)
      end
    end)
  end,
}

M.prompt_keymaps = {
  { key = "<CR>", action = "generate", label = "Generate (new seed)" },
  { key = "<C-s>", action = "regenerate", label = "Regenerate (same seed)" },
  { key = "<C-e>", action = "edit", label = "Edit, then generate" },
}

--- Fetch cached tracks, then call fn(tracks).
function M.fetch_tracks(opts, fn)
  opts = opts or {}
  require("lofi.client").request(
    "cache_list",
    { limit = opts.limit or 500, sort = "created" },
    function(err, res)
      if err then
        local ui = require("lofi.ui")
        return ui.error(ui.format_error(err))
      end
      local tracks = res and res.tracks or {}
      for _, t in ipairs(tracks) do
        require("lofi.state").remember_track(t)
      end
      fn(tracks)
    end
  )
end

local function has_telescope()
  return pcall(require, "telescope")
end

local function select_action(item, keymaps, actions, title)
  vim.ui.select(keymaps, {
    prompt = title,
    format_item = function(k)
      return k.label
    end,
  }, function(choice)
    if choice then
      actions[choice.action](item)
    end
  end)
end

--- Tracks picker: Telescope when installed (and not opts.ui_select), else vim.ui.select.
function M.tracks(opts)
  opts = opts or {}
  if not opts.ui_select and has_telescope() then
    return require("telescope").extensions.lofi.tracks(opts)
  end
  M.fetch_tracks(opts, function(tracks)
    if #tracks == 0 then
      return require("lofi.ui").notify(M.EMPTY_HINT)
    end
    vim.ui.select(
      tracks,
      { prompt = "lofi tracks", format_item = M.track_display, kind = "lofi_track" },
      function(t)
        if t then
          select_action(t, M.track_keymaps, M.track_actions, "lofi: " .. tostring(t.prompt))
        end
      end
    )
  end)
end

--- Prompts picker.
function M.prompts(opts)
  opts = opts or {}
  if not opts.ui_select and has_telescope() then
    return require("telescope").extensions.lofi.prompts(opts)
  end
  M.fetch_tracks(opts, function(tracks)
    local entries = M.prompt_entries(tracks, require("lofi.config").get().prefetch.presets)
    vim.ui.select(
      entries,
      { prompt = "lofi prompts", format_item = M.prompt_display, kind = "lofi_prompt" },
      function(e)
        if e then
          select_action(e, M.prompt_keymaps, M.prompt_actions, "lofi: " .. e.prompt)
        end
      end
    )
  end)
end

return M

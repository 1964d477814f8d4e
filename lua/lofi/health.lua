-- :checkhealth lofi. Works without a running daemon: it asks the daemon program for a one-shot JSON report
-- (`lofi-daemon health --json`) and falls back to `--version` when that fails.
local M = {}

local h = vim.health

local function cfg_mod()
  return require("lofi.config")
end

--- Run the daemon command with extra args; returns stdout, or nil and an error text.
---@return string|nil out, string|nil err
local function run_daemon(args, timeout_ms)
  local cmd, err = cfg_mod().daemon_cmd()
  if not cmd then
    return nil, err
  end
  vim.list_extend(cmd, args)
  local env = cfg_mod().get().daemon.env
  local ok, proc = pcall(vim.system, cmd, { text = true, env = next(env) and env or nil })
  if not ok then
    return nil, "cannot run `" .. table.concat(cmd, " ") .. "`: " .. tostring(proc)
  end
  local res = proc:wait(timeout_ms or 20000)
  if res.signal ~= 0 and res.code == 0 then
    return nil, "`" .. table.concat(cmd, " ") .. "` timed out"
  end
  if res.code ~= 0 then
    local tail = vim.trim(res.stderr or "")
    return nil,
      string.format(
        "`%s` failed (exit %d)%s",
        table.concat(cmd, " "),
        res.code,
        tail ~= "" and (":\n" .. tail) or ""
      )
  end
  return res.stdout or ""
end

--- The daemon's health report (decoded JSON) or nil, err.
function M.daemon_report()
  local out, err = run_daemon({ "health", "--json" }, cfg_mod().get().daemon.request_timeout_ms * 3)
  if not out then
    return nil, err
  end
  local ok, report = pcall(vim.json.decode, out)
  if not ok or type(report) ~= "table" then
    return nil, "the daemon printed something that isn't JSON: " .. out:sub(1, 200)
  end
  return report
end

local function check_neovim()
  h.start("lofi: Neovim")
  if vim.fn.has("nvim-0.10") == 1 then
    h.ok("Neovim " .. tostring(vim.version()) .. " (0.10 or newer)")
  else
    h.error("Neovim 0.10 or newer is required", { "Upgrade Neovim" })
  end
end

local function check_config()
  h.start("lofi: configuration")
  local ok, errors = cfg_mod().validate(cfg_mod().raw())
  if ok then
    h.ok("configuration is valid")
  else
    for _, e in ipairs(errors) do
      h.error(e, { "Fix the option in your setup() call or vim.g.lofi; see :h lofi-config" })
    end
  end
  local c = cfg_mod().get()
  h.info(
    string.format("default backend: %s, provider: %s, progress UI: %s", c.backend, c.provider, c.ui.progress)
  )
  local plan = c.radio.plan
  h.info(
    string.format(
      "radio: plan %s, adaptive %s",
      type(plan) == "table" and (plan.name or "(your own)") or tostring(plan or "none"),
      c.radio.adaptive and "on (two counting autocmds while an adaptive radio plays)" or "off"
    )
  )
end

-- JSON null arrives as vim.NIL; treat it as absent.
local function nn(v)
  if v == vim.NIL then
    return nil
  end
  return v
end

local function fmt_mb(mb)
  return string.format("%.1f MB", tonumber(mb) or 0)
end

local function check_daemon()
  h.start("lofi: daemon")
  local cmd, err = cfg_mod().daemon_cmd()
  if not cmd then
    h.error(err)
    return
  end
  h.ok("daemon command: " .. table.concat(cmd, " "))
  local client = require("lofi.client")
  if client.is_running() then
    h.info("a daemon is running for this Neovim (pid " .. tostring(client.pid()) .. ")")
  else
    h.info("no daemon is running for this Neovim (it starts on the first :Lofi command)")
  end

  local report, rerr = M.daemon_report()
  if not report then
    h.warn(
      "`health --json` failed: " .. tostring(rerr),
      { "Reinstall with ./scripts/setup, then see :Lofi log" }
    )
    local out, verr = run_daemon({ "--version" }, 10000)
    if out then
      h.ok("daemon version: " .. vim.trim(out))
    else
      h.error("the daemon does not start: " .. tostring(verr), {
        "Run the command above in a shell to see why",
        "Reinstall the Python environment: cd " .. cfg_mod().plugin_root() .. " && ./scripts/setup",
      })
    end
    return
  end

  h.ok("daemon " .. tostring(nn(report.version) or "?") .. " starts and answers")
  if nn(report.python) then
    h.info("Python " .. tostring(report.python))
  end
  if type(report.packages) == "table" then
    local names = vim.tbl_keys(report.packages)
    table.sort(names)
    local parts, missing = {}, {}
    for _, name in ipairs(names) do
      local v = report.packages[name]
      if v == vim.NIL or v == nil then
        missing[#missing + 1] = name
      else
        parts[#parts + 1] = name .. " " .. tostring(v)
      end
    end
    h.info("packages: " .. table.concat(parts, ", "))
    if #missing > 0 then
      h.error("missing Python packages: " .. table.concat(missing, ", "), {
        "Reinstall the daemon's environment: cd " .. cfg_mod().plugin_root() .. " && ./scripts/setup",
      })
    end
  end
  local providers = nn(report.providers) or {}
  if #providers > 0 then
    h.ok("onnxruntime providers: " .. table.concat(providers, ", "))
  else
    h.error(
      "onnxruntime reports no execution providers",
      { "Reinstall onnxruntime in the daemon's environment" }
    )
  end

  h.start("lofi: models")
  local any = false
  for _, b in ipairs(nn(report.backends) or {}) do
    local where = nn(b.dir) and (" in " .. b.dir) or ""
    if nn(b.error) then
      h.error(string.format("%s: %s", tostring(b.name), tostring(b.error)))
    elseif b.installed == true and nn(b.verify) and b.verify.ok == false then
      h.error(
        string.format("%s model files are damaged: %s", b.name, table.concat(b.verify.problems or {}, "; ")),
        { tostring(nn(b.verify.hint) or ("lofi-daemon download " .. tostring(b.name) .. " --repair")) }
      )
    elseif b.installed == true then
      any = true
      h.ok(string.format("%s installed (variant %s)%s", b.name, tostring(nn(b.variant) or "default"), where))
      if nn(b.decoder_products) then
        -- what the in-place KV decoder runs on this CPU (it decides the rounding, so the track ids too)
        h.info(
          string.format(
            "%s decoder on this CPU: %s, %s KV cache",
            b.name,
            tostring(b.decoder_products),
            tostring(nn(b.kv_precision) or "float32")
          )
        )
      end
    elseif b.name == cfg_mod().get().backend then
      h.warn(
        string.format("%s (your default backend) not installed%s", b.name, where),
        { "Run :Lofi download " .. tostring(b.name) }
      )
    else
      -- Another backend is optional: not having it is a fact, not a problem.
      h.info(string.format("%s not installed (optional; :Lofi download %s adds it)", b.name, b.name))
    end
  end
  if not any then
    h.warn("no model is installed yet; generation needs one", { "Run :Lofi download musicgen" })
  end

  local lyrics = nn(report.lyrics)
  if type(lyrics) == "table" and type(nn(lyrics.languages)) == "table" then
    h.start("lofi: lyrics (ACE-Step)")
    local ready, missing, packages = {}, {}, {}
    for _, code in ipairs(vim.tbl_keys(lyrics.languages)) do
      local lang = lyrics.languages[code]
      if lang.available == true then
        ready[#ready + 1] = tostring(lang.name)
      else
        missing[#missing + 1] = tostring(lang.name)
        for _, p in ipairs(nn(lang.missing) or {}) do
          packages[p] = true
        end
      end
    end
    table.sort(ready)
    table.sort(missing)
    if #ready > 0 then
      h.ok("lyric languages: " .. table.concat(ready, ", "))
    end
    if #missing > 0 then
      local names = vim.tbl_keys(packages)
      table.sort(names)
      -- Optional: without the extra these lines are sung as English text, which the daemon says when it happens.
      h.info(
        string.format(
          "lyrics in %s need the lyrics extra (%s): cd %s && ./%s",
          table.concat(missing, ", "),
          table.concat(names, ", "),
          cfg_mod().plugin_root(),
          tostring(nn(lyrics.setup) or "scripts/setup --lyrics")
        )
      )
    end
  end

  h.start("lofi: audio")
  local audio = nn(report.audio) or {}
  if audio.ok == true then
    local names = {}
    for _, d in ipairs(nn(audio.devices) or {}) do
      names[#names + 1] = (type(d) == "table" and (d.name .. (d.is_default and " (default)" or "")))
        or tostring(d)
    end
    h.ok(#names > 0 and ("output devices: " .. table.concat(names, ", ")) or "audio output available")
  else
    h.warn("no audio output: " .. tostring(nn(audio.error) or "no output device"), {
      "Generation still works; playback needs an output device (PortAudio: libportaudio2)",
    })
  end

  h.start("lofi: cache and log")
  local cache = nn(report.cache) or {}
  h.info(
    string.format(
      "cache: %s (%d tracks, %s)",
      tostring(nn(cache.dir) or "?"),
      tonumber(cache.count) or tonumber(cache.files) or 0,
      fmt_mb(cache.size_mb)
    )
  )
  if nn(cache.error) then
    h.error("the track cache cannot be used: " .. tostring(cache.error))
  end
  if nn(report.log_file) then
    h.info("daemon log: " .. report.log_file .. "  (open it with :Lofi log)")
  end
end

-- The remote generator (|lofi-remote|): asked of the running daemon, which holds the link.
local function check_generator()
  local g = cfg_mod().get().generator
  if not g.cmd then
    return
  end
  h.start("lofi: remote generator")
  local cmd = type(g.cmd) == "table" and table.concat(g.cmd, " ") or g.cmd
  local client = require("lofi.client")
  if not client.is_ready() then
    h.info("configured: " .. cmd .. " (connects when the daemon starts, on the first :Lofi command)")
    return
  end
  local err, st = client.request_sync("status", nil, 5000)
  local link = type(st) == "table" and st.generator or nil
  if type(link) ~= "table" then
    local why = type(err) == "table" and err.message or "restart it with :Lofi restart"
    h.warn("the daemon reports no generator link: " .. tostring(why))
    return
  end
  local line = require("lofi.format").generator(link)
  if link.state == "ready" then
    h.ok(line)
  elseif link.state == "connecting" then
    h.info(line)
  else
    h.error(line, { "Run the command in a shell to see why: " .. cmd })
  end
end

local function check_integrations()
  h.start("lofi: optional integrations")
  local function probe(mod, label, with, without)
    if pcall(require, mod) then
      h.ok(label .. " found: " .. with)
    else
      h.info(label .. " not found: " .. without)
    end
  end
  probe("telescope", "telescope.nvim", ":Telescope lofi tracks|prompts", "pickers use vim.ui.select")
  probe("lualine", "lualine.nvim", "the `lofi` component is available", "use require('lofi').statusline()")
  probe(
    "notify",
    "nvim-notify",
    "progress replaces itself in place",
    "progress is echoed on the command line"
  )
end

function M.check()
  check_neovim()
  check_config()
  check_daemon()
  check_generator()
  check_integrations()
end

return M

-- JSON-RPC 2.0 over LSP base-protocol framing (Content-Length headers) on a child process's stdin/stdout.
-- Pure framing functions (encode, Decoder) plus a small transport on vim.system.
local M = {}

--- Frame one message.
---@param msg table
---@return string
function M.encode(msg)
  local body = vim.json.encode(msg)
  return string.format("Content-Length: %d\r\n\r\n%s", #body, body)
end

---@class lofi.rpc.Decoder
---@field buf string
local Decoder = {}
Decoder.__index = Decoder

--- A streaming decoder: feed it arbitrary chunks, get whole messages back (messages may span chunks and one
--- chunk may hold several messages).
function M.decoder()
  return setmetatable({ buf = "" }, Decoder)
end

---@param chunk string
---@return table[] messages, string[] errors
function Decoder:feed(chunk)
  self.buf = self.buf .. chunk
  local messages, errors = {}, {}
  while true do
    local header_end = self.buf:find("\r\n\r\n", 1, true)
    if not header_end then
      break
    end
    local header = self.buf:sub(1, header_end - 1)
    local len = tonumber(header:match("[Cc]ontent%-[Ll]ength:%s*(%d+)"))
    if not len then
      -- Garbage before a header (e.g. a stray print in the daemon): drop through the separator and say so.
      errors[#errors + 1] = "malformed header: " .. header:sub(1, 200)
      self.buf = self.buf:sub(header_end + 4)
    else
      local body_start = header_end + 4
      if #self.buf < body_start + len - 1 then
        break
      end
      local body = self.buf:sub(body_start, body_start + len - 1)
      self.buf = self.buf:sub(body_start + len)
      local ok, msg = pcall(vim.json.decode, body, { luanil = { object = true, array = true } })
      if ok and type(msg) == "table" then
        messages[#messages + 1] = msg
      else
        errors[#errors + 1] = "invalid JSON body: " .. body:sub(1, 200)
      end
    end
  end
  return messages, errors
end

---@class lofi.rpc.Transport
---@field proc vim.SystemObj
---@field pid integer
local Transport = {}
Transport.__index = Transport

--- Spawn `cmd` and call handlers (always scheduled on the main loop):
---   on_message(msg), on_stderr(text), on_exit(code, signal)
---@param cmd string[]
---@param opts {env?: table<string,string>, cwd?: string}
---@param handlers table {on_message, on_stderr?, on_exit, on_error?}
---@return lofi.rpc.Transport|nil, string|nil
function M.spawn(cmd, opts, handlers)
  local decoder = M.decoder()
  local self = setmetatable({ closed = false }, Transport)
  local ok, proc = pcall(vim.system, cmd, {
    stdin = true,
    env = opts.env,
    cwd = opts.cwd,
    text = false,
    stdout = function(err, data)
      if err or not data then
        return
      end
      local messages, errors = decoder:feed(data)
      if #messages > 0 or #errors > 0 then
        vim.schedule(function()
          for _, e in ipairs(errors) do
            if handlers.on_error then
              handlers.on_error(e)
            end
          end
          for _, msg in ipairs(messages) do
            handlers.on_message(msg)
          end
        end)
      end
    end,
    stderr = function(_, data)
      if data and handlers.on_stderr then
        vim.schedule(function()
          handlers.on_stderr(data)
        end)
      end
    end,
  }, function(out)
    self.closed = true
    vim.schedule(function()
      handlers.on_exit(out.code, out.signal)
    end)
  end)
  if not ok then
    return nil, tostring(proc)
  end
  self.proc = proc
  self.pid = proc.pid
  return self
end

---@param msg table
---@return boolean ok
function Transport:send(msg)
  if self.closed then
    return false
  end
  local ok = pcall(self.proc.write, self.proc, M.encode(msg))
  return ok
end

--- Close stdin: the daemon exits on EOF.
function Transport:close_stdin()
  if not self.closed then
    pcall(self.proc.write, self.proc, nil)
  end
end

---@param signal? integer|string
function Transport:kill(signal)
  if not self.closed then
    pcall(self.proc.kill, self.proc, signal or 15)
  end
end

return M

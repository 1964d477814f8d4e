-- luacheck configuration for the Neovim plugin (lua/, plugin/).
std = "luajit"
globals = { "vim" }
max_line_length = 120
ignore = {
  "212/_.*", -- unused arguments named with a leading underscore
  "212/self", -- methods that do not use self
}
exclude_files = { ".tools", ".venv" }

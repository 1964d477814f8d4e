-- lazy.nvim packspec: the defaults lazy.nvim uses when a spec for this plugin doesn't say otherwise.
return {
  "lofi",
  cmd = "Lofi",
  build = "./scripts/setup --no-generate",
  opts = {},
}

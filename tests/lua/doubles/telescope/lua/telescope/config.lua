-- Test double of telescope.config.
return {
  values = {
    generic_sorter = function()
      return {}
    end,
  },
}

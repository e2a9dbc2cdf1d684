-- Drives headless Neovim as a user would, with clients/neovim's config, and writes
-- what the user saw to a JSON file for tests/test_editor_neovim.py to check:
--
--   nvim --headless --clean -u NONE -c 'luafile clients/neovim/test/editor_test.lua'
--
-- Environment: SBEXPORTD_ROOT (the repository), SBEXPORTD_PYTHON, SBEXPORTD_NVIM_FILE
-- (the Python file to open; line 2 loads a model, line 3 a missing one),
-- SBEXPORTD_NVIM_RESULT (where to write the JSON), SBEXPORTD_NVIM_OUT (the export folder).
local env = vim.env
local out = { steps = {}, notifications = {}, progress = {} }
local TIMEOUT = 120000

local function step(name) table.insert(out.steps, name) end

local function finish(err)
  out.error = err
  local f = assert(io.open(env.SBEXPORTD_NVIM_RESULT, 'w'))
  f:write(vim.fn.json_encode(out))
  f:close()
  vim.cmd(err and 'cquit 1' or 'qall!')
end

local function wait(what, predicate)
  if not vim.wait(TIMEOUT, predicate, 50) then error('timed out waiting for ' .. what) end
end

local function float_lines()
  for _, win in ipairs(vim.api.nvim_list_wins()) do
    if vim.api.nvim_win_get_config(win).relative ~= '' then
      return vim.api.nvim_buf_get_lines(vim.api.nvim_win_get_buf(win), 0, -1, false), win
    end
  end
end

local function close_floats()
  for _, win in ipairs(vim.api.nvim_list_wins()) do
    if vim.api.nvim_win_get_config(win).relative ~= '' then vim.api.nvim_win_close(win, true) end
  end
end

local function main()
  vim.opt.runtimepath:append(env.SBEXPORTD_ROOT .. '/clients/neovim')
  vim.cmd('filetype on')
  -- what the user is told: vim.notify, and every $/progress the client receives
  vim.notify = function(msg, level) table.insert(out.notifications, { msg = msg, level = level }) end
  local progress = vim.lsp.handlers['$/progress']
  vim.lsp.handlers['$/progress'] = function(err, result, ctx, config)
    table.insert(out.progress, result)
    return progress(err, result, ctx, config)
  end

  local sbexportd = require('sbexportd')
  sbexportd.setup({
    cmd = { env.SBEXPORTD_PYTHON, '-m', 'sbexportd.cli', 'serve', '--stdio' },
    cmd_cwd = env.SBEXPORTD_ROOT,
    settings = { sbexportd = { export = { targets = { 'portable' }, outputFolder = env.SBEXPORTD_NVIM_OUT } } },
  })

  vim.cmd('edit ' .. vim.fn.fnameescape(env.SBEXPORTD_NVIM_FILE))
  local buf = vim.api.nvim_get_current_buf()
  out.filetype = vim.bo[buf].filetype
  wait('the client to attach', function() return #vim.lsp.buf_get_clients(buf) == 1 end)
  local client = vim.lsp.buf_get_clients(buf)[next(vim.lsp.buf_get_clients(buf))]
  out.client = client.name
  step('attached')

  -- diagnostics, as vim.diagnostic holds them (signs, virtual text)
  wait('diagnostics', function() return #vim.diagnostic.get(buf) > 0 end)
  out.diagnostics = {}
  for _, d in ipairs(vim.diagnostic.get(buf)) do
    table.insert(out.diagnostics, { lnum = d.lnum, col = d.col, message = d.message, severity = d.severity,
      source = d.source, code = d.user_data and d.user_data.lsp and d.user_data.lsp.code })
  end
  step('diagnostics')

  -- hover: K on the model path (vim.lsp.buf.hover opens the floating window)
  local line2 = vim.api.nvim_buf_get_lines(buf, 1, 2, false)[1]
  local col = line2:find('.zip', 1, true) - 3
  vim.api.nvim_win_set_cursor(0, { 2, col })
  local t0 = vim.loop.hrtime()
  vim.lsp.buf.hover()
  wait('the hover window', function() return float_lines() ~= nil end)
  out.hover_seconds = (vim.loop.hrtime() - t0) / 1e9
  out.hover = float_lines()
  close_floats()
  step('hover')

  -- code lenses, as displayed (virtual text at the end of the line)
  vim.lsp.codelens.refresh()
  wait('code lenses', function() return #vim.lsp.codelens.get(buf) > 0 end)
  out.lenses = {}
  for _, lens in ipairs(vim.lsp.codelens.get(buf)) do
    table.insert(out.lenses, { line = lens.range.start.line, title = lens.command.title,
      command = lens.command.command, arguments = lens.command.arguments })
  end
  out.lens_text = {}
  local ns = vim.api.nvim_create_namespace('vim_lsp_codelens:' .. client.id)
  wait('lens virtual text', function()
    return #vim.api.nvim_buf_get_extmarks(buf, ns, 0, -1, {}) > 0
  end)
  for _, mark in ipairs(vim.api.nvim_buf_get_extmarks(buf, ns, 0, -1, { details = true })) do
    local text = {}
    for _, chunk in ipairs(mark[4].virt_text or {}) do table.insert(text, chunk[1]) end
    table.insert(out.lens_text, { line = mark[2], text = table.concat(text) })
  end
  step('lenses')

  -- run the lenses on line 2 as a user does: :lua vim.lsp.codelens.run(), then pick one
  local function run_lens(title)
    vim.ui.select = function(items, opts, on_choice)
      for _, item in ipairs(items) do
        if opts.format_item(item) == title then return on_choice(item) end
      end
      error('no lens titled ' .. title)
    end
    vim.api.nvim_win_set_cursor(0, { 2, 0 })
    vim.lsp.codelens.run()
  end

  run_lens('Export...')
  wait('the export', function() return sbexportd.last['sbexport.export'] ~= nil end)
  out.export = sbexportd.last['sbexport.export']
  step('export')

  run_lens('Predict sample')
  wait('the prediction', function() return sbexportd.last['sbexport.predict'] ~= nil end)
  out.predict = sbexportd.last['sbexport.predict']
  step('predict')

  run_lens('Inspect')
  wait('the inspect window', function()
    return sbexportd.last['sbexport.inspect'] ~= nil and float_lines() ~= nil
  end)
  out.inspect_window = float_lines()
  close_floats()
  step('inspect')

  -- an edit that fixes the missing path: its diagnostic goes away
  local line3 = vim.api.nvim_buf_get_lines(buf, 2, 3, false)[1]
  vim.api.nvim_buf_set_lines(buf, 2, 3, false, { (line3:gsub('missing%.zip', vim.fn.fnamemodify(
    env.SBEXPORTD_NVIM_MODEL, ':t'))) })
  wait('diagnostics to clear', function() return #vim.diagnostic.get(buf) == 0 end)
  step('fixed')

  vim.lsp.stop_client(client.id)
  wait('the server to exit', function() return client.is_stopped() end)
  step('stopped')
end

local ok, err = xpcall(main, debug.traceback)
finish(not ok and tostring(err) or nil)

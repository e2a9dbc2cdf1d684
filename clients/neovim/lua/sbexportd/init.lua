-- sbexportd for Neovim's built-in LSP client (Neovim 0.7 and later; no plugins needed).
--
--   vim.opt.runtimepath:append('/path/to/sbexportd/clients/neovim')
--   require('sbexportd').setup({ cmd = { 'sbexportd', 'serve', '--stdio' } })
--
-- Buffers of the configured filetypes get hover (K), code lenses (run with
-- :lua vim.lsp.codelens.run()), document links and diagnostics on model-file
-- references. See clients/neovim/README.md and docs/editors.md.
local M = {}

M.defaults = {
  cmd = { 'sbexportd', 'serve', '--stdio' },
  cmd_cwd = nil,
  filetypes = { 'python', 'yaml', 'json', 'jsonc', 'java', 'javascript', 'typescript', 'markdown' },
  root_markers = { '.git', 'pyproject.toml', 'setup.py', 'package.json' },
  -- the server's settings (workspace/configuration section "sbexportd")
  settings = {
    sbexportd = {
      export = { targets = { 'onnx' }, outputFolder = 'exported', overwrite = false },
      vecnormalize = 'auto',
    },
  },
  codelens = true, -- show code lenses, refreshed on BufEnter, CursorHold, InsertLeave and after a save
  on_attach = nil, -- function(client, bufnr), e.g. for key maps
}

M.clients = {} -- root directory -> client id

-- Like vim.tbl_deep_extend('force', ...), except that lists are values: a user's
-- targets = { 'portable' } replaces the default list instead of merging by index.
local function merge(base, over)
  local out = vim.deepcopy(base)
  for k, v in pairs(over or {}) do
    if type(v) == 'table' and not vim.tbl_islist(v) and type(out[k]) == 'table' then
      out[k] = merge(out[k], v)
    else
      out[k] = v
    end
  end
  return out
end

local function notify(msg, level)
  vim.notify('sbexportd: ' .. msg, level or vim.log.levels.INFO)
end

local function show_error(err)
  local hint = type(err.data) == 'table' and err.data.hint or nil
  notify(err.message .. (hint and hint ~= vim.NIL and ('\n' .. hint) or ''), vim.log.levels.ERROR)
end

-- Short readable lines for a result (Neovim 0.7 has no pretty JSON printer).
local function summary_lines(value, indent, out)
  out = out or {}
  indent = indent or ''
  local keys = vim.tbl_keys(value)
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  for _, k in ipairs(keys) do
    local v = value[k]
    if type(v) == 'table' and not vim.tbl_islist(v) and next(v) ~= nil then
      table.insert(out, indent .. tostring(k) .. ':')
      summary_lines(v, indent .. '  ', out)
    else
      local text = (v == vim.NIL) and 'null' or (type(v) == 'table' and vim.fn.json_encode(v) or tostring(v))
      if #text > 120 then text = text:sub(1, 117) .. '...' end
      table.insert(out, indent .. tostring(k) .. ': ' .. text)
    end
  end
  return out
end
M.summary_lines = summary_lines

-- The lenses' commands run on the server (workspace/executeCommand); these show
-- what they answer, which Neovim would otherwise drop.
local shown = {
  ['sbexport.inspect'] = function(result)
    vim.lsp.util.open_floating_preview(summary_lines(result), 'yaml', { border = 'single' })
  end,
  ['sbexport.predict'] = function(result)
    local parts = {}
    for _, line in ipairs(summary_lines(result.outputs or {})) do table.insert(parts, line) end
    notify('predict on the sample observation (' .. (result.backend or '?') .. '): ' .. table.concat(parts, '; '))
  end,
  ['sbexport.export'] = function(result)
    local targets = {}
    for _, r in ipairs(result.results or {}) do table.insert(targets, r.target) end
    notify('exported to ' .. result.out .. ': ' .. table.concat(targets, ', '))
  end,
}

M.last = {} -- command name -> { err =, result = } of its last run (for scripts and tests)

local function command_handler(name)
  return function(command, ctx)
    local client = vim.lsp.get_client_by_id(ctx.client_id)
    client.request('workspace/executeCommand', { command = command.command, arguments = command.arguments },
      function(err, result)
        M.last[name] = { err = err, result = result }
        if err then
          show_error(err)
        else
          shown[name](result)
        end
        vim.lsp.codelens.refresh()
      end, ctx.bufnr)
  end
end

local function find_root(bufnr, markers)
  local path = vim.api.nvim_buf_get_name(bufnr)
  local dir = (path ~= '' and vim.fn.fnamemodify(path, ':p:h')) or vim.fn.getcwd()
  local cur = dir
  while cur and cur ~= '' do
    for _, m in ipairs(markers) do
      if vim.loop.fs_stat(cur .. '/' .. m) then return cur end
    end
    local parent = vim.fn.fnamemodify(cur, ':h')
    if parent == cur then break end
    cur = parent
  end
  return dir
end

local function on_progress_update()
  for _, msg in ipairs(vim.lsp.util.get_progress_messages()) do
    if msg.name == 'sbexportd' then
      local pct = msg.percentage and (' ' .. msg.percentage .. '%') or ''
      vim.api.nvim_echo({ { 'sbexportd: ' .. msg.title .. (msg.message and (': ' .. msg.message) or '') .. pct } },
        false, {})
    end
  end
end

--- Start (or reuse) the client for a root directory; returns its id.
function M.start(root, opts)
  opts = merge(M.defaults, opts)
  if M.clients[root] and vim.lsp.get_client_by_id(M.clients[root]) then
    return M.clients[root]
  end
  local capabilities = vim.lsp.protocol.make_client_capabilities()
  -- Neovim 0.7 answers workspace/configuration from `settings` but does not say so
  capabilities.workspace.configuration = true
  local commands = {}
  for name in pairs(shown) do commands[name] = command_handler(name) end
  local id = vim.lsp.start_client({
    name = 'sbexportd',
    cmd = opts.cmd,
    cmd_cwd = opts.cmd_cwd,
    root_dir = root,
    capabilities = capabilities,
    settings = opts.settings,
    commands = commands,
    on_init = function(client)
      client.notify('workspace/didChangeConfiguration', { settings = client.config.settings })
    end,
    on_attach = function(client, bufnr)
      if opts.codelens then
        local group = vim.api.nvim_create_augroup('sbexportd_codelens_' .. bufnr, { clear = true })
        vim.api.nvim_create_autocmd({ 'BufEnter', 'CursorHold', 'InsertLeave', 'BufWritePost' }, {
          group = group, buffer = bufnr, callback = function() vim.lsp.codelens.refresh() end,
        })
        vim.lsp.codelens.refresh()
      end
      if opts.on_attach then opts.on_attach(client, bufnr) end
    end,
  })
  M.clients[root] = id
  return id
end

--- Attach a buffer to the client of its root directory (started on first use).
function M.attach(bufnr, opts)
  opts = merge(M.defaults, opts)
  bufnr = (bufnr == nil or bufnr == 0) and vim.api.nvim_get_current_buf() or bufnr
  local id = M.start(find_root(bufnr, opts.root_markers), opts)
  vim.lsp.buf_attach_client(bufnr, id)
  return id
end

--- Attach every buffer of the configured filetypes, now and from now on.
function M.setup(opts)
  opts = merge(M.defaults, opts)
  local group = vim.api.nvim_create_augroup('sbexportd', { clear = true })
  vim.api.nvim_create_autocmd('FileType', {
    group = group, pattern = opts.filetypes, callback = function(args) M.attach(args.buf, opts) end,
  })
  vim.api.nvim_create_autocmd('User', { group = group, pattern = 'LspProgressUpdate', callback = on_progress_update })
end

return M

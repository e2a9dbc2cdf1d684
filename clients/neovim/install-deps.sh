#!/bin/sh
# Neovim for tests/test_editor_neovim.py, from Debian's packages (bookworm: 0.7.2,
# the oldest Neovim clients/neovim supports). Idempotent: does nothing when nvim exists.
set -eu
if command -v nvim >/dev/null 2>&1; then
    echo "install-deps: $(nvim --version | head -1) present"
    exit 0
fi
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
echo "install-deps: apt-get install neovim"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends neovim >/dev/null

#!/usr/bin/env bash
# System libraries vlasteer needs for headless MuJoCo rendering (EGL or OSMesa), plus what the docs and
# browser tests use: Debian's chromium and chromium-driver (driven by selenium) and npm (the docs' JS assets).
# Installs them with apt-get only when they are missing; prints what it does.
set -euo pipefail
need=()
ldconfig -p | grep -q 'libEGL\.so\.1' || need+=(libegl1)
ldconfig -p | grep -q 'libOSMesa\.so' || need+=(libosmesa6)
ldconfig -p | grep -q 'libGL\.so\.1' || need+=(libgl1)
ldconfig -p | grep -q 'libGLX_mesa\|libEGL_mesa' || need+=(libegl-mesa0)
[ -x /usr/bin/chromium ] || need+=(chromium)
command -v chromedriver >/dev/null || need+=(chromium-driver)
command -v npm >/dev/null || need+=(npm)
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
echo "install_sysdeps: installing ${need[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null

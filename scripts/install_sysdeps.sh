#!/usr/bin/env bash
# System libraries vlasteer needs for headless MuJoCo rendering (EGL or OSMesa).
# Installs them with apt-get only when they are missing; prints what it does.
set -euo pipefail
need=()
ldconfig -p | grep -q 'libEGL\.so\.1' || need+=(libegl1)
ldconfig -p | grep -q 'libOSMesa\.so' || need+=(libosmesa6)
ldconfig -p | grep -q 'libGL\.so\.1' || need+=(libgl1)
ldconfig -p | grep -q 'libGLX_mesa\|libEGL_mesa' || need+=(libegl-mesa0)
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
echo "install_sysdeps: installing ${need[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null

#!/usr/bin/env bash
# Install and start the SceneSpeak systemd unit for this checkout.
#   sudo bash device/install-service.sh [SOURCE]     # SOURCE: 0 (default), csi://0, /dev/video1, rtsp://...
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
USER_NAME="${SUDO_USER:-$(id -un)}"
SOURCE="${1:-0}"
if [ "$(id -u)" != 0 ]; then echo "run with sudo: it writes /etc/systemd/system/scenespeak.service" >&2; exit 1; fi
if [ ! -x "$ROOT/.venv/bin/python" ]; then echo "no .venv: run 'make setup-runtime' (or device/setup-jetson.sh) first" >&2; exit 1; fi
mkdir -p "$ROOT/out" && chown "$USER_NAME" "$ROOT/out"
sed -e "s|@ROOT@|$ROOT|g" -e "s|@USER@|$USER_NAME|g" -e "s|@SOURCE@|$SOURCE|g" \
    "$ROOT/device/scenespeak.service" > /etc/systemd/system/scenespeak.service
systemctl daemon-reload
systemctl enable --now scenespeak.service
echo "scenespeak.service enabled; follow it with: journalctl -u scenespeak -f"

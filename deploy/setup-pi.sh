#!/usr/bin/env bash
# Set up edgectl serve on a Raspberry Pi OS (64-bit, bookworm) device. Run as root; idempotent.
# Usage: sudo deploy/setup-pi.sh [path/to/edgectl-source-or-wheel]
set -euo pipefail
SRC="${1:-edgectl}"
apt-get install -y --no-install-recommends python3-venv python3-dev
id edgectl >/dev/null 2>&1 || useradd --system --home /var/lib/edgectl --shell /usr/sbin/nologin edgectl
install -d -o edgectl -g edgectl -m 0750 /var/lib/edgectl /var/lib/edgectl/models
install -d -o root -g edgectl -m 0750 /etc/edgectl
test -d /opt/edgectl/venv || python3 -m venv /opt/edgectl/venv
# The device profile: onnxruntime, FastAPI/uvicorn (httptools, uvloop), Pillow - no torch; [tflite] for LiteRT.
/opt/edgectl/venv/bin/pip install --upgrade "${SRC}[device,tflite]"
here="$(cd "$(dirname "$0")" && pwd)"
test -f /etc/edgectl/serve.toml || install -o root -g edgectl -m 0640 "$here/serve.toml" /etc/edgectl/serve.toml
install -o root -g root -m 0644 "$here/edgectl-serve.service" /etc/systemd/system/edgectl-serve.service
systemctl daemon-reload
systemctl enable --now edgectl-serve
echo "edgectl serve is running; install a model with:"
echo "  sudo -u edgectl /opt/edgectl/venv/bin/edgectl models install BUNDLE.tar --store /var/lib/edgectl/models"

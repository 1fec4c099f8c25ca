#!/usr/bin/env bash
# Set up SceneSpeak on a Jetson (JetPack 5.1 / 6; see device/README.md for the Nano on JetPack 4.6).
#   bash device/setup-jetson.sh
# - espeak-ng and alsa-utils (the voice and aplay), GStreamer's nvarguscamerasrc comes with JetPack
# - a .venv that sees JetPack's system OpenCV (built with GStreamer, for csi://N)
# - onnxruntime-gpu for this JetPack (TensorRT + CUDA providers): JetPack 6 from the Jetson AI Lab
#   index; JetPack 5 from a wheel you download from the Jetson Zoo (ORT_WHEEL=path/to.whl)
# - the user in the video and audio groups
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
RELEASE="$(head -n1 /etc/nv_tegra_release 2>/dev/null || true)"
case "$RELEASE" in
  "# R36"*) INDEX="https://pypi.jetson-ai-lab.io/jp6/cu126" ;;
  "# R35"*) INDEX="" ;;
  "# R32"*) echo "JetPack 4.6 (Nano): see device/README.md, section Jetson Nano" >&2; exit 1 ;;
  *) echo "not a Jetson (no /etc/nv_tegra_release); use 'make setup-runtime'" >&2; exit 1 ;;
esac
sudo apt-get update
sudo apt-get install -y espeak-ng alsa-utils python3-venv python3-opencv
python3 -m venv --system-site-packages .venv      # keeps JetPack's GStreamer-enabled cv2
.venv/bin/pip install --upgrade pip
# the project (the `scenespeak` command) without its dependencies, then each of them at the
# version requirements/constraints.txt pins for this Python, except onnxruntime (the GPU build,
# below) and OpenCV (JetPack's, with GStreamer)
PIPC=(.venv/bin/pip install -c requirements/constraints.txt)
.venv/bin/pip install --no-deps -e .
"${PIPC[@]}" numpy pillow pyttsx3 tqdm rapidocr matplotlib 'tomli; python_version < "3.11"'
# the barcode channel's reader: without a wheel for this board, describe runs without it and
# `doctor` says so
"${PIPC[@]}" zxing-cpp ||
  echo "warning: zxing-cpp did not install: no barcode channel (see scenespeak doctor)" >&2
if [ -n "${ORT_WHEEL:-}" ]; then
  .venv/bin/pip install "$ORT_WHEEL"
elif [ -n "$INDEX" ]; then
  .venv/bin/pip install --extra-index-url "$INDEX" onnxruntime-gpu
else
  echo "JetPack 5: download the onnxruntime-gpu wheel for your JetPack and Python from the" >&2
  echo "Jetson Zoo (elinux.org/Jetson_Zoo#ONNX_Runtime), then: ORT_WHEEL=/path/to.whl bash $0" >&2
  exit 1
fi
sudo usermod -aG video,audio "$(id -un)"
touch .venv/.stamp-venv .venv/.stamp-system .venv/.stamp-runtime
echo "done. Log out and in (for the groups), then: .venv/bin/scenespeak doctor"

#!/usr/bin/env bash
# Set up (if needed) and run the main job: train a ResNet-20 teacher on the real
# Fashion-MNIST (60,000 train / 10,000 test images). Resumes if interrupted.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
EPOCHS=${EPOCHS:-1}
.venv/bin/hakd train resnet20 --data fashion-mnist --epochs "$EPOCHS" --threads "$(nproc)" \
  --out "runs/demo-resnet20-e$EPOCHS" --resume

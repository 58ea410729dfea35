#!/usr/bin/env bash
# Set up (if needed) and run the main job on the real Fashion-MNIST, on this host's CPU:
#   1. train a ResNet-20 teacher (EPOCHS, default 1)
#   2. measure every fused kernel with TVM and hakd's schedules (predicted latency)
#   3. measure the latency staircase of one channel group (PNG)
#   4. Fisher-prune the teacher to KEEP (default 60%) of its parameters
#   5. compile the pruned model with the measured schedules and check it against PyTorch
# Every step resumes after an interruption; results go to runs/demo/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
EPOCHS=${EPOCHS:-1}
KEEP=${KEEP:-0.6}
OUT=runs/demo
HAKD=.venv/bin/hakd
TABLE="$OUT/latency.sqlite"
export TVM_NUM_THREADS=1
mkdir -p "$OUT"
echo "== 1. teacher"
$HAKD train resnet20 --data fashion-mnist --epochs "$EPOCHS" --threads "$(nproc)" --out "$OUT/teacher" --resume
echo "== 2. teacher latency on this host (TVM, hakd schedules, 1 thread)"
$HAKD profile --run "$OUT/teacher" --table "$TABLE" | tail -n 1
echo "== 3. staircase of group layers.6.conv1"
$HAKD staircase --run "$OUT/teacher" --group layers.6.conv1 --table "$TABLE" --plot "$OUT/staircase_layers_6_conv1.png" | tail -n 4
echo "== 4. Fisher pruning to $KEEP of the parameters"
$HAKD prune --run "$OUT/teacher" --target params --amount "$KEEP" --prune-every 10 --threads "$(nproc)" \
  --out "$OUT/fisher" --resume > "$OUT/fisher.log"
grep -m 1 "plan in" "$OUT/fisher.log"
echo "== 5. pruned model compiled with its measured schedules"
$HAKD export --model-file "$OUT/fisher/model.pt" --table "$TABLE" --out "$OUT/deploy"
echo "done: see $OUT/ (teacher/metrics.csv, fisher/history.json, deploy/hakd-export.json, staircase PNG)"

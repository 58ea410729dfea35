#!/usr/bin/env bash
# Set up (if needed) and run the main job, the whole HAKD pipeline, on the real Fashion-MNIST on this host's CPU:
#   1. train a ResNet-20 teacher (EPOCHS, default 1)
#   2. hakd optimize: Fisher-prune it to KEEP (default 0.6) of its parameters (a channel every 5 steps),
#      measure every channel group's latency staircase with TVM on this host (1 thread), spend a latency
#      budget of BUDGET (default 0.6) of the teacher's predicted latency across the groups three ways
#      (each student tried one epoch, the best on held-out images kept), distil the student from the
#      teacher for STUDENT_EPOCHS (default 1) and the uniform student (the simple answer) beside it,
#      compile the student with its measured schedules (and write ONNX), and write a report with plots.
# A short schedule (the paper trains for 200 epochs); every step resumes after an interruption.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
EPOCHS=${EPOCHS:-1}
KEEP=${KEEP:-0.6}
BUDGET=${BUDGET:-0.6}
STUDENT_EPOCHS=${STUDENT_EPOCHS:-1}
OUT=runs/demo
HAKD=.venv/bin/hakd
export TVM_NUM_THREADS=1
mkdir -p "$OUT"
echo "== 1. teacher: ResNet-20, $EPOCHS epoch(s) on Fashion-MNIST"
$HAKD train resnet20 --data fashion-mnist --epochs "$EPOCHS" --threads "$(nproc)" --out "$OUT/teacher" --resume
echo "== 2. hakd optimize: Fisher to $KEEP of the parameters, staircases, budget $BUDGET, distillation ($STUDENT_EPOCHS epoch(s)), export, report"
$HAKD optimize --run "$OUT/teacher" --target host --table "$OUT/latency.sqlite" --amount "$KEEP" --prune-every 5 \
  --budget "$BUDGET" --epochs "$STUDENT_EPOCHS" --lr 0.01 --torch-threads "$(nproc)" --out "$OUT/hakd"
echo "done: the report is $OUT/hakd/report/report.md (plots beside it); the compiled student is in $OUT/hakd/export/"

#!/usr/bin/env bash
# The CIFAR-10 `train all` (same recipes, same commands as on the CPU) on one GPU, then float16
# weights (train.half) and the evaluation, in one script for a borrowed GPU with a time limit.
#
#   bash train/gpu_cifar10.sh DATA OUT [DEADLINE_SECONDS]
#
# DATA: a CIFAR-10 root (ImageFolder tree); OUT: where weights, logs and results go. Training always
# runs to the end; the evaluation sections then run in order of importance, each resumable, until
# DEADLINE_SECONDS (default 560) after the start. Writes OUT/weights.tar.a? (the defense folder, in
# 15 MB parts: `cat weights.tar.a? | tar -x`) and OUT/results.tar.gz (training logs, evaluation
# results of the finished sections and their resumable state).
set -uo pipefail
DATA=${1:?data root}; OUT=${2:?output folder}; DEADLINE=${3:-560}
export PYTHONUNBUFFERED=1
REPO=$PWD; DEVICE=${DEVICE:-cuda}
# smoke test on a CPU: DEVICE=cpu TRAIN_ARGS="--limit 300 --epochs 0.1" EVAL_ARGS="--limit 20 --small" bash ...
TRAIN_ARGS=${TRAIN_ARGS:-}; EVAL_ARGS=${EVAL_ARGS:-}
W=/tmp/w/cifar10; CK=/tmp/ckpt
EV=/tmp/eval; mkdir -p "$OUT" "$EV"
step() { echo "== $(date +%T) t=${SECONDS}s $*"; }
for c in classifier ism robust detector gan baselines pipeline; do
  step "train $c"
  python3 -m train "$c" --dataset cifar10 --data "$DATA" --out "$W" --ckpt-dir "$CK" --device "$DEVICE" $TRAIN_ARGS || exit 1
done
step "float16"
python3 -m train.half "$W" --data "$DATA" --device "$DEVICE" || step "float16 refused: float32 kept"
tar -cf - -C /tmp/w cifar10 | split -b 15m - "$OUT/weights.tar."
step "weights written ($(du -ch "$OUT"/weights.tar.* | tail -1 | cut -f1))"
left() { echo $((DEADLINE - SECONDS)); }
ev() {   # one resumable evaluation call, stopped at the deadline
  [ "$(left)" -gt 20 ] || { step "skip $1 (deadline)"; return; }
  step "evaluate $1"
  timeout "$(left)" python3 -m ism.evaluate --dataset cifar10 --data "$DATA" --weights "$W" --device "$DEVICE" $EVAL_ARGS \
    --out "$EV" --batch-size 500 --adaptive-images 1000 --autoattack-images 1000 --sections "$1"
}
ev autoattack
ev graybox,adaptive
ev latent,ablation,sanity,regeneration
step "done"
tar -czf "$OUT/results.tar.gz" -C /tmp ckpt/logs eval -C "$REPO" .cache/eval 2>/dev/null || \
  tar -czf "$OUT/results.tar.gz" -C /tmp ckpt/logs eval

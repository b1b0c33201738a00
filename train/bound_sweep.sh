#!/usr/bin/env bash
# The bounded refiner's frontier (issue "the pictures tell the truth"): for each bound b (/255), the paper
# recipe's refiner is trained with its change capped at b per pixel (ism/models/ism_net.py, b * tanh(r / b))
# and measured on what the eye sees and what the classifier reads (ism/eval/pictures.py).
#
#   bash train/bound_sweep.sh [DATASET] [BOUNDS] [EXTRA --set ...]
#   e.g. bash train/bound_sweep.sh cifar10 "6 8 12 16"
#   TAG=c0 bash train/bound_sweep.sh celeba 12 --set clean_mse=0   (TAG names a variant's folder: celeba-b12c0)
#
# Each bound: .cache/sweep/<dataset>-b<B>/ism (its card: README.md, figures on `measure` test images), its log
# .cache/sweep/<dataset>-b<B>/ckpt/logs/. Resumable: a finished bound (model.safetensors) is skipped, an
# interrupted one resumes from its last epoch (--resume). The gray-box pools and the probe's attacked test
# images are shared between bounds (.cache/ckpt/pool, .cache/ckpt/probe). Summary: python -m train.frontier.
set -euo pipefail
cd "$(dirname "$0")/.."
DATASET=${1:-cifar10}
BOUNDS=${2:-"6 8 12 16"}
shift $(( $# > 2 ? 2 : $# ))
SRC=weights/${DATASET}-paper
PY=${PY:-.venv/bin/python}
mkdir -p .cache/ckpt/pool .cache/ckpt/probe
for B in $BOUNDS; do
  OUT=.cache/sweep/${DATASET}-b$B${TAG:-}
  [ -f "$OUT/ism/model.safetensors" ] && { echo "b=$B done"; continue; }
  mkdir -p "$OUT/ckpt"
  ln -sfn "$PWD/$SRC/classifier" "$OUT/classifier"
  ln -sfn "$PWD/.cache/ckpt/pool" "$OUT/ckpt/pool"
  ln -sfn "$PWD/.cache/ckpt/probe" "$OUT/ckpt/probe"
  echo "b=$B start $(date -u +%H:%M)"
  $PY -m train ism --recipe paper --dataset "$DATASET" --out "$OUT" --ckpt-dir "$OUT/ckpt" --threads 2 --resume \
    --set init=$SRC/ism --set refine_width=32 --set refine_bound="$(awk "BEGIN{print $B/255}")" "$@"
done

#!/usr/bin/env bash
# A defense's `train all` (same recipes, same commands as on the CPU) on one GPU, then float16
# weights (train.half) and the evaluation, in one script for a borrowed GPU with a time limit.
#
#   bash train/gpu.sh DATASET DATA OUT [DEADLINE_SECONDS]
#   RECIPE=paper EVAL_SECTIONS= bash train/gpu.sh celeba DATA OUT    # weights/celeba-paper: training only
#
# DATASET: cifar10 | celeba; DATA: its root; OUT: where weights, logs and results go. RECIPE=paper
# trains the paper's recipe (no `robust` stage). Training always runs to the end; the evaluation
# sections (EVAL_SECTIONS: groups separated by ';'; EVAL_ARGS override the defaults) then run in
# order, each resumable, until DEADLINE_SECONDS (default 560) after the start. Writes
# OUT/weights.tar.a? (the defense folder, in 15 MB parts: `cat weights.tar.a? | tar -x`) and
# OUT/results.tar.gz (training logs, evaluation results of the finished sections and their
# resumable state), and OUT/metrics.jsonl as each stage ends (its model card's measured metrics).
# Other knobs: COMPONENTS (the stages, in order), CLASSIFIER_ARGS (extra arguments for the classifier
# stage alone, e.g. "--set arch=preact18 --set channels=[64,128,256,512]"), HALF=0 (no float16 step),
# WEIGHTS=0 (no weights in OUT). Each stage's output goes to /tmp/logs/<stage>.log (in results.tar.gz).
set -uo pipefail
DATASET=${1:?dataset}; DATA=${2:?data root}; OUT=${3:?output folder}; DEADLINE=${4:-560}
export PYTHONUNBUFFERED=1
REPO=$PWD; DEVICE=${DEVICE:-cuda}; RECIPE=${RECIPE:-}
# smoke test on a CPU: DEVICE=cpu TRAIN_ARGS="--limit 300 --epochs 0.1" EVAL_ARGS="--limit 20 --small" bash ...
TRAIN_ARGS=${TRAIN_ARGS:-}; EVAL_ARGS=${EVAL_ARGS:-}
EVAL_SECTIONS=${EVAL_SECTIONS-autoattack;graybox,adaptive;latent,ablation,sanity,regeneration}
NAME=$DATASET${RECIPE:+-$RECIPE}
DEFAULT_COMPONENTS="classifier ism robust detector gan baselines pipeline"
[ "$RECIPE" = paper ] && DEFAULT_COMPONENTS="classifier ism detector gan baselines pipeline"
COMPONENTS=${COMPONENTS:-$DEFAULT_COMPONENTS}; CLASSIFIER_ARGS=${CLASSIFIER_ARGS:-}
W=/tmp/w/$NAME; CK=/tmp/ckpt; LOGS=/tmp/logs
EV=/tmp/eval; mkdir -p "$OUT" "$EV" "$LOGS"
step() { echo "== $(date +%T) t=${SECONDS}s $*"; }
for c in $COMPONENTS; do
  step "train $c"
  extra=""; [ "$c" = classifier ] && extra=$CLASSIFIER_ARGS
  # shellcheck disable=SC2086
  python3 -m train "$c" --dataset "$DATASET" ${RECIPE:+--recipe "$RECIPE"} --data "$DATA" --out "$W" \
    --ckpt-dir "$CK" --device "$DEVICE" $TRAIN_ARGS $extra > "$LOGS/$c.log" 2>&1 || { tail -30 "$LOGS/$c.log"; exit 1; }
  case $c in robust) f=classifier/metrics.json;; gan) f=generator/metrics.json;; pipeline) f=defense.json;;
    baselines) f=baselines/magnet/metrics.json;; *) f=$c/metrics.json;; esac
  card=$W/$f; [ -f "$card" ] || card=/dev/null
  echo "{\"stage\": \"$c\", \"t\": $SECONDS, \"file\": \"$f\", \"metrics\": $(grep . "$card" || echo null)}" \
    | tr -d '\n' >> "$OUT/metrics.jsonl"; echo >> "$OUT/metrics.jsonl"
  tail -1 "$OUT/metrics.jsonl"
done
if [ "${HALF:-1}" = 1 ]; then
  step "float16"
  python3 -m train.half "$W" --data "$DATA" --device "$DEVICE" || step "float16 refused: float32 kept"
fi
if [ "${WEIGHTS:-1}" = 1 ]; then
  tar -cf - -C /tmp/w "$NAME" | split -b 15m - "$OUT/weights.tar."
  step "weights written ($(du -ch "$OUT"/weights.tar.* | tail -1 | cut -f1))"
fi
left() { echo $((DEADLINE - SECONDS)); }
ev() {   # one resumable evaluation call, stopped at the deadline
  [ "$(left)" -gt 20 ] || { step "skip $1 (deadline)"; return; }
  step "evaluate $1"
  timeout "$(left)" python3 -m ism.eval --dataset "$DATASET" --data "$DATA" --weights "$W" --device "$DEVICE" \
    --out "$EV" --batch-size 500 --adaptive-images 1000 --autoattack-images 1000 --sections "$1" $EVAL_ARGS
}
IFS=';' read -ra GROUPS_ <<< "$EVAL_SECTIONS"
for g in "${GROUPS_[@]}"; do ev "$g"; done
step "done"
tar -czf "$OUT/results.tar.gz" -C /tmp ckpt/logs eval logs -C "$REPO" .cache/eval 2>/dev/null || \
  tar -czf "$OUT/results.tar.gz" -C /tmp ckpt/logs eval logs

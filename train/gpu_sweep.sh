#!/usr/bin/env bash
# How far does a longer `robust` stage move the whole defense? One borrowed GPU, one call:
#
#   bash train/gpu_sweep.sh DATASET DATA OUT ["2 4 6"] [DEADLINE_SECONDS] [SHIP_MAX]
#   (CIFAR-10's JPEGs travel to the machine as one file: `python -m train.pack`)
#
# trains `classifier` and `ism` once (the data set's recipes, as `train all`), then one
# branch per value of EPOCHS, all at once on the same GPU: `robust --epochs E`, `detector`, `gan`,
# `pipeline`, float16 (train.half, which also measures the pipeline's clean accuracy on the whole
# test set), the evaluation's clean + AutoAttack sections (standard, 8/255, AA_IMAGES images,
# default 500), `baselines` (MagNet, DDSA: they protect the classifier before `robust`, the same in
# every branch) and adaptive PGD-10 at 8/255, until DEADLINE_SECONDS (default 540) after the start.
# Measured on one H200 with EPOCHS "2 4 6" (results/cifar10-robust-sweep.md): the shared stages
# 105 s; with three branches side by side robust took 54 / 94 / 124 s, detector ~115 s, gan
# ~90 s, pipeline ~25 s and AutoAttack on 500 images ~125 s: about 10 minutes in all, so give it
# the 600 s of one call with two branches, or AA_IMAGES=250 with three.
# Every branch starts from the same classifier and ISM, so the branches differ by the stage's
# length alone. Writes OUT/sweep.json (each branch's figures), OUT/results.tar.gz (logs, results)
# and OUT/weights.tar.a? (15 MB parts: the branch with the best AutoAttack accuracy through the
# pipeline among those with E <= SHIP_MAX, default 4: the longest the CPU budget allows).
set -uo pipefail
DATASET=${1:?dataset}; DATA=${2:?data root}; OUT=${3:?output folder}
EPOCHS=${4:-2 4 6}; DEADLINE=${5:-540}; SHIP_MAX=${6:-4}; AA_IMAGES=${AA_IMAGES:-500}
export PYTHONUNBUFFERED=1
DEVICE=${DEVICE:-cuda}; TRAIN_ARGS=${TRAIN_ARGS:-}; EVAL_ARGS=${EVAL_ARGS:-}
S=/tmp/sweep; mkdir -p "$OUT" "$S/logs"
step() { echo "== $(date +%T) t=${SECONDS}s $*"; }
left() { echo $((DEADLINE - SECONDS)); }
train() {  # train COMPONENT OUT CKPT [args]; a branch's training stops at the deadline too
  local c=$1 w=$2 ck=$3; shift 3
  timeout "$(( $(left) > 0 ? $(left) + 15 : 15 ))" python3 -m train "$c" --dataset "$DATASET" --data "$DATA" --out "$w" --ckpt-dir "$ck" --device "$DEVICE" \
    $TRAIN_ARGS "$@"
}
for c in classifier ism; do
  step "train $c (shared)"
  train "$c" "$S/shared" "$S/ckpt/shared" > "$S/logs/shared-$c.log" 2>&1 || { tail -20 "$S/logs/shared-$c.log"; exit 1; }
done
ev() {  # ev E SECTION: one resumable evaluation of branch E, stopped at the deadline
  [ "$(left)" -gt 20 ] || { step "r$1: skip $2 (deadline)"; return; }
  step "r$1: evaluate $2"
  timeout "$(left)" python3 -m ism.eval --dataset "$DATASET" --data "$DATA" --weights "$S/r$1" \
    --device "$DEVICE" --name "r$1" --out "$S/eval" --batch-size 500 --autoattack-images "$AA_IMAGES" \
    --adaptive-images 1000 --adaptive-eps 8/255 --sections "$2" $EVAL_ARGS
}
branch() {  # one branch: robust for E epochs, then everything that reads its weights
  local e=$1 w=$S/r$1 ck=$S/ckpt/r$1 log=$S/logs/r$1.log
  cp -r "$S/shared" "$w"
  {
    step "r$e: robust --epochs $e"; train robust "$w" "$ck" --epochs "$e" || return 1
    for c in detector gan pipeline; do step "r$e: $c"; train "$c" "$w" "$ck" || return 1; done
    step "r$e: float16"; python3 -m train.half "$w" --data "$DATA" --device "$DEVICE"
    ev "$e" autoattack
    if [ "$(left)" -gt 20 ]; then     # the same in every branch: after the figure, if time is left
      step "r$e: baselines"; train baselines "$w" "$ck"
    else step "r$e: skip baselines (deadline)"; fi
    ev "$e" adaptive
    step "r$e: done"
  } > "$log" 2>&1
}
for e in $EPOCHS; do branch "$e" & done
wait
for e in $EPOCHS; do grep -h "^== \|pipeline clean accuracy\|Error" "$S/logs/r$e.log"; done
python3 - "$S" "$OUT" "$SHIP_MAX" $EPOCHS <<'EOF'
import json, re, sys
from pathlib import Path
s, out, ship_max, epochs = Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3]), sys.argv[4:]
rows = {}
for e in epochs:
    log = (s / "logs" / f"r{e}.log").read_text(errors="replace")
    half = [json.loads(m) for m in re.findall(r'^(\{"pipeline clean accuracy.*\})$', log, re.M)]
    res = [*(s / "eval").glob(f"r{e}.json"), *(s / "eval").glob(f"r{e}-limit*.json")]   # --limit: a smoke test
    res = json.loads(res[0].read_text()) if res else {}
    rows[e] = {"half": half[-1] if half else None, **{k: res[k] for k in ("clean", "autoattack", "adaptive")
                                                       if k in res}}
ok = [e for e in epochs if float(e) <= ship_max and "defense" in rows[e].get("autoattack", {})]
best = max(ok, key=lambda e: rows[e]["autoattack"]["defense"]) if ok else None
(out / "sweep.json").write_text(json.dumps({"branches": rows, "shipped_branch": best}, indent=1))
print(json.dumps({"branches": rows, "shipped_branch": best}, indent=1))
(s / "best").write_text(best or "")
EOF
best=$(cat "$S/best")
[ -n "$best" ] && tar -cf - -C "$S" "r$best" | split -b 15m - "$OUT/weights.tar."
tar -czf "$OUT/results.tar.gz" -C "$S" $(cd "$S" && ls -d logs eval ckpt/*/logs 2>/dev/null)
step "written: $(ls "$OUT")"

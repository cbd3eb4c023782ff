#!/usr/bin/env bash
# One call on a lent GPU (the `device` tool's `run`), prepared here and run there as a whole:
#   1. trains demo-model candidates side by side for TRAIN_S seconds each (rsqrt schedule, so a
#      run stopped anywhere is a finished model) and exports the newest checkpoint and the one
#      about half-way of each in bfloat16 as $OUT/<name>_{last,half}.tgz;
#   2. runs benchmarks/bench_decode.py on the T5.1.1-small -> large embedded pair (issue 7, "against
#      the limit");
#   3. runs benchmarks/profile_ops.py on the same pair (per-part and per-op device time of each
#      method, the rules' per-round cost over spec_decode, the compiled HLO of each program).
#   Reports and logs come back as $OUT/logs.tgz.
#   bash scripts/gpu_session.sh                      # on the device (OUT is set there)
#   OUT=/tmp/gpu_out SMOKE=1 bash scripts/gpu_session.sh   # CPU dry run of the same steps
# Wheels in .whl/ (gin-config, and the flax/optax/orbax versions tested here) are installed into
# /tmp/site first; if the carried versions do not import, the machine's own are used. Fetch them
# here with: mkdir -p .whl && python3 -m pip download --no-deps --only-binary=:all:
#   --python-version 3.12 --implementation cp --platform manylinux2014_x86_64 -d .whl
#   gin-config==0.5.0 flax==0.12.8 optax==0.2.8 orbax-checkpoint==0.12.8
# (`.whl/` is git-ignored locally via .git/info/exclude; name it in the device call's `carry`).
# Env: TRAIN_S (seconds of training), SKIP_TRAIN=1, SKIP_BENCH=1, SKIP_PROFILE=1, PROFILE_S, SMOKE=1.
set -u
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/gpu_out}
PY=${PY:-python3}
SMOKE=${SMOKE:-0}
mkdir -p "$OUT" /tmp/gpu_logs
LOGS=/tmp/gpu_logs
if [ "$SMOKE" = 1 ]; then
  TRAIN_S=${TRAIN_S:-300}; CKPT_EVERY=8; MAX_STEPS=24; BENCH_S=${BENCH_S:-120}
  BENCH_ARGS=(--tiny); PROFILE_ARGS=(--tiny); PROFILE_S=${PROFILE_S:-120}
else
  TRAIN_S=${TRAIN_S:-270}; CKPT_EVERY=250; MAX_STEPS=1000000; BENCH_S=${BENCH_S:-230}
  BENCH_ARGS=(--pairs=small_large_embedded --batch_sizes=1
    --methods=verifier,drafter,spec_decode,spec_chow,spec_opt,spec_token_v3,lossy
    --max_decode_len=64)
  PROFILE_ARGS=(--pair=small_large_embedded --methods=verifier,spec_decode,spec_chow,spec_token_v3,spec_opt
    --calls=2 --trials=2 --dump_hlo); PROFILE_S=${PROFILE_S:-200}
fi

if ls .whl/*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD
  if ! $PY -c "import flax, optax, orbax.checkpoint, gin, jax; jax.numpy.ones(2).block_until_ready()"; then
    echo "carried wheels do not import; using the machine's flax/optax/orbax"
    mkdir -p /tmp/gin_only && cp -r /tmp/site/gin /tmp/site/gin_config* /tmp/gin_only/
    export PYTHONPATH=/tmp/gin_only:$PWD
  fi
else
  export PYTHONPATH=$PWD
fi
$PY -c "import jax, flax, optax, orbax.checkpoint as o; print('jax', jax.__version__, jax.devices(), 'flax', flax.__version__, 'optax', optax.__version__, 'orbax', o.__version__)"
nvidia-smi -L 2>/dev/null

# --- 1. training candidates -------------------------------------------------------------------
VCONF=spec_cascade_jax/demo_data/ende/models/verifier/config.json
DCONF=spec_cascade_jax/demo_data/ende/models/drafter/config.json
train() {  # name role batch dropout lr
  local name=$1 role=$2 batch=$3 dropout=$4 lr=$5
  XLA_PYTHON_CLIENT_PREALLOCATE=false timeout "$TRAIN_S" $PY -m spec_cascade_jax.train \
    --gin_file="runs/train_demo_${role}.gin" \
    --gin.CHECKPOINT_DIR="'/tmp/ck_$name'" --gin.EXPORT_DIR=None \
    --gin.NUM_STEPS=$MAX_STEPS --gin.BATCH_SIZE="$batch" --gin.LEARNING_RATE="$lr" \
    --gin_bindings="run_train.length_buckets=[]" --gin_bindings="run_train.schedule='rsqrt'" \
    --gin_bindings="run_train.dropout_rate=$dropout" --gin_bindings="run_train.progress=False" \
    --gin_bindings="run_train.log_every=250" --gin_bindings="run_train.checkpoint_every=$CKPT_EVERY" \
    --gin_bindings="run_train.max_checkpoints_to_keep=1000" >"$LOGS/train_$name.log" 2>&1
  echo "train $name exited $?"
}
T0=$(date +%s)
if [ "${SKIP_TRAIN:-0}" != 1 ]; then
  train vA verifier 128 0.1 2e-3 &
  train vB verifier 256 0.2 2e-3 &
  train dA drafter 128 0.1 2e-3 &
  wait
fi
echo "training took $(( $(date +%s) - T0 )) s"

export_one() {  # name config step tag
  local name=$1 conf=$2 step=$3 tag=$4
  XLA_PYTHON_CLIENT_PREALLOCATE=false $PY scripts/export_train_checkpoint.py --checkpoint_dir="/tmp/ck_$name" \
    --config_json="$conf" --step="$step" --export_dir="/tmp/ex/${name}_$tag" --dtype=bfloat16 \
    --info="{\"gpu_candidate\": \"$name\", \"step\": $step}" >"$LOGS/export_${name}_$tag.log" 2>&1
  echo "export $name step $step: $?"
}
mkdir -p /tmp/ex
EXPORT_NAMES="vA vB dA"; [ "${SKIP_TRAIN:-0}" = 1 ] && EXPORT_NAMES=""  # no stale /tmp checkpoints
for name in $EXPORT_NAMES; do
  conf=$VCONF; [ "${name:0:1}" = d ] && conf=$DCONF
  steps=$(ls "/tmp/ck_$name" 2>/dev/null | grep -E '^[0-9]+$' | sort -n)
  last=$(echo "$steps" | tail -1)
  [ -z "$last" ] && { echo "no checkpoint for $name"; continue; }
  half=$(echo "$steps" | awk -v l="$last" '$1 <= l / 2' | tail -1)
  export_one "$name" "$conf" "$last" last &
  [ -n "$half" ] && export_one "$name" "$conf" "$half" half &
done
wait
for d in $( [ -n "$EXPORT_NAMES" ] && ls -d /tmp/ex/* 2>/dev/null ); do  # each archive < 16 MiB
  [ -d "$d" ] && tar czf "$OUT/$(basename "$d").tgz" -C /tmp/ex "$(basename "$d")"
done

# --- 2. benchmark at real T5 sizes ------------------------------------------------------------
[ "${SKIP_BENCH:-0}" = 1 ] && BENCH_ARGS=(--help)
machine=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
timeout "$BENCH_S" $PY benchmarks/bench_decode.py "${BENCH_ARGS[@]}" \
  --machine="${machine:-cpu dry run} (lent device machine)" --out_dir=/tmp/gpu_logs/bd \
  >"$LOGS/bench.log" 2>&1
echo "bench exited $?"
tail -40 "$LOGS/bench.log"

# --- 3. op profile of every speculative rule ----------------------------------------------------
if [ "${SKIP_PROFILE:-0}" != 1 ]; then
  timeout "$PROFILE_S" $PY benchmarks/profile_ops.py "${PROFILE_ARGS[@]}" \
    --machine="${machine:-cpu dry run} (lent device machine)" --out_dir=/tmp/gpu_logs/po \
    >"$LOGS/profile.log" 2>&1
  echo "profile exited $?"
  grep -A8 "minus \`spec_decode\`" "$LOGS/profile.log"
fi
tar czf "$OUT/logs.tgz" -C /tmp gpu_logs
for f in "$LOGS"/train_*.log; do echo "== $f"; grep -iE "step|loss" "$f" | tail -3; done
ls -la "$OUT"

#!/usr/bin/env bash
# Runs the gin-configured job on this host (CPU or GPU; also one TPU VM worker, see tpu_vm.sh).
#
# Usage:
#   launch/local.sh [--dry_run] [--platform=auto|cpu|gpu|tpu] FILE.gin [MORE.gin ...] [FLAGS ...]
#
# Every argument ending in ".gin" that is not a flag becomes --gin_file=ARG, in the order given
# (later files override earlier ones). Every other argument goes to the job unchanged, e.g.
#   launch/local.sh models/tiny.gin tasks/mock.gin runs/smoke.gin --gin.OUTPUT_DIR="'/tmp/out'"
# runs
#   python -m spec_cascade_jax.main --gin_file=models/tiny.gin ... --gin.OUTPUT_DIR='/tmp/out'
#
# Options (consumed here, not passed on):
#   --dry_run          print the command, environment included, instead of running it
#   --platform=NAME    set JAX_PLATFORMS=NAME; "auto" (default) leaves JAX's choice (GPU if present)
# Environment: PYTHON (default: python) is the interpreter.
#
# The job also gets: the repository on PYTHONPATH (works without `pip install -e .`),
# PYTHONUNBUFFERED=1, TF_CPP_MIN_LOG_LEVEL=2 (quiet TensorFlow, used by seqio for data), and
# TF_FORCE_GPU_ALLOW_GROWTH=true (TensorFlow must not reserve the GPU memory JAX needs).
set -euo pipefail

REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# Prints its arguments as one shell-quoted command line that can be pasted back into a shell.
quote_command() {
  local out=() arg
  for arg in "$@"; do
    if [[ "$arg" =~ ^[A-Za-z0-9_./=:,@%+-]+$ ]]; then
      out+=("$arg")
    else
      out+=("'${arg//\'/\'\\\'\'}'")
    fi
  done
  local IFS=' '
  printf '%s\n' "${out[*]}"
}

dry_run=0
platform=auto
job_args=()
while (($#)); do
  case "$1" in
    --dry_run) dry_run=1 ;;
    --platform=*) platform="${1#--platform=}" ;;
    --platform)
      (($# >= 2)) || { echo "local.sh: --platform needs a value" >&2; exit 2; }
      platform="$2"
      shift
      ;;
    -*) job_args+=("$1") ;;
    *.gin) job_args+=("--gin_file=$1") ;;
    *) job_args+=("$1") ;;
  esac
  shift
done

case "$platform" in
  auto | cpu | gpu | cuda | tpu) ;;
  *)
    echo "local.sh: unknown --platform=$platform (use auto, cpu, gpu or tpu)" >&2
    exit 2
    ;;
esac

env_vars=(
  "PYTHONPATH=${REPO_DIR}${PYTHONPATH:+:${PYTHONPATH}}"
  "PYTHONUNBUFFERED=1"
  "TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}"
  "TF_FORCE_GPU_ALLOW_GROWTH=true"
)
if [[ "$platform" != auto ]]; then
  env_vars+=("JAX_PLATFORMS=$platform")
fi

command=(env "${env_vars[@]}" "${PYTHON:-python}" -m spec_cascade_jax.main "${job_args[@]}")

if ((dry_run)); then
  quote_command "${command[@]}"
else
  exec "${command[@]}"
fi

#!/usr/bin/env bash
# Runs the gin-configured job on every worker of a Cloud TPU VM (single host or pod slice).
#
# Usage:
#   launch/tpu_vm.sh --tpu_name=NAME --zone=ZONE [OPTIONS] FILE.gin [MORE.gin ...] [FLAGS ...]
#
# Steps, each one gcloud command (printed instead of run with --dry_run):
#   1. create   gcloud compute tpus tpu-vm create NAME --accelerator-type=TYPE --version=VERSION
#   2. package  tar this repository (no .git, caches or outputs) into one archive
#   3. copy     gcloud compute tpus tpu-vm scp ARCHIVE NAME:... --worker=all
#   4. install  gcloud compute tpus tpu-vm ssh NAME --worker=all: unpack, pip install -e . jax[tpu]
#   5. run      gcloud compute tpus tpu-vm ssh NAME --worker=all: launch/local.sh --platform=tpu ...
#   6. delete   (only with --delete_after) gcloud compute tpus tpu-vm delete NAME --quiet
# Every worker runs the same command; on a multi-host slice the job must call
# jax.distributed.initialize() (no arguments needed on Cloud TPU) before touching devices.
#
# Options (consumed here):
#   --tpu_name=NAME            TPU VM name (required)
#   --zone=ZONE                e.g. us-central2-b (required)
#   --accelerator_type=TYPE    e.g. v4-8, v4-32, v5litepod-8 (default: v4-8)
#   --version=VERSION          TPU VM software version (default: tpu-ubuntu2204-base)
#   --project=PROJECT          GCP project (default: gcloud's configured project)
#   --skip_create              the TPU VM already exists
#   --skip_install             the package is already installed on the workers (code unchanged)
#   --delete_after             delete the TPU VM after the job (even if it failed)
#   --dry_run                  print the commands instead of running them
# Gin files (arguments ending in ".gin") become --gin_file=FILE, relative to the repository or
# gin_configs/ on the workers; all other arguments go to the job unchanged, e.g.
#   launch/tpu_vm.sh --tpu_name=sc --zone=us-central2-b --accelerator_type=v4-32 \
#     models/pair_t5_1_1_small_large.gin tasks/xsum.gin runs/eval_sweep.gin \
#     --gin.OUTPUT_DIR="'gs://bucket/xsum'" --gin.VOCAB_PATH="'gs://bucket/spm.model'"
set -euo pipefail

REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REMOTE_DIR="spec_cascade_jax"  # Relative to the home directory on each worker.
ARCHIVE_NAME="spec_cascade_jax_src.tar.gz"
JAX_TPU_REQUIREMENT="jax[tpu]>=0.10.2,<0.11"
LIBTPU_INDEX="https://storage.googleapis.com/jax-releases/libtpu_releases.html"

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

die() {
  echo "tpu_vm.sh: $*" >&2
  exit 2
}

tpu_name=""
zone=""
accelerator_type="v4-8"
version="tpu-ubuntu2204-base"
project=""
skip_create=0
skip_install=0
delete_after=0
dry_run=0
job_args=()
while (($#)); do
  case "$1" in
    --tpu_name=*) tpu_name="${1#*=}" ;;
    --zone=*) zone="${1#*=}" ;;
    --accelerator_type=*) accelerator_type="${1#*=}" ;;
    --version=*) version="${1#*=}" ;;
    --project=*) project="${1#*=}" ;;
    --tpu_name | --zone | --accelerator_type | --version | --project)
      (($# >= 2)) || die "$1 needs a value"
      declare "${1#--}=$2"
      shift
      ;;
    --skip_create) skip_create=1 ;;
    --skip_install) skip_install=1 ;;
    --delete_after) delete_after=1 ;;
    --dry_run) dry_run=1 ;;
    -*) job_args+=("$1") ;;
    *.gin) job_args+=("--gin_file=$1") ;;
    *) job_args+=("$1") ;;
  esac
  shift
done

[[ -n "$tpu_name" ]] || die "--tpu_name is required"
[[ -n "$zone" ]] || die "--zone is required"

# Flags shared by every gcloud call.
where=("--zone=$zone")
if [[ -n "$project" ]]; then
  where+=("--project=$project")
fi

archive="${TMPDIR:-/tmp}/${ARCHIVE_NAME}"
install_script="rm -rf ${REMOTE_DIR} && mkdir -p ${REMOTE_DIR}"
install_script+=" && tar -xzf ${ARCHIVE_NAME} -C ${REMOTE_DIR} && cd ${REMOTE_DIR}"
install_script+=" && python3 -m pip install --upgrade pip"
install_script+=" && python3 -m pip install -e . '${JAX_TPU_REQUIREMENT}' -f ${LIBTPU_INDEX}"
remote_job=(env PYTHON=python3 bash launch/local.sh --platform=tpu "${job_args[@]}")
run_script="cd ${REMOTE_DIR} && $(quote_command "${remote_job[@]}")"

create_argv=(gcloud compute tpus tpu-vm create "$tpu_name" "${where[@]}"
  "--accelerator-type=$accelerator_type" "--version=$version")
package_argv=(tar -czf "$archive" -C "$REPO_DIR" --exclude=.git --exclude=__pycache__
  --exclude=*.egg-info --exclude=.pytest_cache --exclude=./out --exclude=./outputs .)
copy_argv=(gcloud compute tpus tpu-vm scp "$archive" "$tpu_name:$ARCHIVE_NAME" "${where[@]}"
  --worker=all)
install_argv=(gcloud compute tpus tpu-vm ssh "$tpu_name" "${where[@]}" --worker=all
  "--command=$install_script")
run_argv=(gcloud compute tpus tpu-vm ssh "$tpu_name" "${where[@]}" --worker=all
  "--command=$run_script")
delete_argv=(gcloud compute tpus tpu-vm delete "$tpu_name" "${where[@]}" --quiet)

steps=()
((skip_create)) || steps+=(create)
((skip_install)) || steps+=(package copy install)
steps+=(run)
((delete_after)) && steps+=(delete)

# Runs (or, with --dry_run, prints) the command of step $1, e.g. `run_step copy`.
run_step() {
  local -n argv="$1_argv"
  if ((dry_run)); then
    quote_command "${argv[@]}"
  else
    echo "+ $(quote_command "${argv[@]}")" >&2
    "${argv[@]}"
  fi
}

status=0
for step in "${steps[@]}"; do
  if [[ "$step" == delete ]]; then
    run_step delete || status=$?  # Delete even after a failed step.
  elif ((status == 0)); then
    run_step "$step" || status=$?
  fi
done
exit "$status"

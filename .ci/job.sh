# Sourced by the CI jobs (.ci/run, .ci/vllm, .ci/eval, .ci/engines): what every job does the same way.

# job_venv [VAR]: make and activate the job's virtual environment, with pip upgraded and the CPU build of
# torch (an unpinned torch pulls a multi-GB CUDA build). When the variable named VAR is set, its folder
# is reused (or made there) and kept; otherwise a fresh environment lives in a temporary folder removed
# when the job ends: left behind, the jobs' environments (about 8 GB a run) fill the disk of a machine
# that keeps /tmp between runs.
job_venv() {
  local reuse=${1:-}
  if [ -n "$reuse" ] && [ -n "${!reuse:-}" ]; then
    venv=${!reuse}
  else
    job_tmp=$(mktemp -d)
    trap 'rm -rf "$job_tmp"' EXIT
    venv=$job_tmp/venv
  fi
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  # shellcheck disable=SC1091
  source "$venv/bin/activate"
  python -m pip install -q --upgrade pip
  python -m pip install -q torch==2.13.0
}

# job_exit NAME RC: end the job with pytest's exit code RC, except 5 (no tests collected): a failure.
job_exit() {
  if [ "$2" -eq 5 ]; then
    echo "$1: pytest collected no tests (exit code 5): that is a failure, not a pass." >&2
    exit 1
  fi
  exit "$2"
}

#!/usr/bin/env bash
# One call on a GPU machine, made so that it cannot be wasted. From the repository root:
#
#   bash benchmarks/gpu_check.sh --quick   # <= 3 minutes: GPU parity tests + 300 items of each preset
#   bash benchmarks/gpu_check.sh           # <= 9.5 minutes: GPU + deflate + glue tests, bench_nearest.py
#                                          #   (pixel-art scaling on the GPU vs the CPU, byte parity),
#                                          #   bench_gpu.py on the standard workload (flatness in N
#                                          #   included), cpu_share.py
#
# Every stage prints one line and appends one JSON line to $OUT/gpu_check.jsonl the moment it ends
# (its full output is $OUT/<stage>.txt); bench_gpu.py appends its own stages to the same file as
# each one ends. Every step is capped with `timeout`, sized so that the steps after it keep their
# time (GPU_CHECK_BUDGET seconds in all). A missing package is named and its stage skipped or
# degraded, never the whole run lost. Without a usable GPU it says so in one line and exits 0.
# Exit status: 0 when every stage passed (or there is no GPU), 1 otherwise (the last line names them).
#
# Wheels: the GPU machine has no package registry, so isal and hypothesis travel as wheels in the
# ignored folder .whl/ (carry it; GPU_CHECK_WHEELS names another). Only wheels for this Python
# (cpXY, or abi3 up to it), this machine (or any) and py3-none-any ones are installed, one at a time,
# into a folder on PYTHONPATH (not the system). To fill .whl/ on a machine with a registry:
#   for v in 3.11 3.12 3.13 3.14; do
#     pip download --only-binary=:all: --no-deps --python-version $v --platform manylinux_2_17_x86_64 \
#       --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 -d .whl isal
#   done
#   pip download --only-binary=:all: --no-deps -d .whl hypothesis attrs sortedcontainers
# Never commit wheels.
#
# GPU_CHECK_ALL=1: the whole test suite instead (test files that need hypothesis are left out, and
# named, when it is missing). BENCH_ARGS: more bench_gpu.py options. PYTHON: the interpreter.
set -uo pipefail

MODE=full
case "${1:-}" in
  "") ;;
  --quick) MODE=quick ;;
  *) echo "usage: bash benchmarks/gpu_check.sh [--quick]"; exit 2 ;;
esac
OUT=${OUT:-/tmp/gpucomp-gpu-check}
mkdir -p "$OUT"
LOG=$OUT/gpu_check.jsonl
PY=${PYTHON:-python3}
WHEELS=${GPU_CHECK_WHEELS:-.whl}
SITE=${TMPDIR:-/tmp}/gpucomp-site
if [ "$MODE" = quick ]; then BUDGET=${GPU_CHECK_BUDGET:-175}; else BUDGET=${GPU_CHECK_BUDGET:-560}; fi
START=$SECONDS
FAILED=()
export PYTHONPATH=. PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 MODE OUT PY WHEELS SITE BUDGET

if ! command -v "$PY" >/dev/null 2>&1; then
  echo "gpu_check: no $PY on this machine; nothing can run"
  exit 1
fi

left() { echo $((BUDGET - (SECONDS - START))); }

# record NAME STATUS SECONDS LIMIT FILE: one JSON line (Python writes it: it escapes JSON right).
record() {
  "$PY" - "$@" >>"$LOG" <<'PYEOF'
import json, sys
name, status, secs, limit, path = sys.argv[1:6]
try:
    lines = [x for x in open(path, errors="replace").read().splitlines() if x.strip()]
except OSError:
    lines = []
print(json.dumps({"stage": name, "status": status, "seconds": int(secs), "limit_s": int(limit),
                  "last_lines": lines[-8:]}))
PYEOF
}

# stage NAME CAP RESERVE CMD...: run CMD for at most CAP seconds, leaving RESERVE for what follows.
stage() {
  local name=$1 cap=$2 reserve=$3
  shift 3
  local limit=$(($(left) - reserve))
  ((limit > cap)) && limit=$cap
  if ((limit < 5)); then
    echo "[$name] skipped: no time left in the ${BUDGET} s budget" | tee "$OUT/$name.txt"
    record "$name" skipped 0 0 "$OUT/$name.txt"
    FAILED+=("$name(skipped)")
    return 1
  fi
  local t0=$SECONDS status
  timeout -k 5 "$limit" "$@" 2>&1 | tee "$OUT/$name.txt"
  local rc=${PIPESTATUS[0]}
  case $rc in
    0) status=ok ;;
    3) status="no GPU" ;;  # the device stage's answer, not a failure
    124 | 137) status="timed out after ${limit} s"; FAILED+=("$name(timeout)") ;;
    *) status="failed (exit $rc)"; FAILED+=("$name") ;;
  esac
  echo "[$name] $status in $((SECONDS - t0)) s"
  record "$name" "$status" $((SECONDS - t0)) "$limit" "$OUT/$name.txt"
  return "$rc"
}

environment() {
  echo "mode: $MODE, budget ${BUDGET} s, results in $OUT"
  echo "python: $(command -v "$PY") $("$PY" -c 'import sys; print(sys.version.split()[0])')"
  if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv,noheader || echo "nvidia-smi failed"
    nvidia-smi | head -15
  else
    echo "no nvidia-smi on this machine"
  fi
  echo "cores: $(nproc)"
  lscpu 2>/dev/null | grep -E 'Model name|^CPU\(s\)|Thread|Core|Socket|MHz' || echo "no lscpu"
  g++ --version 2>/dev/null | head -1 || echo "no g++: the deflate kernel's host build (byte parity) is skipped"
  nvcc --version 2>/dev/null | tail -2 || echo "no nvcc"
  git log -1 --format='commit %h %s' 2>/dev/null || true
}

# Wheels for this Python and machine only, one pip call each: one bad wheel costs only itself.
wheels() {
  if ! ls "$WHEELS"/*.whl >/dev/null 2>&1; then
    echo "no wheels in $WHEELS/: nothing to install"
    return 0
  fi
  if ! "$PY" -m pip --version >/dev/null 2>&1; then
    echo "pip missing: wheels in $WHEELS/ not installed"
    return 0
  fi
  local minor tag arch w f py abi plat p
  minor=$("$PY" -c 'import sys; print(sys.version_info[1])')
  tag=cp3$minor
  arch=$(uname -m)
  mkdir -p "$SITE"
  for w in "$WHEELS"/*.whl; do
    f=${w##*/}
    IFS=- read -r -a p <<<"${f%.whl}"
    py=${p[${#p[@]} - 3]} abi=${p[${#p[@]} - 2]} plat=${p[${#p[@]} - 1]}
    local fits=0
    [[ ".$py." == *".$tag."* ]] && fits=1
    [[ $abi == none && ".$py." == *".py3."* ]] && fits=1
    [[ $abi == abi3 && $py =~ ^cp3([0-9]+)$ ]] && ((BASH_REMATCH[1] <= minor)) && fits=1
    [[ $plat == any || $plat == *"$arch"* ]] || fits=0
    if ((!fits)); then
      echo "skipped $f (not for $tag on $arch)"
    elif "$PY" -m pip install -q --no-index --no-deps --no-compile --upgrade --target "$SITE" "$w" >/dev/null 2>&1; then
      echo "installed $f"
    else
      echo "failed to install $f (kept going)"
    fi
  done
}

packages() {
  "$PY" - <<'PYEOF'
import importlib
effects = {"cupy": "no GPU backend", "numpy": "nothing runs", "PIL": "nothing runs", "pytest": "no tests",
           "isal": "ISA-L missing: zlib fallback, slower fast preset", "hypothesis": "property tests left out",
           "pynvml": "memory from CUDA instead of NVML"}
for name, effect in effects.items():
    try:
        mod = importlib.import_module(name)
        print(f"{name} {getattr(mod, '__version__', '?')}")
    except Exception as err:
        print(f"missing: {name} ({effect}; {type(err).__name__}: {err})")
PYEOF
}

has() { "$PY" -c "import $1" >/dev/null 2>&1; }

test_args() {
  if [ -n "${GPU_CHECK_ALL:-}" ]; then
    TESTS=(tests/)
    if ! has hypothesis; then
      for f in $(grep -rl -E '^(from|import) hypothesis' tests --include='*.py'); do
        TESTS+=("--ignore=$f")
        echo "hypothesis missing: $f left out" >&2
      done
    fi
  elif [ "$MODE" = quick ]; then
    TESTS=(tests/render/test_cuda.py)
  else
    TESTS=(tests/render/test_cuda.py tests/encode/test_gpu_deflate.py tests/render/test_cuda_glue.py)
  fi
}

# Fails when a GPU test did not run: skipped GPU tests on the GPU machine are a failed check.
gpu_tests_ran() {
  "$PY" - "$OUT/pytest.xml" <<'PYEOF'
import sys
import xml.etree.ElementTree as ET
cases = ET.parse(sys.argv[1]).getroot().iter("testcase")
skipped = [c.get("name") for c in cases if c.get("classname", "").endswith("test_cuda") and c.find("skipped") is not None]
if skipped:
    print(f"GPU tests skipped on the GPU machine: {skipped[:10]}")
    raise SystemExit(1)
print("every GPU test ran")
PYEOF
}

export -f environment wheels packages gpu_tests_ran  # `timeout` runs them through bash -c
: >"$LOG"
stage environment 30 0 bash -c environment
"$PY" - >>"$LOG" <<'PYEOF'
import json, platform, shutil, subprocess, sys
gpu = "no nvidia-smi"
if shutil.which("nvidia-smi"):
    r = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                       capture_output=True, text=True, timeout=20)
    gpu = r.stdout.strip() or r.stderr.strip()
print(json.dumps({"stage": "identity", "device": gpu, "python": platform.python_version(), "python_path": sys.executable,
                  "machine": platform.machine()}))
PYEOF
[ -d "$WHEELS" ] && stage wheels 60 0 bash -c wheels
[ -d "$SITE" ] && export PYTHONPATH=.:$SITE
stage packages 60 0 bash -c packages
if ! stage device 90 0 "$PY" -c "
from gpucomp.render.select import cuda_status
ok, why = cuda_status()
print(why)
raise SystemExit(0 if ok else 3)"; then
  echo "no GPU: $(tail -1 "$OUT/device.txt"); nothing to check on this machine (results: $LOG)"
  "$PY" -c 'import json, sys; print(json.dumps({"stage": "summary", "gpu": False, "why": sys.argv[1]}))' \
    "$(tail -1 "$OUT/device.txt")" >>"$LOG"
  exit 0
fi
stage info 60 0 "$PY" -m gpucomp info
test_args
if has pytest; then
  if [ "$MODE" = quick ]; then cap=75 reserve=90; else cap=150 reserve=380; fi
  stage tests $cap $reserve "$PY" -m pytest -q -p no:cacheprovider -W default -rs --junitxml="$OUT/pytest.xml" "${TESTS[@]}"
  [ -f "$OUT/pytest.xml" ] && stage gpu_tests_ran 20 0 bash -c gpu_tests_ran
else
  echo "missing: pytest; tests not run" | tee "$OUT/tests.txt"
  record tests "skipped: pytest missing" 0 0 "$OUT/tests.txt"
  FAILED+=("tests(pytest missing)")
fi
if [ "$MODE" = quick ]; then
  stage bench_presets 600 0 "$PY" benchmarks/bench_gpu.py --presets 300 --jsonl "$LOG" --json "$OUT/bench_presets.json"
else
  # pixel-art scaling: nearest copies made on the GPU vs on the CPU, files compared byte for byte
  stage nearest 60 300 "$PY" benchmarks/bench_nearest.py -n 300 --json "$OUT/nearest.json"
  # shellcheck disable=SC2086
  stage bench_gpu 600 45 "$PY" benchmarks/bench_gpu.py --flat 1000 --json "$OUT/bench_gpu.json" --jsonl "$LOG" ${BENCH_ARGS:-}
  stage cpu_share 40 0 "$PY" benchmarks/cpu_share.py -n 8 --json "$OUT/cpu_share.json"
fi
if ((${#FAILED[@]})); then
  echo "gpu_check ($MODE): not passed: ${FAILED[*]} ($((SECONDS - START)) s; results in $OUT)"
  exit 1
fi
echo "gpu_check ($MODE): every stage passed ($((SECONDS - START)) s; results in $OUT)"

#!/usr/bin/env bash
# One-call GPU check: gpu tests + GPU benchmark, results under $OUT. Runs from the repo root
# with PYTHONPATH=. (no install). Wheels in .whl/ (e.g. isal) are installed to /tmp/site first.
set -uo pipefail
OUT=${OUT:-/tmp/gpucomp-gpu-check}
mkdir -p "$OUT"
export PYTHONPATH=. PYTHONUNBUFFERED=1
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=.:/tmp/site
fi
{ nvidia-smi; python3 -c "import cupy, numpy, PIL; print('cupy', cupy.__version__, 'numpy', numpy.__version__, 'pillow', PIL.__version__)"; \
  python3 -c "import isal; print('isal', isal.__version__)" || echo "isal missing: zlib fallback"; nproc; \
  lscpu | grep -E 'Model name|Thread|Core|Socket|MHz'; g++ --version | head -1 || echo "no g++"; } > "$OUT/env.txt" 2>&1
python3 -m gpucomp info > "$OUT/info.txt" 2>&1
# The GPU tests and the deflate kernel's host-build tests; GPU_CHECK_ALL=1 runs the whole suite.
TESTS="tests/test_cuda.py tests/test_gpu_deflate.py"
[ -n "${GPU_CHECK_ALL:-}" ] && TESTS=tests/
timeout 150 python3 -m pytest -q -p no:cacheprovider -W default $TESTS 2>&1 | tee "$OUT/pytest.txt"
timeout 240 python3 benchmarks/bench_gpu.py --json "$OUT/bench_gpu.json" ${BENCH_ARGS:-} 2>&1 | tee "$OUT/bench_gpu.txt"
timeout 60 python3 benchmarks/cpu_share.py -n 8 --json "$OUT/cpu_share.json" 2>&1 | tee "$OUT/cpu_share.txt"

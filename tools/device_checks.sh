#!/usr/bin/env bash
# The GPU checks the open issues owe, prepared as one command for a lent GPU machine (its image has
# torch, pytest, hypothesis and pytest-benchmark, but no pytest-xdist, no sybil, no network):
#
#   OUT=out bash tools/device_checks.sh        # from the repository root
#
# 1. Issue 10's figures: Method A at 288 x 144, 6 identities x 8 images x 2 modalities, bare steps
#    in fp32 against bf16 autocast + channels_last (images/s, speed-up), then the engine's overhead
#    in bf16 + channels_last (tests/bench/bench_training.py, its GPU variant). JSON: $OUT/bench.json.
# 2. With TEST_DEVICE=cuda, the test files that have a test taking the `device` fixture (found
#    from their source; losses, models, evaluation, data, then training), in one process. JUnit
#    XML: $OUT/tests.xml; the log: $OUT/tests.log.
#
# Each step has its own time limit (BENCH_S, TESTS_S seconds), so that the figures of step 1 come
# back whatever step 2 does; the defaults fit one 10-minute command. PYTHON (default python3) is
# the interpreter that has torch. TEST_DEVICE=cpu runs the same
# steps on the CPU (the GPU benchmark then skips itself), which is how this script is checked.
set -u
OUT=${OUT:-device-out}
mkdir -p "$OUT"
export PYTHONPATH=src:. PYTHONUNBUFFERED=1 TEST_DEVICE=${TEST_DEVICE:-cuda}
PYTHON=${PYTHON:-python3}  # the interpreter that has torch

"$PYTHON" - >"$OUT/versions.txt" 2>&1 <<'EOF'
import torch, torchvision
name = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, {name}")
EOF
cat "$OUT/versions.txt"

timeout "${BENCH_S:-240}" "$PYTHON" -m pytest -p no:cacheprovider tests/bench/bench_training.py \
    -o python_files='bench_*.py' --benchmark-only -k gpu --benchmark-json="$OUT/bench.json" \
    >"$OUT/bench.log" 2>&1
bench=$?
echo "step 1 (benchmark): exit $bench ($( (tail -n 1 "$OUT/bench.log") ))"

files=$("$PYTHON" - <<'PYEOF'
import ast
from pathlib import Path

order = ["losses", "models", "evaluation", "data", "training"]
found = []
for path in sorted(Path("tests").glob("*/test_*.py")):
    tree = ast.parse(path.read_text())
    if path.parent.name in order and any(
        isinstance(node, ast.FunctionDef) and node.name.startswith("test")
        and any(a.arg == "device" for a in node.args.args)
        for node in ast.walk(tree)
    ):
        found.append(path)
print(" ".join(str(p) for p in sorted(found, key=lambda p: (order.index(p.parent.name), p.name))))
PYEOF
)
echo "step 2 files: $files" >"$OUT/tests.log"
# shellcheck disable=SC2086 (the list is words)
timeout "${TESTS_S:-300}" "$PYTHON" -m pytest -p no:cacheprovider -q $files \
    --junitxml="$OUT/tests.xml" --durations=15 >>"$OUT/tests.log" 2>&1
tests=$?
echo "step 2 (tests, TEST_DEVICE=$TEST_DEVICE): exit $tests ($( (tail -n 1 "$OUT/tests.log") ))"

# 124 is timeout's status: a step stopped at its limit
exit $((bench != 0 ? bench : tests))

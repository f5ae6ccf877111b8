#!/usr/bin/env bash
# The foundation's GPU check, as one script: the adaptation oracle tests on CUDA, then the speed benchmark
# on CUDA and on the machine's CPU. Run from the repository root; needs torch with CUDA, pytest, tqdm,
# matplotlib, scipy and scikit-learn (the device image has them). Writes under ${OUT:-runs/gpu}.
set -uo pipefail
out=${OUT:-runs/gpu}
mkdir -p "$out"
export PYTHONPATH=src PYTHONUNBUFFERED=1
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"
python3 -m pytest -q -p no:cacheprovider tests/test_adaptation.py tests/test_spiral.py 2>&1 | tail -5 | tee "$out/tests.txt"
python3 benchmarks/adaptation_speed.py --device cuda --json "$out/adaptation_speed_cuda.json" | tee "$out/adaptation_speed_cuda.txt"
python3 benchmarks/adaptation_speed.py --device cpu --json "$out/adaptation_speed_cpu.json" | tee "$out/adaptation_speed_cpu.txt"

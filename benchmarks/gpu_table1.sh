#!/usr/bin/env bash
# Table 1 on a CUDA GPU in about 8 minutes: train_throughput.py (images/s of each method, eager, then captured in a CUDA graph), then ConvNet4 on full MNIST for the five methods (MAXL last: a step of
# it cost 5.5-7 vanilla steps on 2 CPU cores, README; not yet timed on a GPU), then, while time remains,
# ResNet-29 on the CIFAR-10 JPEG copy for vanilla and MN+iFiLM, then the rest. Run from the repository root with
# the data under ${DATA:-../shared/data} (mnist/, cifar10_jpg/). Results go to ${OUT:-runs/gpu_table1}:
# one folder per run (metrics.json) and table1.md. MNIST_EPOCHS, CIFAR_EPOCHS, BUDGET (seconds), DEVICE and
# PYTHON (default python3), EXTRA (more classify options, e.g. "--train-subset 500" for a quick check on a CPU) override the defaults.
set -uo pipefail
out=${OUT:-runs/gpu_table1}
data=${DATA:-../shared/data}
budget=${BUDGET:-470}
mnist_epochs=${MNIST_EPOCHS:-8}
cifar_epochs=${CIFAR_EPOCHS:-4}
mkdir -p "$out"
out=$(cd "$out" && pwd)  # absolute: the throughput benchmark runs from benchmarks/
export PYTHONPATH=src PYTHONUNBUFFERED=1
deadline=$((SECONDS + budget))

run() {  # run DATASET BACKBONE METHOD EPOCHS: skipped when under a minute is left
  local left=$((deadline - SECONDS))
  if [ "$left" -lt 60 ]; then echo "skip $1 $2 $3: ${left}s left"; return; fi
  timeout "$left" "${PYTHON:-python3}" -m meta_neighborhoods classify --dataset "$1" --backbone "$2" --method "$3" \
    --epochs "$4" --data-dir "$data" --cache-dir "$out/cache" --device "${DEVICE:-cuda}" --quiet --out "$out/$1-$2-$3" ${EXTRA:-}
}

"${PYTHON:-python3}" -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU')"
# iFiLM's cost first (about a minute): images/s of a training step of every method against vanilla's
(cd benchmarks && timeout 120 "${PYTHON:-python3}" train_throughput.py --device "${DEVICE:-cuda}" --json "$out/throughput.json") \
  | tee "$out/throughput.txt"
# then each step captured whole in a CUDA graph (one launch instead of thousands: does that meet the 0.6x goal?),
# in its own process, so that a capture that fails cannot spoil the eager figures
if [ "${DEVICE:-cuda}" = cuda ]; then
  (cd benchmarks && timeout 150 "${PYTHON:-python3}" train_throughput.py --device cuda --cuda-graph \
    --json "$out/throughput_graph.json") | tee "$out/throughput_graph.txt"
fi
for method in vanilla mn vanilla_ifilm mn_ifilm maxl; do run mnist convnet4 "$method" "$mnist_epochs"; done
for method in vanilla mn_ifilm mn vanilla_ifilm maxl; do run cifar10 resnet29 "$method" "$cifar_epochs"; done
rm -rf "$out/cache" "$out"/*/*.safetensors  # weights stay on the device; metrics and checkpoint JSON come back
"${PYTHON:-python3}" - "$out" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
rows = ["| data set | backbone | method | epochs | test accuracy | best epoch | seconds |", "| --- | --- | --- | --- | --- | --- | --- |"]
for path in sorted(out.glob("*/metrics.json")):
    m = json.loads(path.read_text())
    rows.append(f"| {m['dataset']} | {m['backbone']} | {m['method']} | {m['epochs']} | {m['test_accuracy']:.4f} | {m['best_epoch']} | {m['seconds']:.0f} |")
(out / "table1.md").write_text("\n".join(rows) + "\n")
print("\n".join(rows))
PY

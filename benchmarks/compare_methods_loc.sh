#!/usr/bin/env bash
# CAM and the gradient family side by side on Cluttered Fashion-MNIST, through `camloc evaluate`
# (same net, same data, CAM thresholds calibrated on val). Usage:
#   bash benchmarks/compare_methods_loc.sh NET_DIR [OUT_DIR] [METHODS...]
#   bash benchmarks/compare_methods_loc.sh --table OUT_DIR [METHODS...]   (only print the table of saved reports)
# NET_DIR: a GAP net trained by `make bench-loc` (e.g. bench-results/localization/nets/cam-gapnet-s8).
# CAMLOC: the camloc command, split on spaces (default .venv/bin/camloc), e.g.
#   CAMLOC="env PYTHONPATH=$PWD/src .venv/bin/camloc" to run a source tree's code.
set -euo pipefail
table_only=0
if [ "${1:-}" = "--table" ]; then table_only=1; shift; set -- none "$@"; fi
net=${1:?usage: compare_methods_loc.sh NET_DIR [OUT_DIR] [METHODS...]}
out=${2:-bench-results/methods-loc}
shift $(( $# > 1 ? 2 : 1 ))
methods=${*:-cam gradcam gradcam++ xgradcam layercam scorecam}
read -r -a camloc <<< "${CAMLOC:-.venv/bin/camloc}"
mkdir -p "$out"
for m in $methods; do
  [ "$table_only" = 1 ] && break
  start=$(date +%s)
  "${camloc[@]}" evaluate --data cluttered:test --model "$net" --method "$m" --resolution native --map-sizes native \
    --calibrate-on cluttered:val --report "$out/$m.json" --quiet > "$out/$m.txt"
  echo "$m: $(( $(date +%s) - start )) s"
done
python3 - "$out" $methods <<'PY'
import json, sys
out, methods = sys.argv[1], sys.argv[2:]
print("| method | top-1 cls | top-1 loc | GT-known loc | MaxBoxAccV2 30 / 50 / 70 (val-calibrated) | mean | PxAP |")
print("|---|---:|---:|---:|---|---:|---:|")
for m in methods:
    r = json.load(open(f"{out}/{m}.json"))
    v = r.get("calibrated", r)["maxboxacc_v2"]
    print(f"| {m} | {r['top1_cls']:.1f} | {r['top1_loc']:.1f} | {r['gt_known_loc']:.1f} | "
          f"{v['30']:.1f} / {v['50']:.1f} / {v['70']:.1f} | {v['mean']:.1f} | {r.get('pxap', float('nan')):.1f} |")
PY

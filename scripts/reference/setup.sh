#!/usr/bin/env bash
# Installs the PyTorch reference (Debian's python3-torch 1.13 + OpenBLAS pthreads) if missing,
# then proves the fast BLAS is in use with a float32 matmul GFLOP/s check.
# usage: bash scripts/reference/setup.sh   (root; needs only Debian's apt repositories)
set -euo pipefail
PY=/usr/bin/python3
need=()
for p in python3-torch libopenblas0-pthread; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if ((${#need[@]})); then
  echo "installing: ${need[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
else
  echo "python3-torch and libopenblas0-pthread already installed"
fi
for t in 1 2; do
  OPENBLAS_NUM_THREADS=$t "$PY" - "$t" <<'PYEOF'
import os, sys, time
import torch
t = int(sys.argv[1])
torch.set_num_threads(1)
a = torch.randn(1024, 1024); b = torch.randn(1024, 1024)
for _ in range(3):
    a @ b
n = 20
t0 = time.perf_counter()
for _ in range(n):
    a @ b
gf = 2 * 1024 ** 3 * n / (time.perf_counter() - t0) / 1e9
with open("/proc/self/maps") as f:
    libs = sorted({l.split()[-1] for l in f if "blas" in l.lower() and "/" in l})
if t == 1:
    print(f"torch {torch.__version__} ({torch.__file__})")
    print("BLAS libraries mapped:", ", ".join(libs) or "none")
print(f"float32 1024x1024 matmul, {t} BLAS thread(s): {gf:.0f} GFLOP/s")
if not any("openblas" in l for l in libs) or gf < 20:
    sys.exit("ERROR: not running on OpenBLAS (reference BLAS is ~5 GFLOP/s); "
             "install libopenblas0-pthread and check `update-alternatives --display libblas.so.3-x86_64-linux-gnu`")
PYEOF
done

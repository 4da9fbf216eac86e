"""Shared set-up for the PyTorch baselines: thread count before torch is imported, paths, RSS."""
import os
import resource
import sys


def set_threads_from_argv(default=2):
    """--threads N = BLAS threads. OpenBLAS (pthreads) sizes its pool when torch loads, and torch.set_num_threads does not
    resize it, so --threads must reach OPENBLAS_NUM_THREADS before `import torch`."""
    n = default
    argv = sys.argv
    for i, a in enumerate(argv):
        if a == "--threads" and i + 1 < len(argv):
            n = int(argv[i + 1])
        elif a.startswith("--threads="):
            n = int(a.split("=", 1)[1])
    for var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(n)
    here = os.path.dirname(os.path.abspath(__file__))
    sys.dont_write_bytecode = True  # no __pycache__ in the repo
    sys.path.insert(0, os.path.join(here, "..", "..", "scripts", "reference"))
    return n


def torch_threads(default=1):
    """torch's own intra-op (OpenMP) pool for the non-BLAS ops. Default 1: with OpenBLAS-pthreads
    already running N spinning threads on the N cores, a second OpenMP pool of N threads
    oversubscribes them (measured on 2 cores, SmolLM2-135M shape: prefill 0.90 s -> 0.29 s and
    decode 189 -> 62 ms/step when torch uses 1 thread)."""
    for i, a in enumerate(sys.argv):
        if a == "--torch-threads" and i + 1 < len(sys.argv):
            return int(sys.argv[i + 1])
        if a.startswith("--torch-threads="):
            return int(a.split("=", 1)[1])
    return default


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def blas_library():
    try:
        with open("/proc/self/maps") as f:
            libs = {line.split()[-1] for line in f if "blas" in line.lower() and "/" in line}
        return sorted(os.path.basename(l) if "openblas-pthread" not in l else "openblas-pthread/" + os.path.basename(l)
                      for l in libs)
    except OSError:
        return []

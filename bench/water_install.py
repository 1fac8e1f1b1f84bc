"""Install time and size of the deep-learning framework candidates for ``lcgee[water]``.

Each candidate goes into a fresh virtualenv (``pip install --no-cache-dir numpy <candidate>``);
the script prints seconds and the size of ``site-packages`` per candidate, last line JSON.
Figures depend on the network and the machine's load (decision record 0012).

    python bench/water_install.py                 # jax, keras+jax, torch (CPU wheel)
    python bench/water_install.py jax             # one candidate
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CANDIDATES = {
    "jax": ["jax"],
    "jax+optax": ["jax", "optax"],
    "keras+jax": ["keras", "jax"],
    "torch-cpu": ["torch", "--index-url", "https://download.pytorch.org/whl/cpu"],
}


def _size_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6


def measure(name: str) -> dict[str, float | str]:
    with tempfile.TemporaryDirectory() as tmp:
        venv = Path(tmp) / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-cache-dir"]
        subprocess.run(pip + ["numpy"], check=True)
        base = _size_mb(venv / "lib")
        t0 = time.perf_counter()
        subprocess.run(pip + CANDIDATES[name], check=True)
        seconds = time.perf_counter() - t0
        total = _size_mb(venv / "lib")
    return {"candidate": name, "seconds": round(seconds, 1), "added_mb": round(total - base),
            "total_mb": round(total)}


def main() -> None:
    names = sys.argv[1:] or ["jax", "keras+jax", "torch-cpu"]
    rows = []
    for name in names:
        row = measure(name)
        print(f"{name:10s} {row['seconds']:7.1f} s  +{row['added_mb']} MB (venv {row['total_mb']} MB)")
        rows.append(row)
    print(json.dumps(rows))


if __name__ == "__main__":
    main()

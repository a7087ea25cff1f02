"""Cold-start cost: how long `import function_app` takes, against `import azure.functions` alone.

Each figure is the median of fresh interpreter runs (a new process each time, as a cold
start is). The baseline is measured in the same run, so the ratio is what to compare.
Run: python benchmarks/import_time.py [--runs 15]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROBE = "import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"


def measure(module: str, runs: int) -> float:
    samples = []
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, "-c", PROBE.format(module=module)], cwd=ROOT, capture_output=True, text=True, check=True
        )
        samples.append(float(out.stdout.strip()))
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    baseline = measure("azure.functions", args.runs)
    app = measure("function_app", args.runs)
    print(f"import azure.functions (baseline): {baseline * 1000:7.1f} ms (median of {args.runs})")
    print(f"import function_app:               {app * 1000:7.1f} ms (median of {args.runs})")
    print(f"ratio app/baseline: {app / baseline:.2f}x   goal: under 250 ms -> {'met' if app < 0.25 else 'MISSED'}")


if __name__ == "__main__":
    main()

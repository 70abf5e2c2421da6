"""`make bench`: run every benchmark in bench/ in turn; each prints its figures next to a baseline."""

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ORDER = [
    "bench_ratings.py",
    "bench_recompute.py",
    "bench_sampler.py",
    "bench_voting.py",
    "bench_fid.py",
    "bench_clip.py",
    "bench_import.py",
    "bench_scorers.py",
]


def main() -> int:
    only = set(sys.argv[1:])
    failed = []
    for name in ORDER:
        if only and name.removesuffix(".py") not in only and name not in only:
            continue
        path = HERE / name
        if not path.exists():
            continue
        print(f"\n=== {name} " + "=" * (60 - len(name)), flush=True)
        t0 = time.perf_counter()
        rc = subprocess.call([sys.executable, str(path)], cwd=HERE.parent)
        print(f"--- {name}: {time.perf_counter() - t0:.0f} s{'' if rc == 0 else f', exit {rc}'}", flush=True)
        if rc:
            failed.append(name)
    if failed:
        print("failed: " + ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

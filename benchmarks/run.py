"""`make bench`: run every benchmarks/bench_*.py and print one table of ratios."""

from __future__ import annotations

import importlib
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from common import Row, cpu_note, print_table


def main() -> int:
    only = sys.argv[1:]
    rows: list[Row] = []
    for path in sorted(Path(__file__).parent.glob("bench_*.py")):
        if only and not any(word in path.stem for word in only):
            continue
        module = importlib.import_module(path.stem)
        started = time.perf_counter()
        print(f"# {path.stem} ...", file=sys.stderr, flush=True)
        rows.extend(module.run())
        print(f"#   {time.perf_counter() - started:.1f}s", file=sys.stderr, flush=True)
    print(f"# {time.strftime('%Y-%m-%d %H:%M')} {cpu_note()}")
    print_table(rows)
    return 0 if all(r.ok for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())

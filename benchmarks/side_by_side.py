"""Run a benchmark script on this checkout and on an earlier commit, alternately, and compare.

    .venv/bin/python benchmarks/side_by_side.py --old fe9d886 --rounds 3 -- \\
        benchmarks/rebuild_bench.py --backend postgres --events 300000

The earlier commit is checked out into a temporary git worktree; both run with this checkout's
virtualenv, each with its own tree first on ``PYTHONPATH``. Rounds alternate old, new, old, new,
... so that the machine's drift (up to 2x from day to day here) falls on both alike. Every line
of a run's output that ends a figure in ``req/s`` or ``events/s`` is a measurement, named by the
text before the figure; the script prints each one's median per tree and new/old.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIGURE = re.compile(
    r"^(?P<label>.*?\S)\s*:?\s+(?P<value>[\d,]+(?:\.\d+)?) (?P<unit>req/s|events/s)"
)


def measurements(output: str) -> dict[str, float]:
    found = {}
    for line in output.splitlines():
        match = FIGURE.search(line.strip())
        if match:
            label = f"{match['label'].strip()} ({match['unit']})"
            found[label] = float(match["value"].replace(",", ""))
    return found


def run(tree: Path, script: list[str]) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run(  # noqa: S603 - the operator's own benchmark command
        [sys.executable, *script], cwd=tree, env=env, capture_output=True, text=True,
        check=False,
    )
    if done.returncode != 0:
        sys.stderr.write(done.stdout + done.stderr)
        raise SystemExit(f"benchmark failed in {tree}")
    return measurements(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--old", required=True, help="the earlier commit (any git revision)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("script", nargs=argparse.REMAINDER,
                        help="after --: the benchmark script and its arguments")
    args = parser.parse_args()
    script = [a for a in args.script if a != "--"]
    with tempfile.TemporaryDirectory(prefix="side-by-side-") as tmp:
        old_tree = Path(tmp) / "old"
        git = ["git", "worktree"]
        subprocess.run([*git, "add", "--detach", str(old_tree), args.old],  # noqa: S603
                       cwd=ROOT, check=True, capture_output=True)
        try:
            results: dict[str, dict[str, list[float]]] = {"old": defaultdict(list),
                                                          "new": defaultdict(list)}
            for round_ in range(1, args.rounds + 1):
                for name, tree in (("old", old_tree), ("new", ROOT)):
                    for label, value in run(tree, script).items():
                        results[name][label].append(value)
                    print(f"round {round_} {name}: done", flush=True)
        finally:
            subprocess.run([*git, "remove", "--force", str(old_tree)],  # noqa: S603
                           cwd=ROOT, check=False, capture_output=True)
    print(f"\n{'measurement':<64} {'old':>12} {'new':>12} {'new/old':>8}  "
          f"(medians of {args.rounds} alternating rounds; old = {args.old})")
    for label, values in results["new"].items():
        old_values = results["old"].get(label)
        if not old_values:
            continue
        old, new = statistics.median(old_values), statistics.median(values)
        print(f"{label[:64]:<64} {old:>12,.0f} {new:>12,.0f} {new / old:>8.3f}")


if __name__ == "__main__":
    main()

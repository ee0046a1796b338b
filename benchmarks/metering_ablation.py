"""Where metering's cost lies: the metered endpoint with its parts switched off one at a time.

    .venv/bin/python benchmarks/metering_ablation.py --rounds 3

The variants need hooks that have no place in the product, so they live in
``metering_ablation.patch``, applied to a temporary git worktree of this checkout (run with this
checkout's virtualenv, the worktree first on ``PYTHONPATH``, as ``side_by_side.py`` does). Each
variant is one ``predict_bench.py`` phase on PostgreSQL with ``serve --workers 2``, named by
``MODELLEDGER_ABLATION``:

- ``unmetered``: metering off (the ceiling the goal is measured against);
- ``spooled``: every call committed to the spool (SQLite, fsynced), nothing shipped;
- ``rawfile``: the spool's batch appended to a plain file and fdatasync'ed instead of SQLite,
  nothing shipped (what a segment-file spool would save);
- ``paced``: as ``spooled``, with commits at least 3 ms apart (larger groups, fewer fsyncs);
- ``discarded``: spooled, read and deleted by the supervisor's shipper, not stored;
- ``metered``: the product as it is (spooled, shipped, stored, projected).

Rounds run the variants in turn so the machine's drift falls on all alike; the script prints
each variant's median req/s and its ratio to ``unmetered``.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PATCH = Path(__file__).with_name("metering_ablation.patch")
VARIANTS = ("unmetered", "spooled", "rawfile", "paced", "discarded", "metered")
FIGURE = re.compile(r"run 1 (?:un)?metered\s+(?P<rps>\d+) req/s.*p99\s+(?P<p99>[\d.]+) ms")


def port_free(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


def run(tree: Path, variant: str, extra: list[str]) -> tuple[float, float]:
    """One variant's req/s and p99 (ms)."""
    deadline = time.monotonic() + 60
    while not port_free(8123) and time.monotonic() < deadline:  # the last server's shutdown
        time.sleep(1)
    phase = "unmetered" if variant == "unmetered" else "metered"
    env = {**os.environ, "PYTHONPATH": str(tree), "MODELLEDGER_ABLATION": variant}
    # Variants that store nothing never settle: a short wait for the count is enough.
    settle = [] if variant in ("unmetered", "metered") else ["--settle-timeout", "10",
                                                               "--quiet", "1"]
    done = subprocess.run(  # noqa: S603 - this repository's own benchmark
        [sys.executable, str(tree / "benchmarks/predict_bench.py"), "--only", phase,
         "--runs", "1", *settle, *extra],
        cwd=tree, env=env, capture_output=True, text=True, check=False,
    )
    match = FIGURE.search(done.stdout)
    if done.returncode != 0 or match is None:
        sys.stderr.write(done.stdout + done.stderr)
        raise SystemExit(f"variant {variant} failed")
    return float(match["rps"]), float(match["p99"])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help=f"comma-separated, of {','.join(VARIANTS)}")
    parser.add_argument("bench", nargs=argparse.REMAINDER,
                        help="after --: more predict_bench.py arguments (e.g. --seconds 20)")
    args = parser.parse_args()
    variants = args.variants.split(",")
    if unknown := set(variants) - set(VARIANTS):
        parser.error(f"unknown variant(s) {', '.join(sorted(unknown))}")
    extra = [a for a in args.bench if a != "--"]
    results: dict[str, list[tuple[float, float]]] = defaultdict(list)
    with tempfile.TemporaryDirectory(prefix="metering-ablation-") as tmp:
        tree = Path(tmp) / "tree"
        git = ["git", "worktree"]
        subprocess.run([*git, "add", "--detach", str(tree), "HEAD"],  # noqa: S603
                       cwd=ROOT, check=True, capture_output=True)
        (tree / ".venv").symlink_to(ROOT / ".venv")
        try:
            subprocess.run(["git", "apply", str(PATCH)], cwd=tree, check=True)  # noqa: S603, S607
            for round_ in range(1, args.rounds + 1):
                for variant in variants:
                    rps, p99 = run(tree, variant, extra)
                    results[variant].append((rps, p99))
                    print(f"round {round_} {variant:<10} {rps:>8.0f} req/s  p99 {p99:6.1f} ms",
                          flush=True)
        finally:
            subprocess.run([*git, "remove", "--force", str(tree)],  # noqa: S603
                           cwd=ROOT, check=False, capture_output=True)
    base = statistics.median(r for r, _ in results["unmetered"]) if "unmetered" in results \
        else None
    print(f"\n{'variant':<10} {'req/s':>8} {'p99 ms':>7} {'/unmetered':>10}  "
          f"(medians of {args.rounds} rounds)")
    for variant in variants:
        rps = statistics.median(r for r, _ in results[variant])
        p99 = statistics.median(p for _, p in results[variant])
        ratio = f"{rps / base:>10.3f}" if base else f"{'':>10}"
        print(f"{variant:<10} {rps:>8.0f} {p99:>7.1f} {ratio}")


if __name__ == "__main__":
    main()

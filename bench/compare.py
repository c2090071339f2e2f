"""Compare the bench's figures (bench/results/latest.json) with bench/baseline.json,
printing the change of every figure. A regression guard for people, not a timed test:
nothing fails on a slower figure (the machine may be noisy); exit 2 only if a file is
missing or malformed.

Usage: python bench/compare.py [--latest FILE] [--baseline FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: figures where smaller is better (all but these: ratios, seconds, MiB, CPU per GB)
HIGHER_IS_BETTER: frozenset[str] = frozenset()


def load(path: Path) -> dict[str, object]:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SystemExit(f"bench/compare: cannot read {path}: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("figures"), dict):
        raise SystemExit(f"bench/compare: {path} has no 'figures' object")
    return doc


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--latest", type=Path, default=HERE / "results" / "latest.json")
    ap.add_argument("--baseline", type=Path, default=HERE / "baseline.json")
    args = ap.parse_args()
    try:
        latest, base = load(args.latest), load(args.baseline)
    except SystemExit as exc:
        print(exc, file=sys.stderr)
        return 2
    lf, bf = latest["figures"], base["figures"]
    assert isinstance(lf, dict) and isinstance(bf, dict)
    print(f"baseline: {base.get('meta', {})}")
    print(f"latest:   {latest.get('meta', {})}")
    print(f"{'figure':44} {'baseline':>10} {'latest':>10} {'change':>8}")
    for name in sorted(set(lf) | set(bf)):
        old, new = bf.get(name), lf.get(name)
        if not isinstance(old, int | float) or not isinstance(new, int | float):
            print(f"{name:44} {_fmt(old):>10} {_fmt(new):>10} {'':>8}")
            continue
        change = (new - old) / old * 100 if old else 0.0
        worse = change < 0 if name in HIGHER_IS_BETTER else change > 0
        mark = " (worse)" if worse and abs(change) >= 5 else ""
        print(f"{name:44} {old:10.3f} {new:10.3f} {change:+7.1f}%{mark}")
    return 0


def _fmt(value: object) -> str:
    return "-" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


if __name__ == "__main__":
    sys.exit(main())

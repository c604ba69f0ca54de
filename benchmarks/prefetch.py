"""Does making the next batch in a background thread pay on the CPU? ``train_trial`` with the prefetch on and off.

The ``ours`` arm of ``benchmarks/pipeline.py`` (same data, model, 128x128 RGB, hflip + TrivialAugmentWide), one
1,000-image epoch per arm per round, the order alternating each round, ``trainables.train.PREFETCH_ON_CPU`` switched
between the arms in one process. Both arms train bitwise the same batches (``tests/test_train.py``), so only the
speed can differ. Last line::

    ratio_prefetch_on_off=X mean=M ci95=[L, H]

X the median of the per-round ratios (on / off), M their mean with a t interval over the rounds.

    python benchmarks/prefetch.py              # 8 rounds on ../shared/data/fullres_sample
    python benchmarks/prefetch.py --rounds 2 --epoch-images 128   # smoke size
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pipeline  # noqa: E402  (benchmarks/pipeline.py: its data preparation and its "ours" arm)

import trainables.train as train  # noqa: E402
from reports.studydata import t_interval  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=8, help="rounds, each one epoch with and one without (default 8)")
    p.add_argument("--data", help="Kaggle-layout data folder (default: pipeline.py's, the scanner-size sample)")
    p.add_argument("--epoch-images", type=int, default=1000, help="images an epoch (the train split cycled)")
    args = p.parse_args(argv)
    if args.rounds < 2:
        p.error(f"--rounds must be >= 2 for an interval, got {args.rounds}")
    bench = pipeline._parse_args(
        ["--epoch-images", str(args.epoch_images), *(["--data", args.data] if args.data else [])]
    )
    _, prepared = pipeline.prepare_data(bench)
    pipeline.warm_up_ours(bench, prepared)
    rates: dict[bool, list[float]] = {True: [], False: []}
    for r in range(args.rounds):
        for on in (True, False) if r % 2 == 0 else (False, True):
            train.PREFETCH_ON_CPU = on
            rates[on].append(pipeline.run_ours(bench, prepared, seed=r)[0])
            print(f"round {r + 1} prefetch={'on' if on else 'off'} images_per_s={rates[on][-1]:.1f}", flush=True)
    ratios = [a / b for a, b in zip(rates[True], rates[False])]
    ci = t_interval(ratios)
    print(f"on images_per_s={[round(v, 1) for v in rates[True]]}")
    print(f"off images_per_s={[round(v, 1) for v in rates[False]]}")
    print(
        f"ratio_prefetch_on_off={statistics.median(ratios):.3f} mean={ci.mean:.3f} ci95=[{ci.low:.3f}, {ci.high:.3f}]"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

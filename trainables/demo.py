"""Build the bundled demo data set: a patient-disjoint, class-stratified subset of a Kaggle-layout chest X-ray folder.

The project ships the result under ``trainables/demo_data/chest_xray`` (Kaggle layout: ``train/`` for the search,
``test/`` held back for ``search.retrain``); it is what every command uses when ``--data`` is not given. Rebuild it
with::

    python -m trainables.demo ../shared/data/chest_xray trainables/demo_data/chest_xray
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from trainables.index import index_dataset

__all__ = ["ATTRIBUTION", "build_demo"]

ATTRIBUTION = """\
# Demo chest X-ray data: attribution and licence

The images under this folder are a subset of:

Kermany, D., Zhang, K., Goldbaum, M. (2018). Labeled Optical Coherence Tomography (OCT) and Chest X-Ray Images for
Classification. Mendeley Data, v2. doi:10.17632/rscbjbr9sj.2. Licence: CC BY 4.0
(https://creativecommons.org/licenses/by/4.0/).

Paper: Kermany et al., "Identifying Medical Diagnoses and Treatable Diseases by Image-Based Deep Learning",
Cell 172(5), 2018.

Changes: images were resized to 224x224 RGB JPEG by an earlier publisher; this project selected a patient-disjoint,
class-stratified subset (seed {seed}: {train_frac:.0%} of patients per class into train/, another {test_frac:.0%}
into test/) with `python -m trainables.demo`. File names are the originals. No patient appears in both folders.
"""


def build_demo(
    source: str | Path, dest: str | Path, *, train_fraction: float = 0.3, test_fraction: float = 0.1, seed: int = 0
) -> dict[str, dict[str, int]]:
    """Copy a patient-disjoint, class-stratified subset of ``source`` (Kaggle layout) to ``dest``.

    Patient groups are drawn per 3-class label (normal / bacterial / viral) so the subset keeps the source's class
    mix; the first ``test_fraction`` of each class's shuffled groups go to ``test/``, the next ``train_fraction`` to
    ``train/``. Returns image counts per split and class folder.
    """
    if not (train_fraction > 0 and test_fraction > 0 and train_fraction + test_fraction <= 1):
        raise ValueError(f"fractions must be positive and sum to at most 1, got {train_fraction} + {test_fraction}")
    index = index_dataset(source, "pneumonia3class")
    rng = np.random.default_rng(seed)
    members = index.images_by_group()
    by_label: dict[int, list[int]] = defaultdict(list)
    for g, idx in members.items():
        by_label[int(index.labels[idx[0]])].append(g)

    dest = Path(dest)
    if dest.exists():
        shutil.rmtree(dest)
    counts: dict[str, dict[str, int]] = {"train": defaultdict(int), "test": defaultdict(int)}
    for label in sorted(by_label):
        groups = sorted(by_label[label])
        rng.shuffle(groups)
        n_test = round(test_fraction * len(groups))
        n_train = round(train_fraction * len(groups))
        for split, chosen in (("test", groups[:n_test]), ("train", groups[n_test : n_test + n_train])):
            for g in chosen:
                for i in members[g]:
                    src = Path(index.paths[i])
                    folder = src.parent.name
                    out = dest / split / folder / src.name
                    out.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(src, out)
                    counts[split][folder] += 1
    (dest.parent / "ATTRIBUTION.md").write_text(
        ATTRIBUTION.format(seed=seed, train_frac=train_fraction, test_frac=test_fraction)
    )
    return {k: dict(v) for k, v in counts.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", help="Kaggle-layout chest_xray folder")
    parser.add_argument("dest", help="where to write the subset (replaced)")
    parser.add_argument("--train-fraction", type=float, default=0.3)
    parser.add_argument("--test-fraction", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    counts = build_demo(
        args.source, args.dest, train_fraction=args.train_fraction, test_fraction=args.test_fraction, seed=args.seed
    )
    print(counts)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`reslab sort-val`: ImageNet's flat validation folder into class folders."""

from __future__ import annotations

import argparse


def _sort_val(args: argparse.Namespace) -> int:
    from ..data.imagenet_val import sort_val

    n = sort_val(args.flat_dir, args.labels, args.out, synsets=args.synsets, copy=args.copy)
    how = f"{n['linked']} hard-linked, {n['copied']} copied"
    print(f"{n['images']} images in {n['classes']} class folders under {args.out} ({how})")
    if n["missing"] or n["unlabelled"]:
        print(
            f"note: {n['missing']} labelled images were not in {args.flat_dir}; "
            f"{n['unlabelled']} images there have no label and were left out"
        )
    return 0


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sort-val",
        help="sort ImageNet's flat validation folder into class folders (hard links)",
        description="Sort ImageNet's validation images (one flat folder) into OUT/<synset>/, "
        "hard-linked where possible. Put OUT beside train/ as val/ and `reslab train` "
        "validates on it.",
    )
    p.add_argument("flat_dir", help="the folder of ILSVRC2012_val_*.JPEG files")
    p.add_argument(
        "--labels",
        required=True,
        help="LOC_val_solution.csv, the devkit's "
        "ILSVRC2012_validation_ground_truth.txt, or 'FILE SYNSET' lines",
    )
    p.add_argument(
        "--synsets",
        help="devkit ground truth: the synset of each ILSVRC2012_ID, one "
        "per line (default: the devkit's meta.mat beside --labels)",
    )
    p.add_argument("--out", required=True, help="new folder for the class folders")
    p.add_argument("--copy", action="store_true", help="copy instead of hard-linking")
    p.set_defaults(func=_sort_val)

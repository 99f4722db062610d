"""``grainseg synth``: write synthetic micrographs with their targets to a folder.

Per sample, named by its seed (seeds S, S+1, ...; another --seed never overwrites)::

    DIR/synth_<seed>_image.tif        float32 micrograph in [0, 1]
    DIR/synth_<seed>_labels.tif       uint32 grain labels, 0 on boundaries
    DIR/synth_<seed>_boundaries.tif   uint8 boundary map (0/1)
    DIR/synth_<seed>_params.json      every generator parameter used

<seed> has six digits (synth_000042_image.tif). Every file is written atomically.
"""

from __future__ import annotations

import argparse
import json
import re

from napari_grainseg.errors import InputError
from napari_grainseg.io.atomic import atomic_open, atomic_path


def parse_shape(text: str) -> tuple[int, int]:
    """Parse ``"HxW"`` (e.g. ``96x496``) into ``(H, W)``."""
    m = re.fullmatch(r"\s*(\d+)\s*[xX,]\s*(\d+)\s*", text)
    if not m:
        raise InputError(f"--shape must look like HEIGHTxWIDTH (e.g. 96x496), got {text!r}")
    return int(m.group(1)), int(m.group(2))


def parse_overrides(items: list[str]) -> dict:
    """Parse ``KEY=VALUE`` knob overrides; values are read as JSON (numbers, true/false)."""
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InputError(f"--param must look like KEY=VALUE, got {item!r}")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            raise InputError(f"--param {key}: value {value!r} is not a number or true/false") from None
    return out


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "synth",
        help="write synthetic TEM micrographs with grain labels and boundary maps",
        description=__doc__.replace("``", "").replace("::", ":"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--n", type=int, required=True, help="number of samples")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created if missing)")
    p.add_argument("--shape", default="96x496", help="HEIGHTxWIDTH in pixels (default: 96x496)")
    p.add_argument("--seed", type=int, default=0, help="seed of the first sample (default: 0)")
    p.add_argument("--preset", default="tem", help="tem, paper, train or random (default: tem)")
    p.add_argument(
        "--param",
        action="append",
        metavar="KEY=VALUE",
        help="override a generator knob (repeatable), e.g. --param mean_diameter=30",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import tifffile
    from tqdm import tqdm

    from napari_grainseg.io.outputs import check_output_dir
    from napari_grainseg.synthetic import PRESETS, generate
    from napari_grainseg.synthetic.presets import resolve_parameters

    if args.n < 1:
        raise InputError(f"--n must be at least 1, got {args.n}")
    if args.seed < 0:
        raise InputError(f"--seed must be non-negative, got {args.seed}")
    if args.preset not in PRESETS:
        raise InputError(f"unknown preset {args.preset!r}; choose one of {', '.join(PRESETS)}")
    shape = parse_shape(args.shape)
    overrides = parse_overrides(args.param)
    resolve_parameters(args.preset, np.random.default_rng(0), overrides)  # fail before writing
    generate(args.seed, shape, args.preset, **overrides)  # checks the shape too
    out = check_output_dir(args.out)

    for i in tqdm(range(args.n), desc="synth", unit="img", disable=args.quiet):
        sample = generate(args.seed + i, shape, args.preset, **overrides)
        stem = out / f"synth_{args.seed + i:06d}"
        for suffix, array in (
            ("image", sample.image),
            ("labels", sample.labels),
            ("boundaries", sample.boundaries.astype(np.uint8)),
        ):
            with atomic_path(f"{stem}_{suffix}.tif") as tmp:
                tifffile.imwrite(tmp, array, compression="zlib")
        with atomic_open(f"{stem}_params.json") as fh:
            json.dump(sample.params, fh, indent=1, sort_keys=True)
            fh.write("\n")
    return 0

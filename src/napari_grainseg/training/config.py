"""Training configurations and their checks, in one place.

:class:`LoopConfig` holds what the shared training loop (:mod:`napari_grainseg.training.loop`)
reads: optimisation, schedule, averaging, validation and checkpoint cadence. The
configs of Net1 (:class:`TrainConfig`) and Net2 (:class:`Net2TrainConfig`) add their
data and loss settings. Every check raises :class:`~napari_grainseg.errors.InputError`
with one line naming the config and the field; :func:`read_config` also checks the
type of every value in a JSON file.

Examples
--------
>>> TrainConfig(steps=20, batch_size=2).steps
20
>>> TrainConfig(steps=0)
Traceback (most recent call last):
...
napari_grainseg.errors.InputError: training config: steps must be >= 1, got 0
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from napari_grainseg.errors import InputError

#: The last commit with the code of the retired training options (docs/net2.md).
RETIRED_IN = "dd9474d"


@dataclass(frozen=True)
class LoopConfig:
    """What the training loop reads (subclass it to add a model's data and loss settings).

    Attributes
    ----------
    steps : total optimiser steps.
    batch_size : examples per step.
    lr, weight_decay : AdamW; the learning rate rises linearly over ``warmup_steps``,
        then follows a cosine down to 2 % of ``lr`` at the last step.
    seed : seeds torch before the model is built (its initialisation) and selects the data.
    val_every, checkpoint_every : steps between validations (one line of ``log.jsonl``
        each) and between checkpoints; both also happen at the last step.
    threads : torch intra-op threads (0 = torch's default).
    ema_decay : exponential moving average of the weights (and BatchNorm statistics),
        0 = off. Validation, ``keep_best`` and the export use the averaged weights.
    keep_best : export the weights of the validation with the lowest selection metric
        (the model's own, e.g. Net2's refined VI) instead of the last step's.
    grad_clip : largest gradient norm (clipped above it), 0 = off.
    """

    #: Names the config in error messages.
    WHAT: ClassVar[str] = "training config"
    #: Fields of retired experiments with the value that meant "off": a JSON file or
    #: checkpoint naming one at that value still loads (the field is dropped).
    RETIRED: ClassVar[dict[str, Any]] = {}

    steps: int = 4000
    batch_size: int = 8
    lr: float = 3e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    seed: int = 0
    val_every: int = 250
    checkpoint_every: int = 100
    threads: int = 0
    ema_decay: float = 0.0
    keep_best: bool = False
    grad_clip: float = 0.0

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "val_every", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise InputError(f"{self.WHAT}: {name} must be >= 1, got {getattr(self, name)}")
        for name in ("warmup_steps", "threads", "grad_clip", "weight_decay"):
            if getattr(self, name) < 0:
                raise InputError(f"{self.WHAT}: {name} must be >= 0, got {getattr(self, name)}")
        if not self.lr > 0:
            raise InputError(f"{self.WHAT}: lr must be > 0, got {self.lr}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise InputError(f"{self.WHAT}: ema_decay must be in [0, 1), got {self.ema_decay}")

    @classmethod
    def from_json(cls, path: str | Path):
        """Read a config file (JSON object with any subset of the fields)."""
        return read_config(cls, path)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


#: A Net1 training source beside the generator presets: fine grains enlarged as inference
#: enlarges them (:func:`napari_grainseg.training.net1.upsampled_fine_sample`).
UPSAMPLED_FINE = "upsampled-fine"


@dataclass(frozen=True)
class TrainConfig(LoopConfig):
    """Everything that determines a Net1 training run (saved with the weights).

    Attributes
    ----------
    (the loop's, see :class:`LoopConfig`; Net1 defaults: 4000 steps, warm-up 100, seed 0)
    patch_shape : (height, width) of each synthetic training image in px.
    preset : synthetic preset; ``"train"`` randomises every realism knob. A tuple of
        names mixes presets: sample ``i`` uses ``preset[i % len(preset)]`` (e.g.
        ``("train", "train", "tem")`` spends a third of the samples on the default look).
        ``"upsampled-fine"`` (:data:`UPSAMPLED_FINE`) names enlarged fine grains
        (:func:`~napari_grainseg.training.net1.upsampled_fine_sample`).
    target_width : boundary targets are the 1-px true boundaries dilated to
        this width (odd), which gives the thin lines enough pixels to learn and
        is thinned back to 1 px after prediction.
    pos_weight : weight of boundary pixels in the BCE term (they are rare).
    dice_weight : weight of the soft Dice term (overlap of the thin structure).
    val_size, val_shape : the held-out validation set.
    num_workers : DataLoader processes generating samples (0 = in the main process).
    architecture : Net1 architecture (see :class:`~napari_grainseg.models.net1.Net1Config`).
    generator_overrides : generator knobs fixed in every sample of the run, training and
        validation alike (e.g. ``{"twin_fraction": 0.0}`` trains without twins: the
        leave-one-concept-out runs, :mod:`napari_grainseg.synthetic.concepts`); not with
        :data:`UPSAMPLED_FINE`, which sets knobs of its own.
    init_weights : a Net1 weights file to start from (fine-tuning, e.g. continuing the shipped
        model with more steps); None starts from a random initialisation. A
        narrower model of the same depth is widened to ``architecture`` first
        (:func:`~napari_grainseg.models.net1.widen_net1`), so training starts
        from what it already computes.
    teachers : Net1 weights files to distil from (none: off). For each training sample the
        teacher whose boundary loss against that sample's truth is lowest gives a soft target
        (its probability map), added to the truth loss with weight ``distill_weight``: a
        continued run keeps what the better teacher computes on each kind of image instead
        of forgetting it (:func:`~napari_grainseg.training.net1.best_teacher_targets`).
    distill_weight : weight of the distillation term (binary cross-entropy to the soft target).
    saddle_weight : weight of the saddle term (0: off). A watershed merges two grains across
        the weakest point of the ridge between them, so the term is the mean over the true
        boundary segments of ``-log`` of the lowest probability along each
        (:func:`~napari_grainseg.training.net1.saddle_loss`): the gradient goes where a merge
        would happen, which a pixel loss spreads over the whole boundary.
    pass_distill_weight : weight of pass distillation (0: off; needs ``teachers``). Per true
        boundary segment, the student's lowest ridge point is raised to the highest of the
        teachers' where it is below it
        (:func:`~napari_grainseg.training.net1.pass_distillation_loss`): the saddle term's aim,
        limited to ridges a teacher draws from the same pixels.
    teacher_orientations : how many turned and flipped copies of a sample the chosen teacher's
        soft target averages (1, 2, 4 or 8; 1: the teacher as it is). 8 is the product's
        test-time augmentation, which lowers VI on most looks at 8x the inference time
        (docs/generalisation.md); distilling it asks the student for that map in one pass.
        Costs ``teacher_orientations - 1`` extra teacher passes a step.
    """

    patch_shape: tuple[int, int] = (128, 256)
    preset: str | tuple[str, ...] = "train"
    target_width: int = 3
    pos_weight: float = 3.0
    dice_weight: float = 1.0
    val_size: int = 24
    val_shape: tuple[int, int] = (192, 384)
    num_workers: int = 1
    architecture: dict[str, Any] = field(default_factory=lambda: {"in_channels": 4, "base_channels": 8, "depth": 4})
    init_weights: str | None = None
    generator_overrides: dict[str, Any] = field(default_factory=dict)
    teachers: tuple[str, ...] = ()
    distill_weight: float = 1.0
    saddle_weight: float = 0.0
    pass_distill_weight: float = 0.0
    teacher_orientations: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.teachers, str) or not all(isinstance(t, str) and t for t in self.teachers):
            raise InputError(f"{self.WHAT}: teachers must be a list of weights files, got {self.teachers!r}")
        if not self.distill_weight >= 0:
            raise InputError(f"{self.WHAT}: distill_weight must be >= 0, got {self.distill_weight}")
        if not self.saddle_weight >= 0:
            raise InputError(f"{self.WHAT}: saddle_weight must be >= 0, got {self.saddle_weight}")
        if not self.pass_distill_weight >= 0:
            raise InputError(f"{self.WHAT}: pass_distill_weight must be >= 0, got {self.pass_distill_weight}")
        if self.pass_distill_weight > 0 and not self.teachers:
            raise InputError(f"{self.WHAT}: pass_distill_weight needs teachers to distil from")
        n = self.teacher_orientations
        if not isinstance(n, int) or isinstance(n, bool) or n not in (1, 2, 4, 8):
            raise InputError(f"{self.WHAT}: teacher_orientations must be 1, 2, 4 or 8, got {n!r}")
        if n > 1 and not (self.teachers and self.distill_weight > 0):
            raise InputError(f"{self.WHAT}: teacher_orientations needs teachers to distil from (distill_weight > 0)")
        presets = (self.preset,) if isinstance(self.preset, str) else tuple(self.preset)
        if not isinstance(self.generator_overrides, dict):
            raise InputError(
                f"{self.WHAT}: generator_overrides must map knob names to values, "
                f"got {type(self.generator_overrides).__name__}"
            )
        if self.generator_overrides:
            import numpy as np

            from napari_grainseg.synthetic.presets import resolve_parameters

            if UPSAMPLED_FINE in presets:
                raise InputError(f"{self.WHAT}: generator_overrides cannot be combined with {UPSAMPLED_FINE!r}")
            try:
                resolve_parameters("tem", np.random.default_rng(0), dict(self.generator_overrides))
            except InputError as exc:
                raise InputError(f"{self.WHAT}: generator_overrides: {exc}") from None
        check_config_fields(
            self,
            self.WHAT,
            counts=("val_size",),
            shapes=("patch_shape", "val_shape"),
            architecture=self.net1_config,
            presets=presets,
            extra_sources=(UPSAMPLED_FINE,),
        )

    @property
    def needs_segments(self) -> bool:
        """Whether a training sample carries its true boundary segments (a term uses them)."""
        return self.saddle_weight > 0 or self.pass_distill_weight > 0

    def sample_preset(self, index: int) -> str:
        """The synthetic preset of training sample ``index``."""
        return self.preset if isinstance(self.preset, str) else self.preset[index % len(self.preset)]

    def net1_config(self):
        """The :class:`~napari_grainseg.models.net1.Net1Config` this run trains."""
        from napari_grainseg.models.net1_config import Net1Config

        return Net1Config(**self.architecture)


@dataclass(frozen=True)
class Net2TrainConfig(LoopConfig):
    """Everything that determines a Net2 training run (saved with the weights).

    Attributes
    ----------
    (the loop's, see :class:`LoopConfig`; Net2 defaults: 3000 steps, warm-up 50, seed 1,
    validation every 500 steps, ``keep_best`` on)
    seed : also selects the pool images (``seed * 1e8 + i``), crops and degradations.
    pool_size, pool_shape, presets : the synthetic images whose Net1 outputs are cached
        (pool image i uses ``presets[i % len(presets)]``; validation alternates the same way).
    patch_shape : training crop (multiple of 8).
    levels : T, the number of degradation levels (= scheduled steps of the image model).
    target_width, pos_weight, dice_weight : target and loss, as for Net1.
    gap_prob, gaps_per_100px, gap_length : extra gaps cut into the coarse map.
    fragment_prob, fragments_per_10k_px : spurious fragments added to the coarse map.
    blur_prob, blur_sigma : blur of the coarse map.
    uniform_mix_prob : probability that the mixing mask is a uniform blend.
    unroll_prob, max_unroll : probability that an example's state is replaced by
        the model's own prediction after 1..``max_unroll`` steps (without
        gradient), then trained at t = 0: this teaches the fixed-point steps to
        map Net2's own outputs to the truth, so the iteration settles instead of
        drifting.
    val_size, val_shape : the held-out validation set.
    keep_best : the refinement's VI does not fall steadily with the training loss, so
        by default the weights of the validation with the lowest refined VI are exported.
    architecture : Net2 architecture (see :class:`~napari_grainseg.models.net2.Net2Config`);
        ``scheduled_steps`` is set from ``levels`` for the image model.
    """

    WHAT: ClassVar[str] = "net2 training config"
    #: Loss terms and degradations of failed experiments (docs/net2.md), at their old defaults.
    RETIRED: ClassVar[dict[str, Any]] = {
        "cldice_weight": 0.0,
        "topology_weight": 0.0,
        "topology_min_px": 20,
        "segment_drop_prob": 0.0,
        "segment_drop_fraction": 0.2,
        "segment_residue": (0.0, 0.3),
    }

    steps: int = 3000
    warmup_steps: int = 50
    seed: int = 1
    val_every: int = 500
    keep_best: bool = True
    pool_size: int = 300
    pool_shape: tuple[int, int] = (128, 256)
    presets: tuple[str, ...] = ("train", "tem")
    patch_shape: tuple[int, int] = (96, 96)
    levels: int = 4
    target_width: int = 3
    pos_weight: float = 2.0
    dice_weight: float = 1.0
    gap_prob: float = 0.8
    gaps_per_100px: float = 0.4
    gap_length: tuple[int, int] = (3, 10)
    fragment_prob: float = 0.5
    fragments_per_10k_px: float = 3.0
    blur_prob: float = 0.3
    blur_sigma: tuple[float, float] = (0.5, 1.2)
    uniform_mix_prob: float = 0.3
    unroll_prob: float = 0.5
    max_unroll: int = 5
    val_size: int = 8
    val_shape: tuple[int, int] = (192, 256)
    architecture: dict[str, Any] = field(
        default_factory=lambda: {"conditioning": "image", "base_channels": 8, "depth": 3, "residual": 0.5}
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        check_config_fields(
            self,
            self.WHAT,
            counts=("pool_size", "val_size", "levels"),
            shapes=("patch_shape", "pool_shape", "val_shape"),
            architecture=self.net2_config,
            presets=tuple(self.presets),
            ranges=("gap_length", "blur_sigma"),
        )
        if any(p > s for p, s in zip(self.patch_shape, self.pool_shape)):
            raise InputError(f"{self.WHAT}: patch_shape must fit inside pool_shape")

    def net2_config(self):
        """The :class:`~napari_grainseg.models.net2.Net2Config` this run trains."""
        from napari_grainseg.models.net2 import Net2Config

        arch = dict(self.architecture)
        arch["scheduled_steps"] = 0 if arch.get("conditioning", "image") == "blind" else self.levels
        return Net2Config.from_dict(arch)


def _number_pair(value) -> tuple | None:
    """``value`` as a tuple if it is two real numbers, else None."""
    if (
        isinstance(value, (list, tuple))
        and len(value) == 2
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    ):
        return tuple(value)
    return None


def check_config_fields(
    config,
    what: str,
    *,
    counts: tuple[str, ...],
    shapes: tuple[str, ...],
    architecture: Callable[[], Any],
    presets: tuple[str, ...],
    ranges: tuple[str, ...] = (),
    extra_sources: tuple[str, ...] = (),
) -> None:
    """Checks of the models' data settings: counts >= 1, image shapes two multiples of 8 >= 32,
    ``ranges`` two numbers 0 <= low <= high, an odd ``target_width`` >= 1, an ``architecture``
    the network accepts (``architecture()`` builds the network's config from it) and at least
    one synthetic preset, all known (or in ``extra_sources``, data sources the model's
    training defines beside the presets). Raises :class:`InputError` naming ``what`` and the field."""
    from napari_grainseg.synthetic.presets import PRESETS

    known = (*PRESETS, *extra_sources)
    if not presets or any(name not in known for name in presets):
        raise InputError(f"{what}: preset must name synthetic presets ({', '.join(known)}), got {presets!r}")
    for name in counts:
        if getattr(config, name) < 1:
            raise InputError(f"{what}: {name} must be >= 1, got {getattr(config, name)}")
    if config.target_width < 1 or config.target_width % 2 == 0:
        raise InputError(f"{what}: target_width must be odd and >= 1, got {config.target_width}")
    for name in shapes:
        shape = _number_pair(getattr(config, name))
        if shape is None or min(shape) < 32 or any(s % 8 for s in shape):
            raise InputError(f"{what}: {name} must be two multiples of 8 >= 32, got {getattr(config, name)}")
    for name in ranges:
        pair = _number_pair(getattr(config, name))
        if pair is None or not 0 <= pair[0] <= pair[1]:
            raise InputError(f"{what}: {name} must be two numbers 0 <= low <= high, got {getattr(config, name)}")
    try:
        architecture()
    except (TypeError, ValueError) as exc:
        raise InputError(f"{what}: architecture {config.architecture}: {exc}") from None


def read_config(cls, path: str | Path):
    """Build the config dataclass ``cls`` from a JSON file holding any subset of its fields.

    JSON lists become tuples (shapes, ranges); unknown fields, a value of the
    wrong type (a string for a number, a number for a shape), a missing file or
    invalid JSON raise :class:`InputError` naming the file and the field.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"config file not found: {path}") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"config file {path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InputError(f"config file {path} must hold a JSON object")
    return config_from_dict(cls, data, f"config file {path}")


def config_from_dict(cls, data: dict[str, Any], where: str):
    """Build ``cls`` from a dict of JSON values (a config file, a checkpoint, a weights file's
    ``train_config``), checking names and types; ``where`` starts the error messages.

    A retired field (``cls.RETIRED``) at its off value is dropped; at another value it is
    an error naming the commit that last had its code.
    """
    fields = {f.name: f for f in dataclasses.fields(cls)}
    data = dict(data)
    for name, off in getattr(cls, "RETIRED", {}).items():
        if name in data and name not in fields:
            value = tuple(data[name]) if isinstance(data[name], list) else data[name]
            if value != off:
                raise InputError(
                    f"{where}: {name} ({json.dumps(data[name])}) was a training experiment that is no "
                    f"longer supported (its code is in git commit {RETIRED_IN}); remove the field"
                )
            del data[name]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise InputError(f"{where}: unknown field(s) {', '.join(unknown)}")
    hints = typing.get_type_hints(cls)
    for name, value in data.items():
        if not _json_matches(value, hints[name]):
            as_list = " (a JSON list)" if "tuple" in str(fields[name].type) else ""
            raise InputError(f"{where}: {name} must be {fields[name].type}{as_list}, got {json.dumps(value)}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


def _json_matches(value, hint) -> bool:
    """Whether a JSON ``value`` can fill a config field annotated ``hint`` (an int fills a
    float; a list fills a tuple, element by element; true/false fill only a bool)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_json_matches(value, arg) for arg in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint in (int, float):
        return isinstance(value, int if hint is int else (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin is tuple:
        if not isinstance(value, list):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_json_matches(v, args[0]) for v in value)
        return len(value) == len(args) and all(_json_matches(v, a) for v, a in zip(value, args))
    if origin is dict:
        return isinstance(value, dict)  # an architecture: its own config checks the fields
    return True

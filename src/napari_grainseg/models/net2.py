"""Net2: a small conditional refiner of boundary maps, stepped like a diffusion model.

Net2 maps the current boundary *state* (a probability map) to a prediction of
the clean boundary map. Two conditionings are built from the same network:

- ``"image"`` (the default): the state, the cached image features — Net1's
  probability, the three edge maps and the contrast-stretched intensity
  (:data:`NET2_CONDITION_CHANNELS`) — and a constant channel holding the step
  index ``t / T``. The features are computed once per image; every step runs
  only this small network (see :mod:`napari_grainseg.segmentation.refine`).
- ``"blind"``: the paper's scheme, the state alone, applied as a fixed-point
  iteration (no schedule, no image); kept as an ablation.

The network is a three-level U-Net with 8 base channels (about 29 k weights)
whose full-resolution level has one convolution instead of two (that level
dominates the cost), so one step costs well under a second per megapixel on
two CPU cores.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from napari_grainseg.models.net1 import count_parameters, double_conv, unet_forward  # noqa: F401  (count_parameters re-exported)


def _single(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


#: Image features Net2 is conditioned on (computed once per image), in order.
NET2_CONDITION_CHANNELS: tuple[str, ...] = ("net1", "sobel", "log", "canny", "intensity")
#: Conditionings: the image-aware refiner and the image-blind ablation.
CONDITIONINGS: tuple[str, ...] = ("image", "blind")
#: Architecture options of failed experiments (docs/net2.md), with their off value: weights
#: files written while they existed name them, and still load when they are off.
RETIRED_OPTIONS: dict[str, object] = {"watershed_candidates": False, "closed_start": False, "net1_features": 0}
#: The last commit with the retired options' code.
RETIRED_IN = "dd9474d"


@dataclass(frozen=True)
class Net2Config:
    """Architecture and schedule of Net2 (stored next to the weights).

    Attributes
    ----------
    conditioning : ``"image"`` (state + image features + step index) or
        ``"blind"`` (state only, fixed-point iteration like the paper's Net2).
    scheduled_steps : T, the number of scheduled steps t = T ... 1 before the
        fixed-point steps at t = 0 (0 for the blind ablation).
    base_channels, depth : U-Net width and number of levels.
    residual : the network predicts a correction to the state's logit
        (``logit(state) * residual + f(...)``), so "keep the current map" is
        its starting point and it learns only what to change (0 = plain).
    """

    conditioning: str = "image"
    scheduled_steps: int = 4
    base_channels: int = 8
    depth: int = 3
    residual: float = 0.5

    def __post_init__(self) -> None:
        if self.conditioning not in CONDITIONINGS:
            raise ValueError(f"conditioning must be one of {CONDITIONINGS}, got {self.conditioning!r}")
        if self.conditioning == "blind" and self.scheduled_steps:
            raise ValueError("the blind ablation is a pure fixed-point iteration: scheduled_steps must be 0")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Net2Config:
        """The config stored with a weights file; options of retired experiments
        (:data:`RETIRED_OPTIONS`) are accepted at their off value and refused otherwise."""
        data = dict(data)
        for name, off in RETIRED_OPTIONS.items():
            if name in data:
                if data[name] != off:
                    raise ValueError(
                        f"{name} = {data[name]!r} was an experiment that is no longer supported "
                        f"(its code is in git commit {RETIRED_IN})"
                    )
                del data[name]
        return cls(**data)

    @property
    def in_channels(self) -> int:
        """State (1) + condition channels + step channel (image conditioning only)."""
        return 1 if self.conditioning == "blind" else 2 + self.condition_channels

    @property
    def condition_channels(self) -> int:
        """Number of cached condition channels (:data:`NET2_CONDITION_CHANNELS`)."""
        return len(NET2_CONDITION_CHANNELS)

    @property
    def multiple(self) -> int:
        """Height and width of the input must be multiples of this."""
        return 2 ** (self.depth - 1)


class Net2(nn.Module):
    """Boundary-map refiner: ``forward(state, condition, t)`` → logits of the clean map.

    Parameters of :meth:`forward`
    -----------------------------
    state : (N, 1, H, W) current boundary probability.
    condition : (N, C, H, W) cached image features (C = ``config.condition_channels``),
        or None for the blind model.
    t : (N,) step index as a fraction t / T in [0, 1] (ignored by the blind model).
    """

    def __init__(self, config: Net2Config = Net2Config()):
        super().__init__()
        self.config = config
        widths = [config.base_channels * 2**i for i in range(config.depth)]
        self.down = nn.ModuleList()
        cin = config.in_channels
        for i, w in enumerate(widths):
            self.down.append(_single(cin, w) if i == 0 else double_conv(cin, w))
            cin = w
        self.pool = nn.MaxPool2d(2)
        self.up = nn.ModuleList()
        self.merge = nn.ModuleList()
        for i, w in reversed(list(enumerate(widths[:-1]))):
            self.up.append(nn.ConvTranspose2d(cin, w, 2, stride=2))
            self.merge.append(_single(2 * w, w) if i == 0 else double_conv(2 * w, w))
            cin = w
        self.head = nn.Conv2d(cin, 1, 1)

    def inputs(self, state: torch.Tensor, condition: torch.Tensor | None, t: torch.Tensor | None) -> torch.Tensor:
        """The network's input tensor for a state, its cached condition and step fraction."""
        if self.config.conditioning == "blind":
            return state
        t = torch.as_tensor(t, dtype=state.dtype, device=state.device).reshape(-1, 1, 1, 1)
        return torch.cat([state, condition, t.expand(state.shape[0], 1, *state.shape[2:])], dim=1)

    def forward(
        self, state: torch.Tensor, condition: torch.Tensor | None = None, t: torch.Tensor | float | None = 0.0
    ) -> torch.Tensor:
        x = unet_forward(self.inputs(state, condition, t), self.down, self.pool, self.up, self.merge)
        out = self.head(x)
        if self.config.residual:
            out = out + self.config.residual * torch.logit(state.clamp(1e-3, 1 - 1e-3))
        return out

"""Net1's architecture settings, without torch: read by the PyTorch model and by the OpenCV runner."""

from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = ["Net1Config"]


@dataclass(frozen=True)
class Net1Config:
    """Architecture of Net1 (stored next to the weights)."""

    in_channels: int = 4
    base_channels: int = 8
    depth: int = 4

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def multiple(self) -> int:
        """Height and width of the input must be multiples of this."""
        return 2 ** (self.depth - 1)

"""Facts about a published model — paper, official files, preprocessing, the figures its authors report —
as the core displays them (``vpr-bench list``). A method registers them as ``MethodSpec.published``."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class OfficialFile:
    name: str  # the file name as the authors publish it
    url: str  # where they publish it (a direct download, or a page such as Google Drive)
    sha256: str | None = None  # when published
    note: str = ""  # e.g. the variant it holds


@dataclass(frozen=True)
class Published:
    """Facts about a published model (each model file's docstring cites the sources)."""

    paper: str  # "Authors, Title, Venue Year"
    backbone: str
    descriptor_dim: int
    input_size: tuple[int, int] | None  # (H, W) of the official evaluation; None: each image's own size
    licence: str  # of the official code and weights
    files: tuple[OfficialFile, ...]
    recall_at_1: tuple[tuple[str, float, str], ...] = ()  # (benchmark, R@1 the authors report, source)
    preprocess: str = "resize-first"
    interpolation: str = "bilinear"
    mark: str = ""  # a state-dict key only the authors' files have (after unwrapping)
    extra: dict = field(default_factory=dict)

    def settings(self) -> dict:
        """The config values of the official evaluation preprocessing."""
        return {
            "data.image_size": tuple(self.input_size) if self.input_size else (0, 0),
            "data.preprocess": self.preprocess,
            "data.interpolation": self.interpolation,
        }

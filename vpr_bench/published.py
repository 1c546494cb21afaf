"""Facts about a published model — paper, official files, preprocessing, the figures its authors report —
as the core displays them (``vpr-bench list``, ``compare --published``). A method registers them as
``MethodSpec.published``."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class OfficialFile:
    name: str  # the file name as the authors publish it
    url: str  # where they publish it (a direct download, or a page such as Google Drive)
    sha256: str | None = None  # when published
    note: str = ""  # e.g. the variant it holds


@dataclass(frozen=True)
class PublishedFigure:
    """One figure reported for a published model: Recall@1/5 (%) of one official file under one protocol,
    and where it is stated. It holds only under that protocol: ``compare --published`` sets it beside a
    run of the same method, file and ``protocol.name``, and never beside another protocol's."""

    benchmark: str  # as the source names it: "Pitts30k test", "MSLS val", "Nordland 10-frame"
    protocol: str | None  # as records name it (pitts30k-test-25m, msls-val, ...); None: no reader here has it
    recall_at_1: float
    recall_at_5: float | None
    source: str  # where it is stated: "amaralibey/MixVPR README", "paper Table 1, quoted in <repo> issue 19"
    secondhand: bool = False  # quoted by someone other than the authors (shown with †)
    file: str | None = None  # the official file it was reported for; None: a model none of ``files`` holds
    variant: str = ""  # what the figure is of, where ``file`` does not say it ("ResNet-101, 2048-d")

    def where(self) -> str:
        """The protocol a run needs to be compared with it, or the benchmark's own name."""
        return self.protocol or f"{self.benchmark} (no reader here reproduces its protocol)"

    def text(self) -> str:
        """``pitts30k-test-25m 91.6/95.5`` (R@1/R@5), with † when secondhand."""
        recalls = "/".join(f"{v:.1f}" for v in (self.recall_at_1, self.recall_at_5) if v is not None)
        return f"{self.protocol or self.benchmark} {recalls}{'†' if self.secondhand else ''}"


@dataclass(frozen=True)
class Published:
    """Facts about a published model (each model file's docstring cites the sources)."""

    paper: str  # "Authors, Title, Venue Year"
    backbone: str
    descriptor_dim: int
    input_size: tuple[int, int] | None  # (H, W) of the official evaluation; None: each image's own size
    licence: str  # of the official code and weights
    files: tuple[OfficialFile, ...]
    figures: tuple[PublishedFigure, ...] = ()  # what the authors (or, marked, others) report
    # the older form: (benchmark, R@1, source) each, with no protocol or file; read as ``figures``
    recall_at_1: tuple[tuple[str, float, str], ...] = ()
    preprocess: str = "resize-first"
    interpolation: str = "bilinear"
    mark: str = ""  # a state-dict key only the authors' files have (after unwrapping)
    extra: dict = field(default_factory=dict)
    # a model whose descriptor depends on the other images of its forward pass (a cross-image encoder):
    # the images per pass of the official evaluation, the method's default ``eval.batch_size``
    batch_size: int | None = None

    def settings(self) -> dict:
        """The config values of the official evaluation preprocessing."""
        return {
            "data.image_size": tuple(self.input_size) if self.input_size else (0, 0),
            "data.preprocess": self.preprocess,
            "data.interpolation": self.interpolation,
        }

    def all_figures(self) -> tuple[PublishedFigure, ...]:
        """``figures`` and the older ``recall_at_1`` triples (tied to no protocol or file: never compared)."""
        older = tuple(
            PublishedFigure(benchmark, None, value, None, source, secondhand="secondhand" in source.lower())
            for benchmark, value, source in self.recall_at_1
        )
        return self.figures + older

    def figure_lines(self) -> list[str]:
        """The figures as ``vpr-bench list`` shows them, R@1/R@5: one line per file (or variant) and
        source; † marks a figure quoted by others than the authors."""
        groups: dict[tuple, list[PublishedFigure]] = {}
        for figure in self.all_figures():
            of = figure.file or figure.variant or "the model"
            groups.setdefault((of, figure.source, figure.secondhand), []).append(figure)
        lines = []
        for (of, source, secondhand), figures in groups.items():
            quoted = "† secondhand: " if secondhand and "secondhand" not in source else ""
            lines.append(f"{of}: {', '.join(f.text() for f in figures)} ({quoted}{source})")
        return lines

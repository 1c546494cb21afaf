"""The real Pitts30k-test ground truth (coordinates + file names) as a NetVLAD-layout dataset.

Images are generated: each is one colour that encodes its position (red ← east, green ← north), and a
test method describes an image by its colour. If the reader paired a path with the wrong coordinates,
or the evaluation mixed up indices, Recall@1 would collapse; read correctly, it is near 100%.
"""

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from tests.conftest import DATA, tiny_config
from vpr_bench.config import DataConfig
from vpr_bench.datasets import build_dataset
from vpr_bench.registry import METHODS, registration_source
from vpr_bench.results import load_records
from vpr_bench.runner import evaluate_run
from vpr_bench.testing import write_db_struct

GT = DATA / "pitts30k_test_gt"


class ColourPosition(nn.Module):
    descriptor_dim = 3

    def forward(self, images: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) → (B, 3)
        mean = images.mean(dim=(2, 3))
        return torch.cat([mean[:, :2], torch.full_like(mean[:, :1], 50.0)], dim=1)


@pytest.fixture(scope="module")
def pitts_root(tmp_path_factory):
    gt = np.load(GT / "pitts30k_test.npz")
    db_names = [
        n.strip().removeprefix("./Pittsburgh250k/") for n in open(GT / "pitts30k_imageNames_index.txt")
    ]
    q_names = [
        n.strip().removeprefix("./Pittsburgh250k/queries_real/")
        for n in open(GT / "pitts30k_imageNames_query.txt")
    ]
    root = tmp_path_factory.mktemp("pitts30k")
    write_db_struct(root / "pitts30k_test.mat", "test", db_names, gt["utmDb"], q_names, gt["utmQ"])
    lo, hi = gt["utmDb"].min(0), gt["utmDb"].max(0)
    for base, names, utm in ((root, db_names, gt["utmDb"]), (root / "queries_real", q_names, gt["utmQ"])):
        colours = np.clip((utm - lo) / (hi - lo) * 255, 0, 255).round().astype(np.uint8)
        for folder in {(base / n).parent for n in names}:
            folder.mkdir(parents=True, exist_ok=True)
        for name, (r, g) in zip(names, colours, strict=True):
            Image.new("RGB", (8, 8), (int(r), int(g), 0)).save(base / name, format="PNG")
    return root


def test_reader_counts_and_thresholds(pitts_root):
    split = build_dataset("pitts30k", DataConfig(data_root=str(pitts_root))).split("test")
    split.validate()
    assert (split.num_database, split.num_queries) == (10000, 6816)
    assert len(split.ground_truth().queries_without_positives) == 0
    assert len(split.training_positives().queries_without_positives) == 384


def test_full_size_evaluation(pitts_root, tmp_path):
    with registration_source("test"):
        METHODS.register("colour-position", "test method: colour encodes position")(
            lambda cfg, options: ColourPosition()
        )
    try:
        cfg = tiny_config(
            **{
                "model.method": "colour-position",
                "data.dataset": "pitts30k",
                "data.data_root": str(pitts_root),
                "data.image_size": (8, 8),
                "out": str(tmp_path),
                "eval.batch_size": 512,
            }
        )
        run_dir = evaluate_run(cfg)
    finally:
        METHODS.remove_source("test")
    (record,) = load_records(tmp_path)
    assert record.run_dir == run_dir
    assert (
        record.get("protocol.num_database") == 10000 and record.get("protocol.num_queries_evaluated") == 6816
    )
    assert record.get("metrics.R@1") > 95.0
    assert record.get("cost.descriptor_dim") == 3

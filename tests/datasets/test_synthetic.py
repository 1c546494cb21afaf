import hashlib

import numpy as np
from scipy.spatial import cKDTree

from vpr_bench.datasets import build_dataset
from vpr_bench.datasets.synthetic import MARKER, SynthConfig, generate, is_complete


def digest(root):
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.jpg")):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def test_splits_sizes_and_geometry(synthetic_root):
    dataset = build_dataset(f"folder:{synthetic_root}")
    assert dataset.splits == ("train", "val", "test")
    splits = {name: dataset.split(name) for name in dataset.splits}
    assert (splits["test"].num_database, splits["test"].num_queries) == (40, 20)
    assert (splits["train"].num_database, splits["train"].num_queries) == (80, 40)
    for split in splits.values():
        split.validate()
        gt = split.ground_truth()
        assert len(gt.queries_without_positives) == 0  # queries lie on the streets of their split
        assert 2 <= gt.counts.mean() <= 12  # database every 5 m, 25 m radius
        nearest = cKDTree(split.database_utm).query(split.database_utm, k=2)[0][:, 1]
        np.testing.assert_allclose(nearest, 5.0, atol=0.02)  # a database view every 5 m
    # different streets per split: nothing of one split is within 100 m of another's
    train = cKDTree(splits["train"].database_utm)
    for other in ("val", "test"):
        assert np.isinf(train.query(splits[other].database_utm, distance_upper_bound=100)[0]).all()


def test_deterministic_by_seed(tmp_path):
    cfg = SynthConfig(places=16, queries=4, street_length=40, seed=11)
    a, b = generate(tmp_path / "a", cfg, workers=1), generate(tmp_path / "b", cfg, workers=2)
    c = generate(tmp_path / "c", SynthConfig(places=16, queries=4, street_length=40, seed=12), workers=1)
    assert digest(a) == digest(b) != digest(c)


def test_half_written_dataset_is_regenerated_not_read(data_dir):
    root = data_dir / "synthetic"
    (root / "images/test/database").mkdir(parents=True)
    (root / "images/test/queries").mkdir(parents=True)
    (root / "images/test/database/@1@2@half.jpg").write_bytes(b"")
    assert not is_complete(root)
    import vpr_bench.datasets.synthetic as synthetic

    small = SynthConfig(places=8, queries=4, street_length=40)
    generated = []
    original = synthetic.generate
    synthetic.generate = lambda out, cfg=small, workers=None: generated.append(out) or original(out, small, 1)
    try:
        dataset = build_dataset("synthetic")
    finally:
        synthetic.generate = original
    assert generated == [root] and (root / MARKER).is_file()
    assert dataset.split("test").num_database == 8
    assert not (root / "images/test/database/@1@2@half.jpg").exists()


def test_synth_can_make_the_test_split_alone(tmp_path, capsys):
    from vpr_bench.testing import run_cli

    out = tmp_path / "big"
    args = ["datasets", "synth", "--places", "30", "--queries", "6", "--splits", "test", "--out", str(out)]
    code, _, err = run_cli([*args, "--workers", "1"], capsys)
    assert code == 0, err
    assert sorted(p.name for p in (out / "images").iterdir()) == ["test"]
    assert len(list((out / "images/test/database").iterdir())) == 30
    code, stdout, _ = run_cli([*args, "--workers", "1"], capsys)  # the same request again: kept
    assert code == 0 and "already holds this dataset" in stdout
    code, _, err = run_cli([*args[:-2], "--splits", "tset", "--out", str(tmp_path / "x")], capsys)
    assert code == 2 and "synthetic splits must be among train, val, test" in err

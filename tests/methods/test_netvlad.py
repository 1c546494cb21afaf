import json

import numpy as np
import torch

from tests.conftest import tiny_config
from vpr_bench.layers import NetVLAD
from vpr_bench.methods import build_method
from vpr_bench.testing import TINY_CLI, run_cli
from vpr_bench.training import state as ckpt


def test_netvlad_layer_shape_and_normalisation():
    layer = NetVLAD(clusters=8, dim=16)
    out = layer(torch.randn(3, 16, 5, 7))
    assert out.shape == (3, 128)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(3))
    tokens = torch.randn(3, 35, 16)
    torch.testing.assert_close(layer(tokens), layer(tokens.transpose(1, 2).reshape(3, 16, 5, 7)))


def test_netvlad_matches_the_formula():
    """V(k) = Σ_i a_k(x_i)(x_i − c_k), intra-normalised per cluster, then L2 over the whole vector."""
    torch.manual_seed(0)
    layer = NetVLAD(clusters=4, dim=6, normalize_input=False)
    x = torch.randn(1, 10, 6)
    a = torch.softmax(x[0] @ layer.assign.weight.T, dim=1)  # (N, K)
    v = torch.stack([(a[:, k : k + 1] * (x[0] - layer.centroids[k])).sum(0) for k in range(4)])
    v = torch.nn.functional.normalize(v, dim=1).flatten()
    torch.testing.assert_close(layer(x)[0], v / v.norm())


def test_kmeans_initialisation_sets_centroids():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 8)) * 5
    features = np.concatenate([c + 0.01 * rng.normal(size=(50, 8)) for c in centres]).astype(np.float32)
    layer = NetVLAD(clusters=4, dim=8, normalize_input=False)
    layer.init_from_features(features, seed=0)
    found = layer.centroids.detach().numpy()
    assert np.abs(found[:, None] - centres[None]).sum(-1).min(axis=0).max() < 0.1  # each centre found
    scores = torch.softmax(torch.from_numpy(features[:5]) @ layer.assign.weight.T, dim=1)
    assert scores.max(dim=1).values.min() > 0.9  # sharp assignment at the start


def test_netvlad_whitening_is_fitted_after_initialisation_not_before(synthetic_root):
    cfg = tiny_config(**{"model.method": "netvlad", "data.dataset": f"folder:{synthetic_root}"})
    cfg.model.options = {"clusters": 4, "pca_dim": 16}
    model = build_method(cfg.model).eval()
    from vpr_bench.datasets import load_split
    from vpr_bench.training import fitting

    _, train = load_split(cfg.data, "train")
    before = model.pool.centroids.detach().clone()
    fitting.initialise(model, train.database_paths, cfg, torch.device("cpu"))
    assert not torch.equal(before, model.pool.centroids)
    # training and mining see the VLAD descriptor: no whitening yet
    assert not bool(model.whitening_fitted) and model.descriptor_dim == 4 * model.pool.dim
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, model.descriptor_dim)
    fitting.finalise(model, train.database_paths, cfg, torch.device("cpu"))
    out = model.eval()(torch.randn(2, 3, 32, 32))
    assert bool(model.whitening_fitted) and out.shape == (2, 16) and model.descriptor_dim == 16
    torch.testing.assert_close(out.norm(dim=1), torch.ones(2))


def test_netvlad_with_pca_trains_unwhitened_and_records_whitened(synthetic_root, tmp_path, capsys):
    options = ["--model-option", "clusters=4", "--model-option", "pca_dim=8"]
    training = [*("--epochs", "1", "--batch-size", "2", "--negatives", "2", "--negative-samples", "20")]
    code, _, err = run_cli(
        ["run", "--method", "netvlad", "--dataset", f"folder:{synthetic_root}", *TINY_CLI, *options,
         *training, "--queries-per-epoch", "4", "--out", str(tmp_path)],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    (run_dir,) = tmp_path.glob("*/netvlad/*")
    record = json.loads((run_dir / "metrics.json").read_text())
    assert record["cost"]["descriptor_dim"] == 8
    state = ckpt.load_state(run_dir / ckpt.LAST)  # the training checkpoint: whitening never fitted
    assert not bool(state["model"]["whitening_fitted"])
    code, _, err = run_cli(
        ["eval", "--method", "netvlad", "--dataset", f"folder:{synthetic_root}", *TINY_CLI, *options,
         "--untrained", "--out", str(tmp_path)],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    (untrained,) = (d for d in tmp_path.glob("*/netvlad/*") if d != run_dir)
    assert json.loads((untrained / "metrics.json").read_text())["cost"]["descriptor_dim"] == 8


def test_a_pca_dim_larger_than_the_data_allows_fails_before_training(synthetic_root, tmp_path, capsys):
    code, _, err = run_cli(
        [
            "run",
            "--method",
            "netvlad",
            "--dataset",
            f"folder:{synthetic_root}",
            *TINY_CLI,
            "--model-option",
            "clusters=4",
            "--model-option",
            "pca_dim=100000",
            "--epochs",
            "1",
            "--out",
            str(tmp_path),
        ],
        capsys,
    )
    assert code != 0 and "pca_dim=100000: the whitening needs at most the descriptor size" in err
    assert len(err.strip().splitlines()) == 1 and not list(tmp_path.glob("*/*/*/best.safetensors"))

"""``netvlad-vgg16`` computes what Patch-NetVLAD's code computes, loaded from its own checkpoint layout.

Fixture (tests/data/netvlad, copied from shared/data/reference_models/netvlad; see its README): outputs of
QVPR/Patch-NetVLAD 39ab4e4 (VGG16 conv5_3 → NetVLAD → WPCA-4096) for weights rebuilt from each key name by
the recipe, with the README's adjustments (every conv weight ×√2, ``pool.conv.weight`` ×30, ``WPCA.0.bias``
×0.01). Both layouts are checked: K=64 (``pitts_WPCA4096``, keys.json) and K=16 (``mapillary_WPCA4096``,
keys_k16.json), each saved as ``add_pca.py`` saves it — ``{'num_pcs': 4096, 'state_dict': ...}``, no
``module.`` prefix — and read the way ``vpr-bench eval --checkpoint FILE`` reads it.

Tolerance: every array ≤ 1e-4 of its own largest value. Measured: encoder features bit-identical, VLAD
≈3e-7, WPCA output and descriptor ≈1e-6 (float32 summation order: our NetVLAD sums soft-assigned
features and centroids separately, WPCA is a Linear instead of a 1×1 conv). The mistakes the README lists
(ReLU after conv5_3, softmax over positions, no intra-normalisation, WPCA bias dropped) move the
descriptor by 2e-2 or more of its scale: the mutation checks below show it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pytest
import timm
import torch
import torch.nn.functional as F
from reference import errors, fixture_input, keys, load_as_user, official_state, reference, write_official

from vpr_bench.api import CheckpointError, ConfigError, load_model
from vpr_bench.api import resolve_config as resolve

METHOD = "netvlad-vgg16"
FIXTURE = "netvlad"
TOLERANCE = 1e-4  # relative to each array's largest value; a right model is ≈1e-6 (see above)
VGG16_CONVS = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
ADJUST = {f"encoder.{i}.weight": math.sqrt(2.0) for i in VGG16_CONVS} | {
    "pool.conv.weight": 30.0,
    "WPCA.0.bias": 0.01,
}
# layout → (key list, reference, the official file name, clusters)
LAYOUTS = {
    "k64": ("keys.json", "reference_small.npz", "pitts_WPCA4096.pth.tar", 64),
    "k16": ("keys_k16.json", "reference_small_k16.npz", "mapillary_WPCA4096.pth.tar", 16),
}


@dataclass
class Loaded:
    """One layout's file read as a user's ``--checkpoint``, and what the model computed on the input."""

    model: torch.nn.Module
    settings: dict
    description: str
    cfg: object
    outputs: dict[str, torch.Tensor]  # encoder_features, vlad, wpca_pre_l2, descriptor


def load_layout(layout: str, folder: Path) -> Loaded:
    key_file, _, name, _ = LAYOUTS[layout]
    state = official_state(keys(FIXTURE, key_file), ADJUST)
    path = write_official(state, folder / name, wrapper="state_dict", num_pcs=4096)
    del state
    model, read, cfg = load_as_user(METHOD, path)
    outputs: dict[str, torch.Tensor] = {}

    def keep(name):
        return lambda module, inputs, output: outputs.__setitem__(name, output)

    hooks = [
        model.encoder.register_forward_hook(keep("encoder_features")),
        model.pool.register_forward_hook(keep("vlad")),
        model.whitening.register_forward_hook(keep("wpca_pre_l2")),
    ]
    with torch.no_grad():
        outputs["descriptor"] = model(fixture_input(480, 640))
    for hook in hooks:
        hook.remove()
    path.unlink()  # 537 MB for K=64
    return Loaded(model, read.settings, read.description, cfg, outputs)


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    """``loaded(layout)``: each layout loaded and run once for the whole module."""
    cache: dict[str, Loaded] = {}

    def get(layout: str) -> Loaded:
        if layout not in cache:
            cache[layout] = load_layout(layout, tmp_path_factory.mktemp(layout))
        return cache[layout]

    return get


@pytest.mark.parametrize("layout", LAYOUTS)
def test_official_file_computes_the_official_outputs(loaded, layout):
    key_file, reference_file, name, clusters = LAYOUTS[layout]
    run = loaded(layout)
    expected = reference(FIXTURE, reference_file)
    found = errors({k: v for k, v in run.outputs.items() if k in expected}, expected)
    assert set(found) == set(expected)  # every array of the fixture is compared
    assert max(found.values()) <= TOLERANCE, found
    # the file decided the variant and the official preprocessing, without any option given
    assert run.cfg.model.options == {"clusters": clusters, "whitened_dim": 4096}
    assert run.model.pool.clusters == clusters and run.model.descriptor_dim == 4096
    assert (run.cfg.data.image_size, run.cfg.data.preprocess) == ((480, 640), "resize-first")
    assert run.cfg.data.interpolation == "bilinear"
    assert run.description == f"official {name}"
    official_params = sum(math.prod(shape) for _, shape, _ in keys(FIXTURE, key_file))
    assert sum(p.numel() for p in run.model.parameters()) == official_params  # nothing more, nothing less


# ---- mutation checks: each typical mistake misses the reference by far more than the tolerance -------


def head(model, features: torch.Tensor, relu=False, softmax_over="clusters", intra=True, bias=True):
    """NetVLAD + WPCA re-done with einsum from the model's weights, with one mistake switched on."""
    x = F.normalize(F.relu(features) if relu else features, dim=1).flatten(2)  # (B, 512, N)
    logits = torch.einsum("kc,bcn->bkn", model.pool.assign.weight, x)
    soft = logits.softmax(dim=1 if softmax_over == "clusters" else 2)  # (B, K, N)
    vlad = torch.einsum("bkn,bcn->bkc", soft, x) - soft.sum(2, keepdim=True) * model.pool.centroids
    vlad = F.normalize(vlad, dim=2) if intra else vlad
    vlad = F.normalize(vlad.flatten(1), dim=1)
    whitened = F.linear(vlad, model.whitening.weight, model.whitening.bias if bias else None)
    return {"vlad": vlad, "wpca_pre_l2": whitened, "descriptor": F.normalize(whitened, dim=1)}


MUTATIONS = {
    "relu-after-conv5_3": {"relu": True},  # e.g. timm features_only or torchvision features[:-1]
    "softmax-over-positions": {"softmax_over": "positions"},
    "no-intra-normalisation": {"intra": False},
    "wpca-bias-dropped": {"bias": False},
}


def test_unmutated_einsum_head_matches_the_reference(loaded):
    """The harness of the mutation checks is right: without a mistake it hits the reference."""
    run = loaded("k64")
    with torch.no_grad():
        found = errors(head(run.model, run.outputs["encoder_features"]), reference(FIXTURE))
    assert max(found.values()) <= TOLERANCE, found


@pytest.mark.parametrize("mutation", MUTATIONS)
def test_mutation_is_caught(loaded, mutation):
    run = loaded("k64")
    with torch.no_grad():
        found = head(run.model, run.outputs["encoder_features"], **MUTATIONS[mutation])
    miss = errors({"descriptor": found["descriptor"]}, reference(FIXTURE))["descriptor"]
    assert miss > 100 * TOLERANCE, (mutation, miss)


def small_official_state(clusters: int, whitened_dim: int) -> dict[str, torch.Tensor]:
    """An official-layout state dict with another K and D (the recipe's key names, shapes changed)."""
    vlad_dim = clusters * 512
    shapes = {
        "pool.centroids": [clusters, 512],
        "pool.conv.weight": [clusters, 512, 1, 1],
        "WPCA.0.weight": [whitened_dim, vlad_dim, 1, 1],
        "WPCA.0.bias": [whitened_dim],
    }
    return official_state([(k, shapes.get(k, s), d) for k, s, d in keys(FIXTURE)], ADJUST)


def test_mutation_ignoring_what_the_file_decides_fails_loudly(tmp_path):
    """Building the default K=64 model for a K=16 file (skipping the file's variant) cannot load it."""
    path = write_official(small_official_state(16, 128), tmp_path / "m.pth.tar", "state_dict", num_pcs=128)
    read = load_as_user(METHOD, path)[1]
    with pytest.raises(CheckpointError, match=r"pool\.centroids \(16, 512\), expected \(64, 512\)"):
        load_model(resolve("paper", {"model.method": METHOD}), read, file_decides=False)


# ---- the file decides; contradicting options and wrong files fail in one line ---------------------


def test_the_file_decides_clusters_and_descriptor_size(tmp_path):
    path = write_official(small_official_state(8, 128), tmp_path / "x.pth.tar", "state_dict", num_pcs=128)
    model, _, cfg = load_as_user(METHOD, path)
    assert cfg.model.options == {"clusters": 8, "whitened_dim": 128}
    assert model.pool.clusters == 8 and model.descriptor_dim == 128
    with torch.no_grad():
        descriptors = model(fixture_input(32, 32))
    assert descriptors.shape == (2, 128)
    assert torch.allclose(descriptors.norm(dim=1), torch.ones(2))


def test_an_option_contradicting_the_file_fails(loaded):
    settings = loaded("k16").settings
    given = {"model.method": METHOD, "model.options": {"clusters": 64}}
    with pytest.raises(ConfigError, match="clusters=64 contradicts the checkpoint, which holds clusters=16"):
        resolve("paper", given, settings)
    agreeing = {"model.method": METHOD, "model.options": {"clusters": 16, "whitened_dim": 4096}}
    assert resolve("paper", agreeing, settings).model.options["clusters"] == 16


def test_a_file_of_another_model_fails_naming_the_keys(tmp_path):
    path = write_official(timm.create_model("resnet18").state_dict(), tmp_path / "resnet18.pth")
    with pytest.raises(CheckpointError) as caught:
        load_as_user(METHOD, path)
    message = str(caught.value)
    assert "\n" not in message and f"a {METHOD} model" in message
    assert "missing (first: encoder.0.weight" in message and "unexpected (first: conv1.weight" in message


def test_an_official_file_lacking_a_key_fails_naming_it(tmp_path):
    state = {"WPCA.0.weight": torch.zeros(4, 1024, 1, 1), "WPCA.0.bias": torch.zeros(4)}
    path = write_official(state, tmp_path / "partial.pth.tar", "state_dict", num_pcs=4)
    with pytest.raises(CheckpointError, match=f"looks like a {METHOD} checkpoint but lacks 'pool.centroids'"):
        load_as_user(METHOD, path)


def test_a_vladv2_file_fails_naming_its_assignment_bias(tmp_path):
    """NetVLAD v2 has an assignment bias the v1 files lack: it is named, never silently dropped."""
    state = small_official_state(4, 16) | {"pool.conv.bias": torch.zeros(4)}
    path = write_official(state, tmp_path / "v2.pth.tar", "state_dict", num_pcs=16)
    with pytest.raises(CheckpointError, match=r"1 unexpected \(first: pool\.conv\.bias\)"):
        load_as_user(METHOD, path)

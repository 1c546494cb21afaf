import pickle

import pytest
import torch
from safetensors.torch import save_file

from vpr_bench.checkpoints import load_state_dict, load_weights
from vpr_bench.errors import CheckpointError


class Boom:
    def __reduce__(self):
        return (print, ("pwned",))


def test_malicious_pickle_is_refused(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"model": Boom()}, f)
    with pytest.raises(CheckpointError, match=r"refusing to load .*evil.pt"):
        load_state_dict(path)
    assert "pwned" not in capsys.readouterr().out


def test_safetensors_and_torch_files_load(tmp_path):
    model = torch.nn.Linear(3, 2)
    save_file(model.state_dict(), tmp_path / "w.safetensors")
    torch.save({"model": model.state_dict(), "epoch": 3}, tmp_path / "best.pt")
    for path in (tmp_path / "w.safetensors", tmp_path / "best.pt", tmp_path):
        other = torch.nn.Linear(3, 2)
        load_weights(other, path)
        assert torch.equal(other.weight, model.weight)
    with pytest.raises(CheckpointError, match="does not fit this model"):
        load_weights(torch.nn.Linear(4, 2), tmp_path / "best.pt")


def test_numpy_values_beside_the_weights_are_skipped_not_read(tmp_path, capsys):
    """A training script's file (``{"model_state_dict", "recalls": np.ndarray, "best_r5": np.float64}``)
    loads: the numpy values become placeholders, as they pickle under numpy 2 and under numpy 1."""
    import zipfile

    import numpy as np

    from vpr_bench.checkpoints import NumpyNotRead, read_file

    model = torch.nn.Linear(3, 2)
    saved = {
        "model_state_dict": model.state_dict(),
        "recalls": np.array([91.5, 96.0]),
        "best_r5": np.float64(96),
    }
    torch.save({**saved, "epoch_num": 3}, tmp_path / "numpy2.pth")
    with (
        zipfile.ZipFile(tmp_path / "numpy2.pth") as source,
        zipfile.ZipFile(tmp_path / "numpy1.pth", "w") as out,
    ):
        for info in source.infolist():  # the names numpy 1 pickles under (numpy.core, not numpy._core)
            data = source.read(info.filename)
            out.writestr(
                info, data.replace(b"numpy._core", b"numpy.core") if info.filename.endswith(".pkl") else data
            )
    for name in ("numpy2.pth", "numpy1.pth"):
        content = read_file(tmp_path / name)
        assert isinstance(content["recalls"], NumpyNotRead) and isinstance(content["best_r5"], NumpyNotRead)
        assert content["epoch_num"] == 3 and torch.equal(content["model_state_dict"]["weight"], model.weight)

    with open(tmp_path / "evil.pth", "wb") as f:  # the placeholders open no door to other globals
        pickle.dump({"recalls": np.zeros(2), "model": Boom()}, f)
    with pytest.raises(CheckpointError, match=r"refusing to load .*evil.pth"):
        load_state_dict(tmp_path / "evil.pth")
    assert "pwned" not in capsys.readouterr().out

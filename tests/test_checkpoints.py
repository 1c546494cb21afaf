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

"""Every published model of the zoo evaluated on Corridor, one after another, into one results folder, then
one `vpr-bench compare` table: ms/image from the engine's dedicated timing pass and peak memory, measured
on whatever machine runs it (run it on a quiet one).

No authors' weights can be downloaded here, so each model reads a file in its authors' own layout filled
with the reference fixtures' recipe weights (what the zoo's fixture tests prove the models with): the
Recall@N of these records is meaningless, the costs are the models'. With the authors' files at hand, pass
them instead: `vpr-bench eval --method M --checkpoint FILE --dataset corridor`.

    python benchmarks/zoo_corridor.py [--out results-zoo] [--only megaloc,salad] [--markdown FILE]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "plugins" / "zoo" / "tests"))  # the fixtures' recipe and per-model changes


def official_files(folder: Path) -> dict[str, tuple[str, callable]]:
    """method → (file name, writer of that file in the authors' layout with the recipe's weights)."""
    import test_boq
    import test_cosplace
    import test_cricavpr
    import test_megaloc
    import test_netvlad_vgg16
    import test_supervlad
    from reference import keys, official_state, write_official, write_training_checkpoint
    from safetensors.torch import save_file

    def flat(fixture, name, **kw):
        return lambda: write_official(official_state(keys(fixture), **kw), folder / name)

    def cosplace(name):
        return lambda: write_official(
            official_state(keys("cosplace_resnet50_2048"), test_cosplace.ADJUST), folder / name
        )

    def netvlad():
        state = official_state(keys("netvlad"), test_netvlad_vgg16.ADJUST)
        return write_official(state, folder / "pitts_WPCA4096.pth.tar", wrapper="state_dict", num_pcs=4096)

    def megaloc():
        save_file(official_state(keys("megaloc"), test_megaloc.ADJUST), str(folder / "model.safetensors"))
        return folder / "model.safetensors"

    def training(fixture, name, adjust, change=None):
        state = official_state(keys(fixture), adjust, change=change)
        return lambda: write_training_checkpoint(state, folder / name)

    return {
        "netvlad-vgg16": netvlad,
        "cosplace": cosplace("ResNet50_2048_cosplace.pth"),
        "eigenplaces": cosplace("ResNet50_2048_eigenplaces.pth"),
        "mixvpr": flat("mixvpr", "resnet50_MixVPR_4096_channels(1024)_rows(4).ckpt"),
        "convap": flat("convap", "resnet50_ConvAP_512_2x2.ckpt"),
        "boq": flat("boq_dinov2", "dinov2_12288.pth"),
        "boq-resnet50": lambda: write_official(
            official_state(keys("boq_resnet50"), change=test_boq.resnet_adjustments),
            folder / "resnet50_16384.pth",
        ),
        "salad": flat("salad", "dino_salad.ckpt"),
        "megaloc": megaloc,
        "cricavpr": lambda: training(
            "cricavpr", "CricaVPR.pth", test_cricavpr.ADJUSTMENTS, test_cricavpr.gem_p_three
        )(),
        "supervlad": lambda: training("supervlad", "SuperVLAD.pth", test_supervlad.ADJUSTMENTS)(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results-zoo")
    parser.add_argument("--only", help="Comma-separated methods (boq-resnet50: BoQ's ResNet-50 file).")
    parser.add_argument("--markdown", help="Also write the table as Markdown to this file.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        files = official_files(Path(tmp))
        chosen = [m for m in files if not args.only or m in args.only.split(",")]
        for name in chosen:
            path = files[name]()
            method = "boq" if name == "boq-resnet50" else name
            started = time.perf_counter()
            cmd = [sys.executable, "-m", "vpr_bench", "eval", "--method", method, "--checkpoint", str(path),
                   "--dataset", "corridor", "--device", "cpu", "--quiet", "--out", args.out]  # fmt: skip
            code = subprocess.run(cmd).returncode
            print(f"{name}: exit {code} after {time.perf_counter() - started:.0f} s", flush=True)
            Path(path).unlink()
    compare = [sys.executable, "-m", "vpr_bench", "compare", "--results", args.out, "--dataset", "corridor"]
    subprocess.run([*compare, "--sort", "ms_image"], check=True)
    if args.markdown:
        subprocess.run([*compare, "--sort", "ms_image", "--format", "markdown", "--output", args.markdown])


if __name__ == "__main__":
    main()

"""Runs of one method trained by two recipes (triplet, gsv) are two rows of one table, told apart."""

from pathlib import Path

from vpr_bench.results.render import render
from vpr_bench.results.store import Record
from vpr_bench.results.table import build_table


def trained(run, r1, seed, recipe=None, **batches):
    budget = {"max_epochs": 12, "epochs": 12, "image_size": [48, 64], "pretrained": False, "device": "cpu",
              "lr": 1e-3, "images_seen": 12000, **batches}  # fmt: skip
    if recipe:
        budget["recipe"] = recipe
    data = {"schema_version": 1, "run_id": run, "created": f"2026-12-0{seed}T10:00:00+00:00", "method": "gem",
            "dataset": "synthetic", "plugin": "built-in", "backbone": "resnet18", "preset": "demo",
            "trained": True, "seed": seed, "budget": budget,
            "metrics": {"R@1": r1, "R@5": r1 + 5, "R@10": r1 + 8, "R@20": r1 + 10}}  # fmt: skip
    return Record(Path("/nowhere") / run, data)


def test_a_triplet_run_and_a_gsv_run_sit_side_by_side_with_their_seed_means():
    triplet = [trained(f"t{s}", 14.0 + s, s, "triplet", batch_size=8, negatives=3) for s in (1, 2, 3)]
    gsv = [trained(f"g{s}", 20.0 + s, s, "gsv", places_per_batch=10, images_per_place=4) for s in (1, 2, 3)]
    table = build_table([*triplet, *gsv], columns=("method", "R@1"), seed_mean=True)
    lines = render(table, "csv").splitlines()
    assert lines == [
        "method,recipe,R@1,seeds",
        'gem,gsv,22.0 ± 1.0 (n=3),"1,2,3"',
        'gem,triplet,16.0 ± 1.0 (n=3),"1,2,3"',
    ]
    assert not any("different budgets" in note for note in table.notes)  # one budget: P/K vs tuples unknown


def test_records_before_recipes_count_as_triplet_and_one_recipe_shows_no_column():
    old = [trained(f"o{s}", 14.0 + s, s) for s in (1, 2)]
    new = [trained("n3", 17.0, 3, "triplet")]
    table = build_table([*old, *new], columns=("method", "R@1"), seed_mean=True)
    assert render(table, "csv").splitlines()[0] == "method,R@1,seeds"
    assert len(table.rows) == 1

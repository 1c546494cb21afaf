"""`vpr-bench run/ablate/eval --method tscm` end to end on a tiny synthetic set, through the CLI."""

import json
from pathlib import Path

import pytest

from vpr_bench.testing import TINY_CLI, run_cli
from vpr_bench.testing import cli_main as main

call = run_cli


BUDGET = "--epochs 1 --queries-per-epoch 8 --batch-size 4 --negatives 2 --negative-samples 20".split()


def records(root: Path, method: str) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(root.glob(f"*/{method}/*/metrics.json"))]


@pytest.fixture(scope="module")
def pipeline_run(synthetic_root, tmp_path_factory, tiny_cli):
    """One tiny `run --method tscm` shared by the tests below (teacher + cross-metric student)."""
    from _pytest.monkeypatch import MonkeyPatch

    out = tmp_path_factory.mktemp("results")
    dataset = ["--dataset", f"folder:{synthetic_root}", "--out", str(out)]
    args = ["run", "--method", "tscm", *dataset, *tiny_cli, *BUDGET]
    with MonkeyPatch.context() as mp:
        mp.chdir(out)
        main(args)
    return out, args


def test_run_writes_linked_teacher_and_student_records(pipeline_run):
    out, _ = pipeline_run
    (teacher,), (student,) = records(out, "tscm-teacher"), records(out, "tscm-student")
    assert teacher["pipeline"]["id"] == student["pipeline"]["id"]
    assert teacher["pipeline"]["role"] == "teacher" and student["pipeline"]["role"] == "student"
    teacher_dir = Path(student["pipeline"]["teacher_run"])
    assert (teacher_dir / "metrics.json").is_file() and (teacher_dir / "best.safetensors").is_file()
    assert student["distillation"]["kd_loss"] == "cross-metric"
    assert student["distillation"]["mining_space"] == "teacher"
    assert set(student["asymmetric"]["metrics"]) >= {"R@1", "R@5"}
    assert student["asymmetric"]["query_model"] == "student"
    assert student["cost"]["params"] < teacher["cost"]["params"]
    assert student["cost"]["descriptor_dim"] == teacher["cost"]["descriptor_dim"] == 256


def test_the_teachers_budget_says_for_each_backbone_whether_it_was_pretrained(pipeline_run):
    out, _ = pipeline_run
    (teacher,) = records(out, "tscm-teacher")
    assert teacher["budget"]["pretrained"] == {"test_resnet": False, "test_vit": False}  # --no-pretrained
    assert teacher["budget"]["negatives"] == 2 and teacher["budget"]["weight_decay"] >= 0
    assert teacher["cost"]["device"] == teacher["budget"]["device"] and "threads" in teacher["cost"]["device"]


def test_ablate_reuses_the_teacher_and_writes_a_table(pipeline_run, capsys):
    out, args = pipeline_run
    teacher = Path(records(out, "tscm-student")[0]["pipeline"]["teacher_run"])
    ablate = ["ablate", *args[1:], "--teacher", str(teacher), "--kd-loss", "none,mse,stun"]
    code, stdout, err = call(ablate, capsys)
    assert code == 0, err
    assert len(records(out, "tscm-teacher")) == 1  # reused, not retrained
    students = [r for r in records(out, "tscm-student") if r["pipeline"]["kind"] == "ablation"]
    assert sorted(r["distillation"]["kd_loss"] for r in students) == ["mse", "none", "stun"]
    (table,) = out.glob("*/tscm-ablation/*/ablation.csv")
    lines = table.read_text().splitlines()
    assert lines[0] == "kd_loss,R@1,R@5,R@10,asym_R@1,params_M,ms_image,run" and len(lines) == 4
    assert [line.split(",")[0] for line in lines[1:]] == ["none", "mse", "stun"]
    assert "| none |" in stdout and (table.parent / "ablation.md").is_file()


def test_run_with_a_reused_teacher_reports_only_the_student_record(pipeline_run, capsys):
    out, args = pipeline_run
    teacher = Path(records(out, "tscm-student")[0]["pipeline"]["teacher_run"])
    before = (teacher / "metrics.json").read_bytes()
    code, stdout, err = call([*args, "--teacher", str(teacher), "--kd-loss", "none"], capsys)
    assert code == 0, err
    (written,) = [line for line in stdout.splitlines() if line.startswith("record written to")]
    assert "tscm-student" in written and (teacher / "metrics.json").read_bytes() == before


def test_asymmetric_eval_from_a_student_run(pipeline_run, capsys):
    out, args = pipeline_run
    student_dir = next(out.glob("*/tscm-student/*/metrics.json")).parent
    options = args[1 : -len(BUDGET)]
    code, _, err = call(
        [
            "eval",
            *options,
            "--checkpoint",
            str(student_dir),
            "--query-model",
            "student",
            "--database-model",
            "teacher",
        ],
        capsys,
    )
    assert code == 0, err
    (record,) = records(out, "tscm")
    assert record["roles"] == {"query_model": "student", "database_model": "teacher"}
    student = json.loads((student_dir / "metrics.json").read_text())
    assert record["metrics"]["R@1"] == pytest.approx(student["asymmetric"]["metrics"]["R@1"])


def test_list_shows_tscm_entries_as_coming_from_the_plugin(capsys):
    code, out, _ = call(["list"], capsys)
    assert code == 0
    registries = out.split("\nplugins:")[0]
    lines = {line.split()[0]: line for line in registries.splitlines() if line.startswith("  ")}
    for name in ("tscm", "tscm-teacher", "tscm-student", "cross-metric", "rkd", "stun", "none", "pkt"):
        assert lines[name].endswith("[plugin:tscm]"), name
    assert "tscm (vpr-bench-tscm" in out.split("\nplugins:")[1]


def test_bad_teacher_and_unknown_kd_loss_fail_in_one_line(synthetic_root, capsys):
    code, _, err = call(["run", "--method", "tscm", "--dataset", "synthetic", "--teacher", "nowhere"], capsys)
    assert code == 2 and "--teacher nowhere does not exist" in err
    code, _, err = call(
        ["eval", "--method", "tscm", "--dataset", "synthetic", "--checkpoint", "gone"], capsys
    )
    assert code == 2 and "--checkpoint gone does not exist" in err
    code, _, err = call(["run", "--method", "tscm", "--dataset", "synthetic", "--kd-loss", "kl"], capsys)
    assert code == 2 and "--kd-loss 'kl' is not one of" in err and "cross-metric" in err


def test_students_of_one_teacher_share_its_stored_descriptors(pipeline_run, capsys):
    out, args = pipeline_run
    teacher = Path(records(out, "tscm-student")[0]["pipeline"]["teacher_run"])
    stored = sorted(p.name.split("-")[0] for p in (teacher / "teacher-descriptors").glob("*.npz"))
    assert stored == ["test", "train"]  # the training set and the test database, written once
    before = {p: p.stat().st_mtime_ns for p in (teacher / "teacher-descriptors").glob("*.npz")}
    code, _, err = call([*args, "--teacher", str(teacher), "--kd-loss", "pkt"], capsys)
    assert code == 0, err
    assert {p: p.stat().st_mtime_ns for p in before} == before  # read back, not rewritten
    (student,) = [r for r in records(out, "tscm-student") if r["distillation"]["kd_loss"] == "pkt"]
    assert "teacher cache" in student["training"]["time_split_s"]


def test_ablate_with_seeds_reports_seed_means(pipeline_run, capsys):
    out, args = pipeline_run
    teacher = Path(records(out, "tscm-student")[0]["pipeline"]["teacher_run"])
    ablate = ["ablate", *args[1:], "--teacher", str(teacher), "--kd-loss", "rkd", "--seeds", "5,6"]
    code, stdout, err = call(ablate, capsys)
    assert code == 0, err
    students = [r for r in records(out, "tscm-student") if r["distillation"]["kd_loss"] == "rkd"]
    assert sorted(r["seed"] for r in students) == [5, 6]
    (table,) = [p for p in out.glob("*/tscm-ablation/*/ablation.md") if "rkd" in p.read_text()]
    row = next(line for line in table.read_text().splitlines() if line.startswith("| rkd"))
    assert " ± " in row and row.rstrip(" |").endswith("5,6")


def test_a_run_of_another_method_as_teacher_is_named_before_any_folder_is_made(tmp_path, tiny_cli, capsys):
    from safetensors.torch import save_file
    from torch import zeros

    results = tmp_path / "results"
    corridor = ["--dataset", "corridor", "--out", str(results)]
    code, _, err = call(["eval", "--method", "gem", *corridor, *TINY_CLI], capsys)
    assert code == 0, err
    (gem_run,) = results.glob("corridor/gem/*")
    save_file({"pool.p": zeros(1)}, str(gem_run / "best.safetensors"))  # as a trained gem run holds
    before = sorted(results.rglob("*"))
    code, _, err = call(["run", "--method", "tscm", *corridor, *tiny_cli, "--teacher", str(gem_run)], capsys)
    assert code == 2 and "Traceback" not in err
    assert err.strip() == (
        f"error: --teacher {gem_run} is a gem run, not a tscm-teacher run: give a run folder from "
        "<results>/<dataset>/tscm-teacher/, or drop --teacher to train one"
    )
    assert sorted(results.rglob("*")) == before  # no student folder left behind
    code, _, err = call(
        ["run", "--method", "tscm", *corridor, *tiny_cli, "--teacher", str(gem_run.parent)], capsys
    )
    assert code == 2
    assert (
        f"error: --teacher {gem_run.parent} is a folder of runs, not a run: give one of them, e.g. {gem_run}"
        in err
    )
    code, _, err = call(
        ["eval", "--method", "tscm", *corridor, *tiny_cli, "--checkpoint", str(gem_run)], capsys
    )
    assert code == 2
    assert f"error: --checkpoint {gem_run} is a gem run, not a tscm-student run" in err

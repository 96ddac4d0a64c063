from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from inspector import __version__
from inspector.checkpoints import load
from inspector.cli import main


def test_train_then_info(tmp_path, capsys):
    out = tmp_path / "s.pt"
    assert main(["train", "--dataset", "synthetic", "--hidden", "16", "--epochs", "3", "--out", str(out), "-q"]) == 0
    printed = capsys.readouterr().out
    assert "test accuracy" in printed and f"saved {out}" in printed
    assert main(["info", str(out)]) == 0
    table = capsys.readouterr().out
    assert "fc1" in table and "176" in table  # fc1: 16 x (10 + 1)
    assert main(["info", str(out), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert [layer["parameters"] for layer in payload["layers"]] == [16 * 11, 2 * 17]
    assert payload["metadata"]["config"]["hidden_sizes"] == [16]


def test_train_refuses_to_overwrite_before_training(tmp_path, capsys):
    out = tmp_path / "s.pt"
    out.write_bytes(b"keep")
    assert main(["train", "--dataset", "synthetic", "--out", str(out), "-q"]) == 1
    err = capsys.readouterr().err
    assert err.strip() == f"inspector: error: {out} already exists; pass --force to overwrite it"
    assert out.read_bytes() == b"keep"


def test_train_safetensors_with_snapshots(tmp_path, capsys):
    out = tmp_path / "s.safetensors"
    assert (
        main(
            [
                "train",
                "--dataset",
                "synthetic",
                "--hidden",
                "8",
                "--epochs",
                "4",
                "--patience",
                "0",
                "--snapshot-every",
                "2",
                "--out",
                str(out),
                "-q",
            ]
        )
        == 0
    )
    assert sorted(load(out).snapshots) == [2, 4]


def test_train_from_csv(tmp_path, capsys):
    rows = ["a,b,label"] + [f"{i % 7},{(i * 3) % 5},{int(i % 7 > 3)}" for i in range(60)]
    (tmp_path / "d.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "csv.pt"
    assert (
        main(
            [
                "train",
                "--dataset",
                str(tmp_path / "d.csv"),
                "--label-column",
                "label",
                "--epochs",
                "2",
                "--out",
                str(out),
                "-q",
            ]
        )
        == 0
    )
    assert load(out).dataset.feature_names == ("a", "b")


@pytest.mark.parametrize(
    "label,task",
    [
        (lambda i, y: f"{y:.4f}", ["--task", "classification"]),  # continuous: refused while reading the labels
        # continuous written as whole numbers: 296 "classes" in 300 rows, with or without --task
        (lambda i, y: str(round(1000 * y)), []),
        (lambda i, y: str(round(1000 * y)), ["--task", "classification"]),
    ],
)
def test_train_refuses_a_continuous_label_column_as_classes_and_says_to_pass_task_regression(
    tmp_path, capsys, label, task
):
    rng = torch.Generator().manual_seed(0)
    X = torch.randn(300, 3, generator=rng)
    y = 3 * X[:, 1] - 2 * X[:, 2]
    rows = ["a,b,c,target"] + [
        f"{r[0]:.4f},{r[1]:.4f},{r[2]:.4f},{label(i, float(t))}" for i, (r, t) in enumerate(zip(X.tolist(), y.tolist()))
    ]
    (tmp_path / "reg.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "reg.pt"
    assert (
        main(
            [
                "train",
                "--dataset",
                str(tmp_path / "reg.csv"),
                "--label-column",
                "target",
                "--epochs",
                "1",
                "--out",
                str(out),
                "-q",
                *task,
            ]
        )
        == 1
    )
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err and captured.out == ""
    assert "continuous" in err and "pass --task regression" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["reg.csv"]


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"dense-inspector {__version__}"


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda p: None, "no such file"),
        (lambda p: p.write_bytes(b"\x00" * 40), "unknown checkpoint format"),
        (lambda p: torch.save(nn.Sequential(nn.Linear(2, 2)), p), "--trust-pickle"),
    ],
)
def test_info_bad_input_is_one_line_and_exit_1(tmp_path, capsys, make, match):
    path = tmp_path / "x.pt"
    make(path)
    assert main(["info", str(path)]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and match in err and str(path) in err


def test_nan_weights_are_analyze_findings_and_info_stays_header_only(tmp_path, capsys):
    model = nn.Sequential(nn.Linear(2, 2))
    with torch.no_grad():
        model[0].weight.fill_(float("nan"))
    torch.save(model.state_dict(), tmp_path / "n.pt")
    assert main(["info", str(tmp_path / "n.pt")]) == 0  # info reads no tensor, so it can't see NaNs
    assert "NaN" not in capsys.readouterr().err
    assert main(["analyze", str(tmp_path / "n.pt"), "--out", str(tmp_path / "a")]) == 0
    assert "0.weight holds NaN or Inf values" in capsys.readouterr().out  # the file's name, as info says


def test_console_script_has_no_traceback_on_user_error(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "inspector", "info", str(tmp_path / "missing.pt")], capture_output=True, text=True
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip() == f"inspector: error: {tmp_path / 'missing.pt'}: no such file; check the path"


def test_bad_hidden_sizes_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", "--hidden", "12,abc"])
    assert info.value.code == 2


@pytest.fixture(scope="module")
def small_checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "s.pt"
    assert main(["train", "--dataset", "synthetic", "--hidden", "4", "--epochs", "1", "--out", str(path), "-q"]) == 0
    return path


@pytest.mark.parametrize(
    "argv",
    [
        ["--version"],
        ["info", "{ckpt}", "--json"],
        ["info", "{ckpt}"],
        ["analyze", "{ckpt}", "--out", "{tmp}/an", "--sections", "parameters"],
    ],
)
def test_closed_stdout_pipe_ends_quietly(small_checkpoint, tmp_path, monkeypatch, capsys, argv):
    import os

    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader (`| head`) is gone before anything is written
    stream = os.fdopen(write_end, "w")
    monkeypatch.setattr(sys, "stdout", stream)
    try:
        status = main([a.format(ckpt=small_checkpoint, tmp=tmp_path) for a in argv])
        stream.write("more")
        stream.flush()  # stdout now points at devnull: the interpreter's exit flush cannot fail either
    finally:
        stream.close()
    assert status == 0 and capsys.readouterr().err == ""  # a reader that left is success, like ripgrep


def test_console_script_piped_into_a_closed_reader_prints_no_traceback(small_checkpoint):
    import os

    read_end, write_end = os.pipe()
    os.close(read_end)
    proc = subprocess.run(
        [sys.executable, "-m", "inspector", "info", str(small_checkpoint), "--json"],
        stdout=write_end,
        stderr=subprocess.PIPE,
        text=True,
    )
    os.close(write_end)
    assert proc.stderr == "" and proc.returncode == 0


@pytest.mark.parametrize(
    "argv",
    [
        ["analyze", "", "--out", "{tmp}/a"],
        ["info", ""],
        ["report", "", "--out", "{tmp}/r.md"],
        ["report", "{ckpt}", "--out", ""],
        ["prune", "{ckpt}", "--sparsity", "0.5", "--out", ""],
    ],
)
def test_an_empty_path_argument_is_one_line_saying_so(small_checkpoint, tmp_path, capsys, argv):
    assert main([a.format(ckpt=small_checkpoint, tmp=tmp_path) for a in argv]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "empty path" in err and "is a directory" not in err


def test_report_out_dash_writes_text_to_stdout_and_refuses_binary(small_checkpoint, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["report", str(small_checkpoint), "--out", "-", "--format", "md"]) == 0
    assert "# dense-inspector report" in capsys.readouterr().out and not (tmp_path / "-").exists()
    assert main(["report", str(small_checkpoint), "--out", "-", "--format", "pdf"]) == 1
    assert "standard output" in capsys.readouterr().err and not (tmp_path / "-").exists()


def test_force_never_replaces_a_users_file_or_a_foreign_checkpoint(small_checkpoint, tmp_path, capsys):
    import torch

    notes = tmp_path / "notes.txt"
    notes.write_text("my notes")
    assert main(["report", str(small_checkpoint), "--format", "md", "--out", str(notes), "--force"]) == 1
    assert "not written by dense-inspector" in capsys.readouterr().err and notes.read_text() == "my notes"
    foreign = tmp_path / "foreign.pt"
    torch.save({"w": torch.zeros(2, 2)}, foreign)
    before = foreign.read_bytes()
    assert main(["prune", str(small_checkpoint), "--sparsity", "0.5", "--out", str(foreign), "--force"]) == 1
    assert "not written by dense-inspector" in capsys.readouterr().err and foreign.read_bytes() == before
    # the tool's own outputs are still replaced with --force
    own = tmp_path / "own.md"
    for _ in range(2):
        assert main(["report", str(small_checkpoint), "--out", str(own), "--force"]) == 0
    assert main(["prune", str(small_checkpoint), "--sparsity", "0.5", "--out", str(tmp_path / "p.pt")]) == 0
    assert main(["prune", str(small_checkpoint), "--sparsity", "0.2", "--out", str(tmp_path / "p.pt"), "--force"]) == 0


def test_force_refuses_fifos_and_device_nodes(small_checkpoint, tmp_path, capsys):
    import os
    import stat

    fifo = tmp_path / "fifo.md"
    os.mkfifo(fifo)
    targets = [fifo]
    try:
        os.mknod(tmp_path / "nulldev", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        targets.append(tmp_path / "nulldev")
    except (PermissionError, OSError):
        pass
    for target in targets:
        assert main(["report", str(small_checkpoint), "--format", "md", "--out", str(target), "--force"]) == 1
        assert "not a regular file" in capsys.readouterr().err
        assert not stat.S_ISREG(os.stat(target).st_mode)


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--seed=-1"],
        ["train", "--seed", str(2**32)],
        ["train", "--seed", "1.5"],
        ["train", "--lr", "nan"],
        ["train", "--lr", "inf"],
        ["train", "--lr", "0"],
        ["train", "--weight-decay", "nan"],
        ["train", "--weight-decay", "-0.1"],
        ["train", "--weight-decay", "inf"],
        ["train", "--dropout", "1"],
        ["train", "--dropout", "nan"],
        ["train", "--dropout", "-0.1"],
        ["train", "--epochs", "0"],
        ["train", "--batch-size", "0"],
        ["train", "--patience", "-1"],
        ["train", "--snapshot-every", "0"],
        ["train", "--val-fraction", "0"],
        ["train", "--test-fraction", "1"],
        ["train", "--val-fraction", "nan"],
        ["analyze", "m.pt", "--out", "d", "--steps", "0"],
        ["analyze", "m.pt", "--out", "d", "--nearly-dead", "nan"],
        ["analyze", "m.pt", "--out", "d", "--finetune-epochs", "-1"],
        ["prune", "m.pt", "--out", "p.pt", "--sparsity", "nan"],
        ["prune", "m.pt", "--out", "p.pt", "--sparsity", "1"],
        ["prune", "m.pt", "--out", "p.pt", "--sparsity", "0.5", "--finetune-epochs", "-2"],
    ],
)
def test_out_of_range_numeric_options_are_usage_errors_naming_the_option(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    option = [a for a in argv if a.startswith("--")][-1].split("=")[0]  # the last option is the bad one
    assert err.count("\n") == 1  # one line: the error and where the usage is, not the usage itself
    assert f"argument {option}: expected " in err and err.rstrip().endswith(f"(see `inspector {argv[0]} --help`)")
    assert "Traceback" not in err


def test_train_accepts_the_largest_seed(tmp_path, capsys):
    # sklearn takes seeds below 2**32; the split's second draw used seed + 1, which overflowed
    out = tmp_path / "s.pt"
    assert (
        main(
            [
                "train",
                "--dataset",
                "synthetic",
                "--hidden",
                "4",
                "--epochs",
                "1",
                "--seed",
                str(2**32 - 1),
                "--out",
                str(out),
                "-q",
            ]
        )
        == 0
    )
    assert load(out).train_config.seed == 2**32 - 1


def test_train_refuses_a_model_larger_than_memory_in_one_line(tmp_path, capsys, monkeypatch):
    # 64 -> 10**8 -> 10 on digits: 10**8 x 65 + 10 x (10**8 + 1) parameters, x 16 bytes = 111.8 GiB to train
    monkeypatch.setattr("inspector.training.physical_memory_bytes", lambda: 64 * 2**30)  # any machine: 64 GiB
    out = tmp_path / "big.pt"
    assert (
        main(["train", "--dataset", "digits", "--hidden", "100000000", "--epochs", "1", "--out", str(out), "-q"]) == 1
    )
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "7,500,000,010 parameters" in err and "111.8 GiB" in err
    assert not out.exists()


def test_narrowed_sections_say_the_data_sections_were_not_requested(small_checkpoint, tmp_path, capsys):
    assert (
        main(["analyze", str(small_checkpoint), "--out", str(tmp_path / "an"), "--sections", "parameters,weights"]) == 0
    )
    printed = capsys.readouterr().out
    assert "no evaluation data" not in printed
    assert "were not requested" in printed and "evaluated on" in printed


def test_train_run_dir_gets_its_parents_but_never_goes_through_a_file(tmp_path, monkeypatch, capsys):
    """The README's `--run-dir runs/digits` in an empty folder (issue 20): created with its parents;
    a path through a regular file is one line naming the file, and the file is left as it was."""
    from inspector.live.store import read_run

    monkeypatch.chdir(tmp_path)
    args = ["train", "--dataset", "digits", "--epochs", "2", "--every", "5", "--out", "m.pt"]
    assert main([*args, "--run-dir", "runs/digits"]) == 0
    assert read_run(tmp_path / "runs" / "digits").status == "finished"
    (tmp_path / "file.txt").write_text("mine")
    assert main([*args, "--run-dir", "file.txt/run", "--out", "m2.pt"]) == 1
    err = capsys.readouterr().err
    assert "file.txt is not a folder; choose another run directory" in err and err.count("\n") == 1
    assert (tmp_path / "file.txt").read_text() == "mine" and not (tmp_path / "m2.pt").exists()


def test_train_without_early_stopping_says_the_last_epoch_was_kept(tmp_path, capsys):
    """--patience 0 (issue 20): the model saved is the last epoch's; the line says so and names the
    epoch whose validation loss was lowest (recomputed from the saved history)."""
    out = tmp_path / "m.pt"
    assert (
        main(["train", "--dataset", "digits", "--epochs", "6", "--patience", "0", "--lr", "0.05", "--out", str(out)])
        == 0
    )
    history = load(out).history
    lowest = int(np.argmin(history.val_loss)) + 1
    text = capsys.readouterr().out
    assert f"trained 6 epochs (last epoch kept (no early stopping); lowest validation loss at epoch {lowest})" in text
    assert "best epoch" not in text

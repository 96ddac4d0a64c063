"""The text path (``analyze MODEL_DIR --text FILE``) under torch.distributed, where the file is one batch:
two ranks as torchrun starts them (rank 1 reads no batch) write the analysis one process writes; and the
folder's labels (``id2label``) and the file's labels, holding terminal escapes, reach no output raw."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from inspector.analysis.result import Analysis
from inspector.cli import main
from tests.helpers import free_port
from tests.test_distributed import _same_result

transformers = pytest.importorskip("transformers")

WORDS = "the a rain storm sun cloud wind is was today cold warm good bad day".split()
TEXTS = ["the rain is cold today", "the sun was warm", "storm today", "a good day"]
NEG, POS = "\x1b[2Jneg", "pos\x07"  # labels that would clear the screen and ring the bell
ARGS = ["--sections", "parameters,activations,importance,pruning", "--methods", "saliency", "--steps", "4"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("hf")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    (root / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = transformers.BertTokenizerFast(vocab=str(root / "vocab.txt"))
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=len(vocab),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=24,
        max_position_embeddings=32,
        num_labels=2,
        id2label={0: NEG, 1: POS},
        label2id={NEG: 0, POS: 1},
    )
    transformers.BertForSequenceClassification(config).save_pretrained(root / "cls")
    tokenizer.save_pretrained(root / "cls")
    rows = [{"text": t, "label": label} for t, label in zip(TEXTS, [NEG, POS, NEG, 1], strict=True)]
    (root / "t.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return root


def _two_ranks(argv: list[str]) -> list[tuple[int, str, str]]:
    """``python -m inspector *argv`` on two ranks as torchrun starts them: (exit code, stdout, stderr) per rank."""
    return _ranks(["-m", "inspector", *argv])


def _ranks(args: list[str]) -> list[tuple[int, str, str]]:
    """``python *args`` on two ranks as torchrun starts them: (exit code, stdout, stderr) per rank."""
    world, port = 2, free_port()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "OMP_NUM_THREADS": "1"}
    env.update(WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), INSPECTOR_DIST_TIMEOUT="60")
    env["HF_HUB_OFFLINE"] = "1"
    ranks = [
        subprocess.Popen(
            [sys.executable, *args],
            env={**env, "RANK": str(r), "LOCAL_RANK": str(r)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for r in range(world)
    ]
    outputs = [p.communicate(timeout=240) for p in ranks]
    return [(p.returncode, out, err) for p, (out, err) in zip(ranks, outputs, strict=True)]


def test_two_ranks_on_one_batch_of_texts_write_one_process_analysis(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["analyze", str(folder / "cls"), "--text", str(folder / "t.jsonl"), *ARGS]
    assert main([*argv, "--out", str(tmp_path / "one")]) == 0
    out, err = capsys.readouterr()
    assert "\x1b" not in out + err and "\x07" not in out + err
    for r, (code, out, err) in enumerate(_two_ranks([*argv, "--out", str(tmp_path / "two")])):
        assert code == 0, (r, err)
        assert "\x1b" not in out + err and "\x07" not in out + err
    one, two = Analysis.load(tmp_path / "one"), Analysis.load(tmp_path / "two")
    assert one.data is not None and one.data.n_samples == len(TEXTS)
    for name in ("data", "activations", "importance", "pruning"):
        _same_result(getattr(two, name), getattr(one, name), name)


def test_report_and_prune_under_two_ranks_write_and_say_it_once(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """report and prune of a model folder on a text file under torchrun: one analysis or score over the
    ranks' shares, rank 0 alone checks --out, writes and prints (each rank used to do it all and write the
    same file, racing the other's "already exists")."""
    text = ["--text", str(folder / "t.jsonl"), "--batch-size", "1"]
    assert (
        main(["prune", str(folder / "cls"), *text, "--sparsity", "0.5", "--out", str(tmp_path / "one.safetensors")])
        == 0
    )
    one_line = capsys.readouterr().out.splitlines()[0]
    prune = ["prune", str(folder / "cls"), *text, "--sparsity", "0.5", "--out", str(tmp_path / "two.safetensors")]
    report = ["report", str(folder / "cls"), *text, "--out", str(tmp_path / "two.json")]
    for argv, said in ((prune, "saved "), (report, "wrote ")):
        (code0, out0, err0), (code1, out1, err1) = _two_ranks(argv)
        assert code0 == 0 and code1 == 0, (err0, err1)
        assert out0.count(said) == 1 and out1 == "", (out0, out1)
    assert (tmp_path / "two.json").is_file()
    (code0, out0, _), _ = _two_ranks(prune + ["--force"])
    assert code0 == 0 and out0.splitlines()[0] == one_line  # the score over both shares is one process's


LEFT_THREADS = """
import os, transformers
from inspector.core import distributed
with distributed.process_group():
    config = transformers.BertConfig(vocab_size=10, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=8)
    transformers.BertModel(config)  # imports torch.distributed.nn, whose defaults read the group at import
    distributed.all_gather_objects(distributed.rank())
names = [open(f"/proc/self/task/{t}/comm").read().strip() for t in os.listdir("/proc/self/task")]
print(sum("gloo" in name for name in names))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="counts threads in /proc")
def test_the_group_is_freed_with_its_threads_when_a_model_was_built_inside_it() -> None:
    # a group still held after destroy_process_group keeps its gloo threads to the end of the process,
    # where one still dropping its last collective's tensors aborts it ("terminate called without an
    # active exception", a rank's exit code -6 now and then): no gloo thread is left when the group ends
    for code, out, err in _ranks(["-c", LEFT_THREADS]):
        assert code == 0, err
        assert out.split() == ["0"], (out, err)

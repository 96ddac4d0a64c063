"""``inspector analyze MODEL_DIR --text FILE``: a Hugging Face model folder on a text file (issue 19, part 2).

Tiny models built from a config (BERT classifier, BERT base, GPT-2), saved with ``save_pretrained`` beside
tokenizers built here (a WordPiece vocabulary, a WordLevel model trained on a few sentences): nothing is
downloaded. Every number is recomputed here from the model called on each text alone (no padding): the
classifier's target is the true label's logit, the causal LM's the sum of the log-softmax at the actual
next tokens, its loss the mean token NLL and its perplexity the exp of that.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import dashboards.app
import inspector
from inspector.analysis import Analysis
from inspector.analysis.inputs import as_source
from inspector.analysis.pruning import PruningCurve, PruningReport
from inspector.analysis.sections.pruning import pruning_findings
from inspector.analysis.task import make_task
from inspector.cli import main
from inspector.text_data import TextFile
from inspector.workflows import open_text_model

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

os.environ.setdefault("HF_HUB_OFFLINE", "1")

WORDS = "the a rain storm forecast sun cloud wind is was today tomorrow cold warm good bad day".split()
SENTENCES = [
    "the rain is cold today",
    "the sun was warm",
    "storm tomorrow",
    "a good day is a warm day",
    "the wind was bad today",
    "cloud and rain",  # "and" is unknown: [UNK] / <unk>
]
LABELS = ["neg", "pos", "neg", "pos", "neg", "neg"]
FAST = ["--sections", "parameters,activations,importance", "--methods", "saliency", "--max-samples", "5"]


def _bert_tokenizer(folder: Path) -> Any:
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    path = folder / "vocab.txt"
    path.write_text("\n".join(vocab) + "\n")
    return transformers.BertTokenizerFast(vocab=str(path))


def _bert_config(vocab_size: int = len(WORDS) + 5, **extra: Any) -> Any:
    return transformers.BertConfig(
        vocab_size=vocab_size,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=24,
        max_position_embeddings=32,
        **extra,
    )


def _save(model: Any, tokenizer: Any, folder: Path) -> Path:
    model.save_pretrained(folder)
    if tokenizer is not None:
        tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hf")
    torch.manual_seed(0)
    bert_tok = _bert_tokenizer(root)
    labels = {"id2label": {0: "neg", 1: "pos"}, "label2id": {"neg": 0, "pos": 1}}
    out = {
        "classifier": _save(
            transformers.BertForSequenceClassification(_bert_config(num_labels=2, **labels)), bert_tok, root / "cls"
        ),
        "base": _save(transformers.BertModel(_bert_config()), bert_tok, root / "base"),
    }
    word_level = tokenizers.Tokenizer(tokenizers.models.WordLevel(unk_token="<unk>"))
    word_level.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    word_level.train_from_iterator(SENTENCES, tokenizers.trainers.WordLevelTrainer(special_tokens=["<unk>", "<eos>"]))
    gpt_tok = transformers.PreTrainedTokenizerFast(tokenizer_object=word_level, unk_token="<unk>", eos_token="<eos>")
    config = transformers.GPT2Config(
        vocab_size=len(gpt_tok), n_embd=16, n_layer=1, n_head=2, n_positions=32, bos_token_id=1, eos_token_id=1
    )
    out["gpt2"] = _save(transformers.GPT2LMHeadModel(config), gpt_tok, root / "gpt2")
    return out


@pytest.fixture(scope="module")
def texts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("texts")
    txt = root / "texts.txt"
    txt.write_text("\n".join(SENTENCES[:3]) + "\n\n   \n" + "\n".join(SENTENCES[3:]) + "\n")  # blank lines skipped
    jsonl = root / "texts.jsonl"
    rows = [{"text": s, "label": lab} for s, lab in zip(SENTENCES, LABELS)]
    rows[1]["label"] = 1  # an integer label beside the named ones
    jsonl.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    csv = root / "texts.csv"
    csv.write_text("sentence,sentiment\n" + "".join(f"{s},{lab}\n" for s, lab in zip(SENTENCES, LABELS)))
    return {"txt": txt, "jsonl": jsonl, "csv": csv}


def _load(folder: Path) -> tuple[Any, Any]:
    config = json.loads((folder / "config.json").read_text())
    cls = getattr(transformers, config["architectures"][0])
    return cls.from_pretrained(folder, local_files_only=True).eval(), transformers.AutoTokenizer.from_pretrained(
        folder, local_files_only=True
    )


def run(capsys: pytest.CaptureFixture[str], *argv: Any) -> tuple[int, str, str]:
    status = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def one_line_error(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if not line.startswith("inspector: note:")]
    assert len(lines) == 1, err
    assert lines[0].startswith("inspector: error: ") and "Traceback" not in err, err
    return lines[0].removeprefix("inspector: error: ")


def _alone(model: Any, tokenizer: Any, text: str) -> tuple[torch.Tensor, Any]:
    ids = torch.tensor([tokenizer(text, truncation=True, max_length=32)["input_ids"]])
    with torch.no_grad():
        return ids, model(input_ids=ids)


# ------------------------------------------------------------------------------------- the classifier


def test_classifier_on_jsonl_end_to_end_scores_accuracy_of_the_true_labels(folders, texts, tmp_path, capsys) -> None:
    status, out, err = run(
        capsys, "analyze", folders["classifier"], "--text", texts["jsonl"], "--out", tmp_path / "a", *FAST
    )
    assert status == 0, err
    analysis = Analysis.load(tmp_path / "a")
    model, tokenizer = _load(folders["classifier"])
    label_ids = {"neg": 0, "pos": 1}
    truth = [label_ids[lab] for lab in LABELS[:5]]
    truth[1] = 1
    predicted = [int(_alone(model, tokenizer, s)[1].logits.argmax()) for s in SENTENCES[:5]]
    assert analysis.data is not None and analysis.data.n_samples == 5
    assert analysis.data.metric_name == "accuracy" and analysis.model.source == str(folders["classifier"])
    assert analysis.data.metric == pytest.approx(sum(p == t for p, t in zip(predicted, truth)) / 5)
    assert analysis.importance is not None and analysis.activations
    assert "texts.jsonl" in out


def test_classifier_target_is_the_true_labels_logit(folders, texts) -> None:
    opened = open_text_model(folders["classifier"], texts["jsonl"])
    assert opened.task == "classification"
    model, tokenizer = _load(folders["classifier"])
    batch = as_source(opened.data).first()
    task = make_task(opened.task, batch, target=opened.target)
    with torch.no_grad():
        target = task.target(batch.call(opened.folder.model), batch)
    expected = []
    for sentence, label in zip(SENTENCES, [0, 1, 0, 1, 0, 0]):
        logits = _alone(model, tokenizer, sentence)[1].logits[0]
        expected.append(float(logits[label]))
    torch.testing.assert_close(target, torch.tensor(expected), atol=1e-5, rtol=1e-5)


def test_a_gpt2_classifier_saved_without_a_pad_token_reads_batches_of_texts(folders, texts, tmp_path) -> None:
    """GPT2ForSequenceClassification reads the logit at each text's last real token and refuses batches of
    several texts when its config names no pad token (as a config built for it does): the folder's model
    is told the id the batches are padded with, and each text's logits equal the model's on it alone."""
    tokenizer = transformers.AutoTokenizer.from_pretrained(folders["gpt2"])
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        vocab_size=len(tokenizer), n_embd=16, n_layer=1, n_head=2, n_positions=32, num_labels=2,
        id2label={0: "neg", 1: "pos"}, label2id={"neg": 0, "pos": 1},
    )  # fmt: skip
    assert config.pad_token_id is None
    folder = _save(transformers.GPT2ForSequenceClassification(config), tokenizer, tmp_path / "gpt2-cls")
    opened = open_text_model(folder, texts["jsonl"])
    batch = as_source(opened.data).first()
    assert bool((batch.mask == 0).any())  # texts of different lengths: padded
    task = make_task(opened.task, batch, target=opened.target)
    with torch.no_grad():
        target = task.target(batch.call(opened.folder.model), batch)
    model = transformers.GPT2ForSequenceClassification.from_pretrained(folder).eval()
    expected = [
        float(_alone(model, tokenizer, s)[1].logits[0, label]) for s, label in zip(SENTENCES, [0, 1, 0, 1, 0, 0])
    ]
    torch.testing.assert_close(target, torch.tensor(expected), atol=1e-5, rtol=1e-5)


def test_classifier_without_labels_explains_the_predicted_logit(folders, texts) -> None:
    opened = open_text_model(folders["classifier"], texts["txt"])
    batch = as_source(opened.data).first()
    task = make_task(opened.task, batch, target=opened.target)
    model, tokenizer = _load(folders["classifier"])
    with torch.no_grad():
        target = task.target(batch.call(opened.folder.model), batch)
    expected = [float(_alone(model, tokenizer, s)[1].logits.max()) for s in SENTENCES]
    torch.testing.assert_close(target, torch.tensor(expected), atol=1e-5, rtol=1e-5)


def test_csv_columns_are_named_by_flags(folders, texts, tmp_path, capsys) -> None:
    argv = ["--text-column", "sentence", "--label-column", "sentiment", "--sections", "parameters"]
    status, _, err = run(
        capsys, "analyze", folders["classifier"], "--text", texts["csv"], "--out", tmp_path / "c", *argv
    )
    assert status == 0, err
    analysis = Analysis.load(tmp_path / "c")
    model, tokenizer = _load(folders["classifier"])
    truth = [{"neg": 0, "pos": 1}[lab] for lab in LABELS]
    predicted = [int(_alone(model, tokenizer, s)[1].logits.argmax()) for s in SENTENCES]
    assert analysis.data is not None and analysis.data.n_samples == len(SENTENCES)
    assert analysis.data.metric == pytest.approx(sum(p == t for p, t in zip(predicted, truth)) / len(SENTENCES))


# ------------------------------------------------------------------------------------- the causal LM


def _lm_truth(folder: Path) -> tuple[list[float], float, int]:
    """Per text: the sum of log-softmax at each actual next token; the total NLL and the token count."""
    model, tokenizer = _load(folder)
    sums, total, count = [], 0.0, 0
    for sentence in SENTENCES:
        ids, out = _alone(model, tokenizer, sentence)
        logp = torch.log_softmax(out.logits[0, :-1].double(), dim=-1)
        picked = logp.gather(1, ids[0, 1:, None])[:, 0]
        sums.append(float(picked.sum()))
        total -= float(picked.sum())
        count += ids.shape[1] - 1
    return sums, total, count


def test_causal_lm_end_to_end_reports_loss_and_perplexity(folders, texts, tmp_path, capsys) -> None:
    status, out, err = run(
        capsys, "analyze", folders["gpt2"], "--text", texts["txt"], "--out", tmp_path / "g", *FAST[:-2]
    )
    assert status == 0, err
    analysis = Analysis.load(tmp_path / "g")
    _, total, count = _lm_truth(folders["gpt2"])
    assert analysis.data is not None and analysis.data.n_samples == len(SENTENCES)
    assert (analysis.data.metric_name, analysis.data.loss_name) == ("perplexity", "cross-entropy")
    assert analysis.data.loss == pytest.approx(total / count, rel=1e-5)
    assert analysis.data.metric == pytest.approx(math.exp(total / count), rel=1e-5)
    assert analysis.model.task == "causal-lm" and "next tokens" in analysis.model.target
    assert "perplexity" in out


def test_causal_lm_target_is_the_log_probability_of_the_next_tokens(folders, texts) -> None:
    opened = open_text_model(folders["gpt2"], texts["txt"], batch_size=4)
    source = as_source(opened.data)
    batches = list(source)
    assert [len(b) for b in batches] == [4, 2]
    task = make_task(opened.task, batches[0])
    assert not task.higher_is_better
    with torch.no_grad():
        target = torch.cat([task.target(b.call(opened.folder.model), b) for b in batches])
    sums, _, _ = _lm_truth(folders["gpt2"])
    torch.testing.assert_close(target.double(), torch.tensor(sums, dtype=torch.float64), atol=1e-4, rtol=1e-5)


def test_prune_and_report_read_a_model_folder(folders, texts, tmp_path, capsys) -> None:
    out_file = tmp_path / "pruned.safetensors"
    status, out, err = run(
        capsys, "prune", folders["gpt2"], "--text", texts["txt"], "--sparsity", "0.5", "--out", out_file
    )
    assert status == 0, err
    assert "perplexity" in out and out_file.is_file()
    # GPT-2's lm_head is wte's tensor: the pruned file holds it under both names (every key loads) and
    # says so, so info counts it once, as the model does
    model, _ = _load(folders["gpt2"])
    own = sum(p.numel() for p in model.parameters())
    pt_file = tmp_path / "pruned.pt"
    status, _, err = run(
        capsys, "prune", folders["gpt2"], "--text", texts["txt"], "--sparsity", "0.5", "--out", pt_file
    )
    assert status == 0, err
    for path in (out_file, pt_file):
        status, out, err = run(capsys, "info", path, "--json")
        assert status == 0, err
        info = json.loads(out)
        assert info["totals"]["total_parameters"] == own, path
        assert {row["layer"]: row["tied_to"] for row in info["layers"]}["lm_head"] == "transformer.wte", path
    from safetensors.torch import load_file

    pruned = load_file(out_file)
    model.load_state_dict(pruned)  # strict: every key is there
    assert torch.equal(pruned["lm_head.weight"], pruned["transformer.wte.weight"])
    assert model.lm_head.weight is model.transformer.wte.weight  # still tied after loading
    assert int((model.transformer.h[0].mlp.c_fc.weight == 0).sum()) > 0  # the pruned weights came in
    status, out, err = run(
        capsys, "report", folders["classifier"], "--text", texts["jsonl"], "--out", "-", "--format", "md",
        "--max-samples", "3",
    )  # fmt: skip
    assert status == 0, err
    assert "accuracy" in out


# ------------------------------------------------------------------------------------- a base encoder


def test_base_encoder_explains_a_named_or_own_target(folders, texts, tmp_path, capsys) -> None:
    argv = ["--sections", "parameters,activations"]
    # every default section, conductance included (it once asked for target= although it was given)
    status, _, err = run(capsys, "analyze", folders["base"], "--text", texts["txt"], "--target", "pooled-norm",
                         "--out", tmp_path / "b")  # fmt: skip
    assert status == 0, err
    model, tokenizer = _load(folders["base"])
    norms = [float(_alone(model, tokenizer, s)[1].pooler_output.norm()) for s in SENTENCES]
    analysis = Analysis.load(tmp_path / "b")
    assert analysis.data is not None and analysis.data.metric == pytest.approx(sum(norms) / len(norms), rel=1e-5)
    assert analysis.importance is not None and analysis.importance.conductance
    assert all(c.error is None for c in analysis.importance.conductance)

    own = tmp_path / "mytarget.py"
    own.write_text(
        "def length(out, batch):\n    return batch['attention_mask'].sum(1).float() + 0 * out.last_hidden_state[:, 0, 0]\n"
    )
    status, _, err = run(
        capsys,
        "analyze",
        folders["base"],
        "--text",
        texts["txt"],
        "--target",
        f"{own}:length",
        "--out",
        tmp_path / "o",
        *argv,
    )
    assert status == 0, err
    lengths = [len(tokenizer(s)["input_ids"]) for s in SENTENCES]
    own_analysis = Analysis.load(tmp_path / "o")
    assert own_analysis.data is not None and own_analysis.data.metric == pytest.approx(sum(lengths) / len(lengths))

    opened = open_text_model(folders["base"], texts["txt"], target="mean-norm")
    batch = as_source(opened.data).first()
    with torch.no_grad():
        value = make_task(opened.task, batch, target=opened.target).target(batch.call(opened.folder.model), batch)
    expected = [float(_alone(model, tokenizer, s)[1].last_hidden_state[0].mean(0).norm()) for s in SENTENCES]
    torch.testing.assert_close(value, torch.tensor(expected), atol=1e-5, rtol=1e-5)


def test_a_masked_lm_takes_the_hidden_state_targets(folders, texts, tmp_path, capsys) -> None:
    # a masked LM's output holds logits, not last_hidden_state: both named targets once raised "the model
    # returns none"; they read its encoder's last hidden state (the last of the hidden_states it is asked for)
    torch.manual_seed(0)
    folder = _save(transformers.BertForMaskedLM(_bert_config()), _load(folders["base"])[1], tmp_path / "mlm")
    model, tokenizer = _load(folder)
    for name, of in (("mean-norm", lambda h: h[0].mean(0)), ("pooled-norm", lambda h: h[0, 0])):
        status, _, err = run(capsys, "analyze", folder, "--text", texts["txt"], "--target", name, "--out",
                             tmp_path / name, "--sections", "parameters,activations")  # fmt: skip
        assert status == 0, err
        with torch.no_grad():
            want = [float(of(model.bert(_alone(model, tokenizer, s)[0]).last_hidden_state).norm()) for s in SENTENCES]
        analysis = Analysis.load(tmp_path / name)
        assert analysis.data is not None and analysis.data.metric == pytest.approx(sum(want) / len(want), rel=1e-5)


# ------------------------------------------------------------------------------------- the text file


def test_batches_are_padded_per_batch_and_read_lazily(folders, tmp_path) -> None:
    _, tokenizer = _load(folders["classifier"])
    path = tmp_path / "lazy.jsonl"
    rows = ["the rain", "the sun was warm today", "storm", "storm", "storm"]
    path.write_text("".join(json.dumps({"text": r}) + "\n" for r in rows) + "{not json\n")
    data = TextFile(path, tokenizer, batch_size=2, max_length=5)
    batches = iter(data)
    first = next(batches)  # read before the broken line: the file is read batch by batch
    assert first["input_ids"].shape == (2, 5)  # the longest text of the batch, cut to max_length
    assert first["attention_mask"].tolist() == [[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]]
    assert next(batches)["input_ids"].shape == (2, 3)  # [CLS] storm [SEP]: padded to its own batch
    with pytest.raises(Exception, match="line 6: not JSON"):
        list(batches)


# ------------------------------------------------------------------------------------- one-line errors


@pytest.fixture(scope="module")
def broken(tmp_path_factory: pytest.TempPathFactory, folders: dict[str, Path]) -> dict[str, Path]:
    """Model folders the tool cannot use, one per problem."""
    root = tmp_path_factory.mktemp("broken")
    made = {}
    made["no-config"] = root / "no-config"
    made["no-config"].mkdir()
    made["no-architectures"] = shutil.copytree(folders["classifier"], root / "no-arch")
    config = json.loads((made["no-architectures"] / "config.json").read_text())
    del config["architectures"]
    (made["no-architectures"] / "config.json").write_text(json.dumps(config))
    made["unknown-architecture"] = shutil.copytree(folders["classifier"], root / "unknown")
    config["architectures"] = ["NoSuchModelForSequenceClassification"]
    (made["unknown-architecture"] / "config.json").write_text(json.dumps(config))
    made["no-tokenizer"] = root / "no-tok"
    transformers.BertModel(_bert_config()).save_pretrained(made["no-tokenizer"])
    small = transformers.BertModel(_bert_config(vocab_size=8))
    made["vocab"] = _save(small, transformers.AutoTokenizer.from_pretrained(folders["base"]), root / "vocab")
    t5 = transformers.T5ForConditionalGeneration(
        transformers.T5Config(vocab_size=32, d_model=16, d_ff=24, num_layers=1, num_heads=2, d_kv=8)
    )
    made["encoder-decoder"] = _save(t5, transformers.AutoTokenizer.from_pretrained(folders["base"]), root / "t5")
    mlm = transformers.BertForMaskedLM(_bert_config())
    made["logit-of-mlm"] = _save(mlm, transformers.AutoTokenizer.from_pretrained(folders["base"]), root / "mlm")
    return made


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("no-config", "has no config.json"),
        ("no-architectures", "names no architectures"),
        ("unknown-architecture", "'NoSuchModelForSequenceClassification' is not a model class"),
        ("no-tokenizer", "holds no tokenizer"),
        ("vocab", r"tokenizer has 22 tokens but the model's input embedding has 8 rows"),
        # once "the model could not run on the first batch (ValueError: You must specify exactly one of input_ids...)"
        ("encoder-decoder", r"T5ForConditionalGeneration is an encoder-decoder model, .* hold decoder_input_ids"),
        ("empty", "holds no text"),
        ("column", r"no column 'text'; its columns are sentence, sentiment"),
        ("label", r"unknown label 'meh'; the model's labels are neg, pos"),
        ("base", r"BertModel has no head to explain by default: pass --target NAME \(pooled-norm, mean-norm\)"),
        ("target-name", "--target nope: not a named target"),
        ("max-length-special", r"--max-length 2 is too short: the tokenizer adds 2 special tokens to each text"),
        ("max-length-causal", r"--max-length 1 is too short: a causal LM needs two tokens of a text to predict one"),
        ("logit-of-base", r"--target predicted-logit needs a model with a classification head \(logits\)"),
        # once it stopped at "the model returns (6, 9, 22)", saying nothing of what to do
        ("logit-of-mlm", r"returns \(\d+, \d+, 22\) \(one row per token\): choose pooled-norm or mean-norm, or"),
        ("target-alone", "--target applies to a model folder read with --text"),
        ("txt-column", "--text-column body: a .txt file has no columns"),
        ("causal-label", r"--label-column sentiment: a causal LM's labels are each text's next tokens"),
    ],
)
def test_each_problem_is_one_line(case, message, folders, broken, texts, tmp_path, capsys) -> None:
    capsys.readouterr()  # what building the folders printed
    folder, text, extra = folders["classifier"], texts["txt"], []
    if case in broken:
        folder = broken[case]
    elif case == "empty":
        text = tmp_path / "empty.txt"
        text.write_text("\n  \n\n")
    elif case == "column":
        folder, text = folders["classifier"], texts["csv"]
    elif case == "label":
        text = tmp_path / "bad.jsonl"
        text.write_text('{"text": "the rain", "label": "neg"}\n{"text": "the sun", "label": "meh"}\n')
    elif case == "base":
        folder = folders["base"]
    elif case == "target-name":
        extra = ["--target", "nope"]
    elif case == "max-length-special":  # [CLS] and [SEP], no token of the text (at 1 the tokenizer cut nothing)
        extra = ["--max-length", "2"]
    elif case == "max-length-causal":  # no next token to predict; the census once raised IndexError
        folder, extra = folders["gpt2"], ["--max-length", "1"]
    elif case == "logit-of-base":  # a base encoder has no logits: once a hint at target=lambda out, batch: ...
        folder, extra = folders["base"], ["--target", "predicted-logit"]
    elif case == "txt-column":
        extra = ["--text-column", "body"]
    elif case == "causal-label":  # once ignored in silence
        folder, text, extra = (
            folders["gpt2"],
            texts["csv"],
            ["--text-column", "sentence", "--label-column", "sentiment"],
        )
    if case == "logit-of-mlm":
        extra = ["--target", "predicted-logit"]
    argv = ["analyze", folder, "--text", text, "--out", tmp_path / "x", "--sections", "parameters", *extra]
    if case == "target-alone":
        argv = ["analyze", folder, "--target", "pooled-norm", "--out", tmp_path / "x"]
    status, _, err = run(capsys, *argv)
    assert status != 0
    assert re.search(message, one_line_error(err))


def test_an_encoder_decoder_folder_is_analysed_as_its_error_says(broken, texts) -> None:
    # the one-line error's advice: from Python, inspector.analyze on batches that hold decoder_input_ids, with a
    # target=; here the log-probability of each text read back by the decoder (teacher forcing)
    model, tokenizer = _load(broken["encoder-decoder"])
    batches = []
    for start in (0, 4):
        encoded = tokenizer(SENTENCES[start : start + 4], padding=True, return_tensors="pt")
        labels = encoded["input_ids"].masked_fill(encoded["attention_mask"] == 0, -100)
        decoder_input_ids = torch.nn.functional.pad(encoded["input_ids"][:, :-1], (1, 0))  # shifted right, pad 0 first
        batches.append({**encoded, "decoder_input_ids": decoder_input_ids, "labels": labels})

    def read_back(out: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        picked = out.logits.log_softmax(-1).gather(-1, batch["labels"].clamp(min=0)[..., None])[..., 0]
        return (picked * (batch["labels"] != -100)).sum(dim=1)

    options = inspector.AnalysisOptions(sections=("parameters", "activations", "pruning"))
    analysis = inspector.analyze(model, batches, target=read_back, options=options)
    with torch.no_grad():
        want = torch.cat([read_back(model(**batch), batch) for batch in batches]).mean()
    assert analysis.data is not None and analysis.data.metric == pytest.approx(float(want), rel=1e-5)
    assert {census.layer for census in analysis.activations} == {
        "encoder.block.0.layer.1.DenseReluDense.wi",
        "decoder.block.0.layer.2.DenseReluDense.wi",
    }
    # each ReLU unit: 16 weights in, 16 out (wo); floor(s * 24) of them go from each of the two blocks
    assert analysis.pruning is not None
    curve = analysis.pruning.curve("neuron")
    linear = analysis.pruning.total_parameters
    assert curve.parameters_left.tolist() == [linear - 2 * math.floor(s * 24) * 32 for s in curve.sparsity]


def test_pruning_findings_count_a_rise_in_perplexity_as_the_cost() -> None:
    curve = PruningCurve(
        scope="global",
        sparsity=np.array([0.0, 0.5, 0.9]),
        metric=np.array([10.0, 10.05, 30.0]),  # perplexity: 0.5 costs 0.05 (within 1%), 0.9 costs 20
        loss=np.log(np.array([10.0, 10.05, 30.0])),
        parameters_left=np.array([100, 50, 10]),
        finetuned_metric=None,
    )
    report = PruningReport((curve,), 10.0, math.log(10.0), 100, 6, None, 0, "perplexity", "cross-entropy")
    (finding,) = pruning_findings(report)
    assert "pruning 50.0%" in finding.text and "raises perplexity by 0.05 (10 -> 10.05)" in finding.text
    assert finding.numbers["metric_drop"] == pytest.approx(0.05)


def test_dashboard_opens_a_model_folder_on_text(folders, texts, monkeypatch, capsys) -> None:
    served: list[Any] = []
    monkeypatch.setattr(dashboards.app, "serve", lambda app, *a, **k: served.append(app))
    monkeypatch.setattr(dashboards.app, "check_port", lambda *a: None)
    argv = ["dashboard", folders["classifier"], "--text", texts["txt"], "--target", "predicted-logit"]
    status, _, err = run(capsys, *argv, "--max-samples", "3")
    assert status == 0, err
    assert len(served) == 1


def test_a_causal_lm_on_texts_of_one_token_says_why_nothing_is_scored(folders, tmp_path, capsys) -> None:
    one = tmp_path / "one.txt"
    one.write_text("\n".join(s.split()[0] for s in SENTENCES) + "\n")  # one word, one token, a line
    status, out, err = run(capsys, "analyze", folders["gpt2"], "--text", one, "--out", tmp_path / "a")
    assert status == 0, err
    analysis = Analysis.load(tmp_path / "a")
    assert analysis.data is not None and not math.isfinite(analysis.data.metric)
    texts = [f.text for f in analysis.findings]
    assert any(t.startswith("the perplexity is not a number") and "single token" in t for t in texts), texts
    failed = [m for m in analysis.importance.methods if m.error] if analysis.importance is not None else []
    assert failed and all("does not depend on the inputs" in m.error for m in failed)
    assert "not a number" in out

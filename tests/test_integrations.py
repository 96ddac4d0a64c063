"""The trainer callbacks against what the training itself saw: the losses its training step computed, the
learning rate its optimizer held while it computed them, the rows its batches fed, a planted dead neuron."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from inspector.errors import InspectorError
from inspector.live import read_run

# --- the core never imports a trainer -------------------------------------------------------------------


def test_importing_inspector_imports_no_trainer():
    code = (
        "import sys, inspector, inspector.live, inspector.integrations\n"
        "loaded = [m for m in ('lightning', 'pytorch_lightning', 'transformers', 'accelerate') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


@pytest.mark.parametrize(
    ("module", "blocked", "hint"),
    [
        ("lightning", ("lightning", "pytorch_lightning"), "pip install lightning"),
        ("transformers", ("transformers",), "pip install transformers"),
    ],
)
def test_a_missing_trainer_is_a_one_line_error_naming_the_install(module, blocked, hint):
    code = (
        "import sys\n"
        f"for name in {blocked!r}: sys.modules[name] = None\n"
        "from inspector.errors import InspectorError\n"
        "try:\n"
        f"    import inspector.integrations.{module}\n"
        "except InspectorError as error:\n"
        "    print(error)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, timeout=120, capture_output=True, text=True)
    assert hint in out.stdout and len(out.stdout.strip().splitlines()) == 1


# --- PyTorch Lightning ------------------------------------------------------------------------------------

N, BATCH, WIDTH, DEAD = 64, 8, 16, 3


def _lightning_module(validation: bool = False):
    pl = pytest.importorskip("lightning.pytorch")

    class Tiny(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.net = nn.Sequential(nn.Linear(4, WIDTH), nn.ReLU(), nn.Linear(WIDTH, 2))
            with torch.no_grad():  # never fires: its gradient is zero, so SGD leaves it dead
                self.net[0].weight[DEAD] = 0.0
                self.net[0].bias[DEAD] = -1e3
            self.losses: list[float] = []  # per training_step (micro-batch)
            self.lrs: list[float] = []  # the rate the optimizer held while that step ran
            self.rows: list[int] = []
            generator = torch.Generator().manual_seed(1)
            self.X = torch.randn(N, 4, generator=generator)
            self.y = torch.randint(0, 2, (N,), generator=generator)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x)

        def training_step(self, batch, batch_idx):
            x, y = batch
            loss = nn.functional.cross_entropy(self(x), y)
            self.losses.append(float(loss.detach()))
            self.lrs.append(self.trainer.optimizers[0].param_groups[0]["lr"])
            self.rows.append(len(x))
            return loss

        def validation_step(self, batch, batch_idx):
            x, y = batch
            return nn.functional.cross_entropy(self(x), y)

        def configure_optimizers(self):
            optimizer = torch.optim.SGD(self.parameters(), lr=0.2)
            scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=7, gamma=0.5)
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

        def train_dataloader(self):
            data = torch.utils.data.TensorDataset(self.X, self.y)
            return torch.utils.data.DataLoader(data, batch_size=BATCH, shuffle=True)

        def val_dataloader(self):
            data = torch.utils.data.TensorDataset(self.X[:16], self.y[:16])
            return torch.utils.data.DataLoader(data, batch_size=BATCH)

    if not validation:
        Tiny.validation_step = None  # type: ignore[assignment]
        Tiny.val_dataloader = None  # type: ignore[assignment]
    return Tiny()


def _fit(module, callback, root, **trainer_kwargs):
    pl = pytest.importorskip("lightning.pytorch")
    trainer = pl.Trainer(
        max_steps=40,
        accelerator="cpu",
        devices=1,
        logger=trainer_kwargs.pop("logger", False),
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=root,
        callbacks=[callback],
        **trainer_kwargs,
    )
    trainer.fit(module)
    return trainer


LIGHTNING_WARNINGS = pytest.mark.filterwarnings(
    "ignore:.*(does not have many workers|smaller than the logging|LeafSpec).*"
)


@LIGHTNING_WARNINGS
@pytest.mark.parametrize("accumulate", [1, 2])
def test_lightning_records_every_optimizer_step_with_the_loss_and_rate_it_used(tmp_path, accumulate):
    from inspector.integrations.lightning import InspectorCallback

    module = _lightning_module(validation=accumulate == 1)
    callback = InspectorCallback(every=10)
    trainer = _fit(module, callback, tmp_path, accumulate_grad_batches=accumulate)
    assert trainer.global_step == 40
    assert callback.run_dir == tmp_path / "inspector"  # logger=False: log_dir is default_root_dir
    run = read_run(callback.run_dir)
    assert run.status == "finished" and run.meta["trainer"] == "lightning"
    assert list(run.steps) == [10, 20, 30, 40]
    assert len(module.losses) == 40 * accumulate  # every training_step is a micro-batch
    # optimizer step s ran on micro-batches (s-1)*a .. s*a - 1: its loss is their mean, its rate theirs
    for step, loss, lr in zip(run.steps, run.scalar("loss").values, run.scalar("lr").values, strict=True):
        micro = slice((step - 1) * accumulate, step * accumulate)
        assert loss == pytest.approx(np.mean(module.losses[micro]), rel=1e-6), step
        assert lr == pytest.approx(module.lrs[micro.stop - 1], rel=1e-12), step
        assert len(set(module.lrs[micro])) == 1
    assert len(set(run.scalar("lr").values)) >= 3  # StepLR every 7 steps: the rate does move
    # the rows of the 10 steps' training micro-batches, and nothing else (no validation, no discovery)
    rows = run.scalar("rows", "net.0").values
    np.testing.assert_array_equal(rows, [sum(module.rows[(s - 10) * accumulate : s * accumulate]) for s in run.steps])
    assert rows[0] == 10 * accumulate * BATCH
    steps, fire_rate = run.vector("fire_rate", "net.0")
    assert list(steps) == [10, 20, 30, 40] and fire_rate.shape == (4, WIDTH)
    assert np.all(fire_rate[:, DEAD] == 0)
    assert np.all(run.scalar("dead", "net.0").values >= 1)
    assert np.all(run.scalar("dead", "net.0").values == (fire_rate == 0).sum(1))


@LIGHTNING_WARNINGS
def test_lightning_callback_writes_only_its_run_directory(tmp_path):
    from inspector.integrations.lightning import InspectorCallback

    user = tmp_path / "user"
    user.mkdir()
    (user / "notes.txt").write_text("mine")
    (user / "run").mkdir()
    (user / "run" / "keep.txt").write_text("also mine")
    pytest.importorskip("tensorboard")
    callback = InspectorCallback(user / "run", every=10, snapshot_every=20, tensorboard=True, meta={"who": "me"})
    _fit(_lightning_module(), callback, user)
    assert any(p.name.startswith("events.out.tfevents") for p in (user / "run").iterdir())
    assert sorted(p.name for p in user.iterdir()) == ["notes.txt", "run"]
    assert (user / "notes.txt").read_text() == "mine" and (user / "run" / "keep.txt").read_text() == "also mine"
    run = read_run(user / "run")
    assert [s.step for s in run.snapshots] == [20, 40] and run.meta["who"] == "me"
    # a second fit into the same run directory is refused, and the first run stays as it was
    with pytest.raises(InspectorError, match="already holds a run"):
        _fit(_lightning_module(), InspectorCallback(user / "run", every=10), user)
    assert read_run(user / "run").status == "finished" and list(read_run(user / "run").steps) == [10, 20, 30, 40]


@LIGHTNING_WARNINGS
def test_lightning_run_goes_into_the_loggers_version_folder(tmp_path):
    pytest.importorskip("tensorboard")
    from inspector.integrations.lightning import InspectorCallback

    callback = InspectorCallback(every=10)
    _fit(_lightning_module(), callback, tmp_path, logger=True)  # TensorBoardLogger
    version = tmp_path / "lightning_logs" / "version_0"
    assert callback.run_dir == version / "inspector"
    assert [p.name for p in (tmp_path / "lightning_logs").iterdir()] == ["version_0"]  # not shifted to version_1
    assert list(read_run(version / "inspector").steps) == [10, 20, 30, 40]


@LIGHTNING_WARNINGS
def test_lightning_training_that_raises_leaves_a_failed_run_and_no_hooks(tmp_path):
    from inspector.integrations.lightning import InspectorCallback

    module = _lightning_module()
    original = module.training_step

    def failing(batch, batch_idx):
        if len(module.losses) == 25:
            raise RuntimeError("boom")
        return original(batch, batch_idx)

    module.training_step = failing
    callback = InspectorCallback(tmp_path / "run", every=10)
    with pytest.raises(RuntimeError, match="boom"):
        _fit(module, callback, tmp_path)
    run = read_run(tmp_path / "run")
    assert run.status == "failed" and list(run.steps) == [10, 20]
    assert not module._forward_pre_hooks and not module._forward_hooks
    assert not module.net[0]._forward_hooks and not module.net[1]._forward_hooks


@LIGHTNING_WARNINGS
def test_lightning_training_step_through_a_submodule_is_watched_there(tmp_path, caplog):
    from inspector.integrations.lightning import InspectorCallback

    module = _lightning_module()

    def through_the_submodule(batch, batch_idx):
        x, y = batch
        return nn.functional.cross_entropy(module.net(x), y)

    module.training_step = through_the_submodule
    callback = InspectorCallback(tmp_path / "run", every=10)
    with caplog.at_level("WARNING", logger="inspector.live"):
        _fit(module, callback, tmp_path)
    run = read_run(tmp_path / "run")
    # self.net(x) instead of self(x): the Monitor watches the part the loop calls, named from the root
    assert run.meta["entry"] == "net" and run.layers == ("net.0", "net.2")
    assert list(run.steps) == [10, 20, 30, 40] and run.events == ()
    steps, fire = run.vector("fire_rate", "net.0")
    assert len(steps) == 4 and (fire[:, DEAD] == 0).all() and (np.delete(fire, DEAD, axis=1) > 0).any()
    assert not [r for r in caplog.records if "not called" in r.getMessage()]


# --- Hugging Face Trainer ---------------------------------------------------------------------------------

HF_ROWS, SEQ = 48, 6


def _bert_and_data():
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=50,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=16,
        num_labels=2,
    )
    model = transformers.BertForSequenceClassification(config)
    generator = torch.Generator().manual_seed(2)
    data = []
    for i in range(HF_ROWS):
        length = 2 + i % (SEQ - 1)  # 2..6 real tokens, the rest padding
        mask = torch.zeros(SEQ, dtype=torch.long)
        mask[:length] = 1
        ids = torch.randint(1, 50, (SEQ,), generator=generator) * mask
        data.append({"input_ids": ids, "attention_mask": mask, "labels": torch.tensor(i % 2)})
    return transformers, model, data


@pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::UserWarning")
@pytest.mark.parametrize("accumulate", [1, 2])
def test_hugging_face_trainer_records_the_models_loss_and_the_schedulers_rate(tmp_path, accumulate):
    from inspector.integrations.transformers import InspectorCallback

    transformers, model, data = _bert_and_data()
    seen: list[tuple[float, float, int]] = []  # per training forward: loss, the rate it trains at, real tokens
    trainer_box: list = []

    def capture(module, args, kwargs, output):
        if module.training:
            lr = trainer_box[0].optimizer.param_groups[0]["lr"]
            seen.append((float(output.loss), lr, int(kwargs["attention_mask"].sum())))

    model.register_forward_hook(capture, with_kwargs=True)
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "out"),
        max_steps=12,
        per_device_train_batch_size=4,
        report_to=[],
        use_cpu=True,
        logging_steps=100,
        save_strategy="no",
        learning_rate=1e-3,
        gradient_accumulation_steps=accumulate,
    )
    callback = InspectorCallback(every=4)
    trainer = transformers.Trainer(model=model, args=args, train_dataset=data, callbacks=[callback])
    trainer_box.append(trainer)
    trainer.train()
    assert callback.run_dir == tmp_path / "out" / "inspector"
    run = read_run(callback.run_dir)
    assert run.status == "finished" and run.meta["trainer"] == "transformers"
    assert list(run.steps) == [4, 8, 12] and len(seen) == 12 * accumulate  # optimizer steps, not micro-batches
    intermediate = "bert.encoder.layer.0.intermediate.dense"
    assert dict(zip(run.layers, run.activations))[intermediate] == "gelu"
    for step, loss, lr in zip(run.steps, run.scalar("loss").values, run.scalar("lr").values, strict=True):
        last = step * accumulate - 1  # the step's last micro-batch
        assert loss == pytest.approx(seen[last][0], rel=1e-6), step
        assert lr == pytest.approx(seen[last][1], rel=1e-12), step
    # the default linear decay to 0 over 12 steps, no warm-up: step s trains at 1e-3 * (13 - s) / 12
    np.testing.assert_allclose(run.scalar("lr").values, [1e-3 * (13 - s) / 12 for s in (4, 8, 12)], rtol=1e-9)
    # padded positions left out: the rows are the real tokens of the 4 batches since the last record
    want_rows = [sum(t for _, _, t in seen[(s - 4) * accumulate : s * accumulate]) for s in (4, 8, 12)]
    np.testing.assert_array_equal(run.scalar("rows", intermediate).values, want_rows)
    zero_rate = run.scalar("zero_rate", intermediate).values
    assert np.all((zero_rate >= 0) & (zero_rate <= 1))
    assert not model._forward_pre_hooks and len(model._forward_hooks) == 1  # ours removed, the test's kept


@pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::UserWarning")
def test_hugging_face_callback_writes_only_its_run_directory(tmp_path):
    from inspector.integrations.transformers import InspectorCallback

    transformers, model, data = _bert_and_data()
    user = tmp_path / "user"
    (user / "run").mkdir(parents=True)
    (user / "run" / "keep.txt").write_text("mine")
    args = transformers.TrainingArguments(
        output_dir=str(user / "out"),
        max_steps=4,
        per_device_train_batch_size=4,
        report_to=[],
        use_cpu=True,
        logging_steps=100,
        save_strategy="no",
    )
    callback = InspectorCallback(user / "run", every=2, snapshot_every=0)
    transformers.Trainer(model=model, args=args, train_dataset=data, callbacks=[callback]).train()
    assert (user / "run" / "keep.txt").read_text() == "mine"
    assert sorted(p.name for p in (user / "run").iterdir() if not p.name.startswith("run.sqlite")) == ["keep.txt"]
    run = read_run(user / "run")
    assert list(run.steps) == [2, 4] and run.snapshots == ()


def test_lightning_training_step_that_runs_no_forward_is_reported_once(tmp_path, caplog):
    from inspector.integrations.lightning import InspectorCallback

    module = _lightning_module()
    module.training_step = lambda batch, batch_idx: (module.net[0].weight ** 2).sum()  # no layer ever runs
    callback = InspectorCallback(tmp_path / "run", every=10)
    with caplog.at_level("WARNING", logger="inspector.live"):
        _fit(module, callback, tmp_path)
    run = read_run(tmp_path / "run")
    assert run.layers == () and list(run.steps) == [10, 20, 30, 40]
    # the Monitor says so once, at its first record
    assert [e.step for e in run.events] == [10] and "no layer statistics are recorded" in run.events[0].message
    assert sum("no layer statistics" in r.getMessage() for r in caplog.records) == 1

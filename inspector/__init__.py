"""dense-inspector: see inside the dense (``nn.Linear``) layers of a neural network.

The public API, re-exported from one place::

    import inspector
    dataset = inspector.load_digits()
    splits = inspector.split_dataset(dataset)
    result = inspector.train(inspector.MLPConfig(64, (128, 64), 10), splits)
    ckpt = inspector.load("digits-mlp.pt")
    analysis = inspector.analyze(model, loader)   # any nn.Module, any data (see inspector.analysis)
    inspector.to_html(analysis, "report.html")     # the report (inspector.render)
    smaller = inspector.shrink(model, keep, X)     # pruned neurons removed (inspector.analysis.shrink)
"""

from __future__ import annotations

from inspector._version import __version__
from inspector.analysis import Analysis, AnalysisOptions, analyze
from inspector.analysis.shrink import Shrunk, shrink, shrink_model
from inspector.checkpoints import Checkpoint, DatasetInfo, checkpoint_from_training, load, save_checkpoint
from inspector.data import (
    Dataset,
    PlantedTruth,
    Splits,
    SplitSpec,
    Standardizer,
    load_csv,
    load_dataset,
    load_digits,
    load_npz,
    make_synthetic,
    split_dataset,
)
from inspector.errors import InspectorError
from inspector.inventory import Inventory, LinearLayerInfo, iter_tensors, read_inventory
from inspector.live.monitor import Monitor
from inspector.models import MLP, MLPConfig, build_mlp, infer_mlp_layout, mlp_from_state_dict
from inspector.render import to_html, to_markdown
from inspector.training import History, TrainConfig, TrainResult, evaluate, train

__all__ = [
    "Analysis",
    "AnalysisOptions",
    "analyze",
    "Checkpoint",
    "Dataset",
    "DatasetInfo",
    "History",
    "InspectorError",
    "Inventory",
    "LinearLayerInfo",
    "MLP",
    "MLPConfig",
    "Monitor",
    "PlantedTruth",
    "Shrunk",
    "SplitSpec",
    "Splits",
    "Standardizer",
    "TrainConfig",
    "TrainResult",
    "__version__",
    "build_mlp",
    "checkpoint_from_training",
    "evaluate",
    "infer_mlp_layout",
    "iter_tensors",
    "load",
    "load_csv",
    "load_dataset",
    "load_digits",
    "load_npz",
    "make_synthetic",
    "mlp_from_state_dict",
    "read_inventory",
    "save_checkpoint",
    "shrink",
    "shrink_model",
    "split_dataset",
    "to_html",
    "to_markdown",
    "train",
]

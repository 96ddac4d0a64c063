"""Plotly figure builders: results in, ``go.Figure`` out.

Shared by the dashboard and the reports, so a picture looks the same in both.
Builders never touch torch or recompute an analysis; they only lay out the
numbers the core stored. Arrays go to Plotly as numpy arrays, which Plotly
ships to the browser as typed arrays, not nested JSON lists. One submodule per
area; every builder is re-exported here (``from inspector import figures as F``).
"""

from inspector.figures.activations import (
    dead_summary_figure,
    deaths_figure,
    firing_strip_figure,
    projection_figure,
    saturation_figure,
)
from inspector.figures.common import COLORS, SCOPE_COLORS, SCOPE_LABELS, TEMPLATE, empty_figure
from inspector.figures.importance import importance_bar_figure, importance_map_figure, sample_figure, sanity_figure
from inspector.figures.neurons import (
    neuron_activation_figure,
    neuron_classes_figure,
    neuron_incoming_figure,
    neuron_inputs_figure,
    neuron_state,
)
from inspector.figures.overview import architecture_figure, findings_lines, parameter_rows, training_figure
from inspector.figures.pruning import format_metric, pruning_figure, pruning_preview_rows
from inspector.figures.weights import (
    magnitude_map_figure,
    neuron_images_figure,
    neuron_order,
    weight_heatmap_figure,
    weight_histogram_figure,
)

__all__ = [
    "COLORS",
    "SCOPE_COLORS",
    "SCOPE_LABELS",
    "TEMPLATE",
    "architecture_figure",
    "dead_summary_figure",
    "deaths_figure",
    "empty_figure",
    "findings_lines",
    "firing_strip_figure",
    "format_metric",
    "importance_bar_figure",
    "importance_map_figure",
    "magnitude_map_figure",
    "neuron_activation_figure",
    "neuron_classes_figure",
    "neuron_images_figure",
    "neuron_incoming_figure",
    "neuron_inputs_figure",
    "neuron_order",
    "neuron_state",
    "parameter_rows",
    "projection_figure",
    "pruning_figure",
    "pruning_preview_rows",
    "sample_figure",
    "sanity_figure",
    "saturation_figure",
    "training_figure",
    "weight_heatmap_figure",
    "weight_histogram_figure",
]

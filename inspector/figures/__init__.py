"""Plotly figure builders: results in, ``go.Figure`` out.

Shared by the dashboard and the reports, so a picture looks the same in both.
Builders never touch torch or recompute an analysis; they only lay out the
numbers the core stored. Arrays go to Plotly as numpy arrays, which Plotly
ships to the browser as typed arrays, not nested JSON lists. One submodule per
area.

The builders of the modules below are re-exported here for the callers that
write ``from inspector import figures as F``. A new figure module needs no line
here: its callers import it directly (``from inspector.figures.spectrum import
spectrum_figure``), and it adds its section to the report by registering a
panel (:func:`inspector.figures.panels.report_panel`), so that adding a picture
is one file.
"""

from inspector.figures.activations import (
    dead_summary_figure,
    deaths_figure,
    firing_strip_figure,
    projection_figure,
    saturation_figure,
)
from inspector.figures.common import COLORS, SCOPE_COLORS, SCOPE_LABELS, TEMPLATE, empty_figure
from inspector.figures.importance import (
    as_image,
    importance_bar_figure,
    importance_map_figure,
    map_shape,
    prediction_text,
    sample_figure,
    sanity_figure,
)
from inspector.figures.live import (
    LIVE_STATISTICS,
    live_curves_figure,
    loss_lr_figure,
    snapshot_weights_figure,
    status_text,
    warning_rows,
)
from inspector.figures.neurons import (
    neuron_activation_figure,
    neuron_classes_figure,
    neuron_incoming_figure,
    neuron_inputs_figure,
    neuron_output_figure,
    neuron_state,
)
from inspector.figures.overview import (
    architecture_figure,
    findings_lines,
    metric_name,
    module_tree_figure,
    module_tree_nodes,
    parameter_rows,
    reads_as_chain,
    training_figure,
)
from inspector.figures.pruning import format_metric, pruning_figure, pruning_preview_rows
from inspector.figures.text import (
    highlighted_tokens,
    score_title,
    stored_example,
    tokens_html,
    top_tokens,
    top_tokens_figure,
)
from inspector.figures.weights import (
    magnitude_map_figure,
    neuron_images_figure,
    neuron_order,
    spectrum_rows,
    weight_heatmap_figure,
    weight_histogram_figure,
)
from inspector.figures.whatif import (
    class_probability_figure,
    partial_dependence_figure,
    whatif_prediction_figure,
    whatif_rows,
)

__all__ = [
    "COLORS",
    "LIVE_STATISTICS",
    "SCOPE_COLORS",
    "SCOPE_LABELS",
    "TEMPLATE",
    "architecture_figure",
    "as_image",
    "class_probability_figure",
    "dead_summary_figure",
    "deaths_figure",
    "empty_figure",
    "findings_lines",
    "firing_strip_figure",
    "format_metric",
    "highlighted_tokens",
    "importance_bar_figure",
    "importance_map_figure",
    "live_curves_figure",
    "loss_lr_figure",
    "magnitude_map_figure",
    "map_shape",
    "metric_name",
    "module_tree_figure",
    "module_tree_nodes",
    "neuron_activation_figure",
    "neuron_classes_figure",
    "neuron_images_figure",
    "neuron_incoming_figure",
    "neuron_inputs_figure",
    "neuron_order",
    "neuron_output_figure",
    "neuron_state",
    "parameter_rows",
    "partial_dependence_figure",
    "prediction_text",
    "projection_figure",
    "pruning_figure",
    "pruning_preview_rows",
    "reads_as_chain",
    "sample_figure",
    "sanity_figure",
    "saturation_figure",
    "score_title",
    "snapshot_weights_figure",
    "spectrum_rows",
    "status_text",
    "stored_example",
    "tokens_html",
    "top_tokens",
    "top_tokens_figure",
    "training_figure",
    "warning_rows",
    "weight_heatmap_figure",
    "weight_histogram_figure",
    "whatif_prediction_figure",
    "whatif_rows",
]

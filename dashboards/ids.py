"""The component ids shared by several views; each view names its own in its module (:class:`dashboards.registry.ViewIds`).

An id lives here when one view's callbacks write a component another view owns: a click on a
weight row selects that neuron in the Neurons tab, and the What-if sample follows the sample
picked under Feature importance.
"""

TABS = "tabs"  # the app's tabs; a view switches to another by writing its name here

# the neuron shown in the Neurons tab (the Weights view selects one)
NEURON_LAYER = "neurons-layer"
NEURON_INDEX = "neurons-index"

# the sample shown under Feature importance (the What-if view follows it)
SAMPLE_INDEX = "sample-index"

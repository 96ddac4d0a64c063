"""Every component id of the dashboard, in one place (callbacks and tests import these)."""

TABS = "tabs"
NEURON_STORE = "neuron-store"

# overview
ARCH_FIG = "overview-architecture"
MODULE_TREE = "overview-module-tree"
PARAM_TABLE = "overview-parameters"
TRAIN_FIG = "overview-training"
FINDINGS = "overview-findings"
REPORT_BUTTON = "overview-report-button"
REPORT_DOWNLOAD = "overview-report-download"

# weights
WEIGHT_LAYER = "weights-layer"
WEIGHT_SORT = "weights-sort"
WEIGHT_MODE = "weights-mode"
WEIGHT_HEATMAP = "weights-heatmap"
WEIGHT_HIST = "weights-histogram"
WEIGHT_IMAGES = "weights-images"
WEIGHT_NOTE = "weights-note"
WEIGHT_ZOOM = "weights-zoom"

# neurons
NEURON_LAYER = "neurons-layer"
NEURON_INDEX = "neurons-index"
NEURON_WIDTH = "neurons-width"
NEURON_TABLE = "neurons-table"
NEURON_TITLE = "neurons-title"
NEURON_ACT = "neurons-activation"
NEURON_IN = "neurons-incoming"
NEURON_DRIVERS = "neurons-drivers"
NEURON_CLASSES = "neurons-classes"

# dead ReLU
DEAD_THRESHOLD = "dead-threshold"
DEAD_COUNT = "dead-nearly-count"
DEAD_SUMMARY = "dead-summary"
DEAD_LAYER = "dead-layer"
DEAD_STRIP = "dead-strip"
DEAD_TIMELINE = "dead-timeline"

# feature importance
IMP_METHOD = "importance-method"
IMP_CLASS = "importance-class"
IMP_BAR = "importance-bar"
IMP_MAP = "importance-map"
IMP_SANITY = "importance-sanity"
IMP_SANITY_TEXT = "importance-sanity-text"
SAMPLE_INDEX = "sample-index"
SAMPLE_FIG = "sample-figure"
SAMPLE_NOTE = "sample-note"

# text (token inputs)
TEXT_SAMPLE = "text-sample"
TEXT_METHOD = "text-method"
TEXT_NOTE = "text-note"
TEXT_TOKENS = "text-tokens"
TEXT_TOP = "text-top-tokens"

# pruning
PRUNE_FIG = "pruning-figure"
PRUNE_SLIDER = "pruning-slider"
PRUNE_PREVIEW = "pruning-preview"

# activations
ACT_LAYER = "activations-layer"
ACT_PROJ = "activations-projection"

# what-if
WHATIF_NOTE = "whatif-note"
WHATIF_FEATURE = "whatif-feature"
WHATIF_PD_FIG = "whatif-pd"
WHATIF_CLASS_FIG = "whatif-classes"
WHATIF_LIVE_NOTE = "whatif-live-note"
WHATIF_SAMPLE = "whatif-sample"
WHATIF_RESET = "whatif-reset"
WHATIF_SEARCH = "whatif-search"
WHATIF_SHOW_ALL = "whatif-show-all"
WHATIF_RESULT = "whatif-result"
WHATIF_CHANGED = "whatif-changed"
WHATIF_PRED_FIG = "whatif-prediction"
WHATIF_MAX_SLIDERS = 64  # one slider per feature, the most important first
WHATIF_SLIDERS = tuple(f"whatif-slider-{k}" for k in range(WHATIF_MAX_SLIDERS))
WHATIF_SLOTS = tuple(f"whatif-slot-{k}" for k in range(WHATIF_MAX_SLIDERS))  # a slider with its label

# live (a training run, or several, being recorded)
LIVE_STATUS = "live-status"
LIVE_RUNS = "live-runs"
LIVE_STAT = "live-statistic"
LIVE_LAYERS = "live-layers"
LIVE_CURVES = "live-curves"
LIVE_LOSS = "live-loss"
LIVE_GRADS = "live-grads"
LIVE_WARNINGS = "live-warnings"
LIVE_INTERVAL = "live-interval"
LIVE_SEEN = "live-seen"
LIVE_SNAPSHOT_LAYER = "live-snapshot-layer"
LIVE_SNAPSHOT = "live-snapshot"
LIVE_SNAPSHOT_SEEN = "live-snapshot-seen"
LIVE_NOTE = "live-note"

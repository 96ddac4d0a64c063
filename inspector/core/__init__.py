"""What every analysis shares, below the sections: input adapters, one class per input kind
(:mod:`~inspector.core.adapters`), statistics merged across ranks (:mod:`~inspector.core.statistic`),
the activation counting rules (:mod:`~inspector.core.counting`), the one evaluator of loss and metric
(:mod:`~inspector.core.evaluator`) and the collectives (:mod:`~inspector.core.distributed`).

Nothing is imported here, so importing one piece does not load the others.
"""

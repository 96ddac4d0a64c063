"""The terminal summary: a parameter table whose numbers add up, and sentences that describe their numbers."""

from __future__ import annotations

import re

import numpy as np
import torch
from torch import nn

from inspector.analysis import AnalysisOptions, analyze
from inspector.analysis.parameters import count_parameters
from inspector.evaluation import EvalData
from inspector.render.tables import format_parameters, format_summary


def _tied_model():
    enc, dec = nn.Linear(16, 16), nn.Linear(16, 16)
    dec.weight = enc.weight
    return nn.Sequential(enc, nn.ReLU(), dec, nn.ReLU(), nn.Linear(16, 4, bias=False))


def test_parameter_rows_add_up_to_the_printed_total_with_a_tied_weight():
    text = format_parameters(count_parameters(_tied_model()))
    rows = [line for line in text.splitlines() if re.match(r"^(0|2|4)\b", line)]
    row_totals = [int(re.search(r"= ([\d,]+)", row).group(1).replace(",", "")) for row in rows]
    assert row_totals == [16 * 17, 16, 4 * 16]
    total = int(re.search(r"Total parameters: ([\d,]+)", text).group(1).replace(",", ""))
    assert sum(row_totals) == total == 16 * 17 + 16 + 64
    assert "(weight counted in 0)" in rows[1] and "tied to 0" in rows[1]


def test_bias_free_layer_shows_m_times_n_under_a_header_that_fits_it():
    text = format_parameters(count_parameters(nn.Sequential(nn.Linear(6, 3, bias=False))))
    assert "m*(n+1)" not in text  # the header must not promise a bias term the row does not have
    assert "3*6 = 18" in text


def test_summary_of_data_from_a_file_does_not_call_all_a_split():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    X = np.random.default_rng(0).standard_normal((600, 4)).astype(np.float32)
    data = EvalData.from_arrays(X, (X[:, 0] > 0).astype(np.int64), name="mydata")
    analysis = analyze(model, data, options=AnalysisOptions(sections=("parameters", "activations")))
    text = format_summary(analysis)
    assert "evaluated on 600 mydata samples" in text
    assert "all samples" not in text

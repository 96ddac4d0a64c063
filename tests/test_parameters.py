from __future__ import annotations

import pytest
import torch
from torch import nn
from torchinfo import summary

from inspector.analysis.parameters import count_parameters
from inspector.models import MLPConfig, build_mlp


def test_linear_2_to_5_has_15_parameters_and_10_macs():
    report = count_parameters(nn.Sequential(nn.Linear(2, 5)))
    (layer,) = report.layers
    assert (layer.weights, layer.biases, layer.parameters, layer.macs_per_sample) == (10, 5, 15, 10)
    assert layer.bytes == 15 * 4


def test_closed_form_per_layer_and_total():
    model = build_mlp(MLPConfig(100, (50, 20), 3))
    report = count_parameters(model)
    assert [layer.parameters for layer in report.layers] == [50 * 101, 20 * 51, 3 * 21]
    assert report.total_parameters == 5050 + 1020 + 63 == sum(p.numel() for p in model.parameters())


class _Nested(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Linear(10, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Sequential(nn.Linear(8, 6), nn.Tanh())
        )
        self.head = nn.Linear(6, 3, bias=False)

    def forward(self, x):
        return self.head(self.encoder(x))


@pytest.mark.parametrize(
    "make,n_in",
    [
        (lambda: build_mlp(MLPConfig(64, (128, 64), 10)), 64),
        (lambda: build_mlp(MLPConfig(12, (7, 5), 4, batch_norm=True)), 12),
        (_Nested, 10),
    ],
)
def test_totals_agree_with_torchinfo_and_numel(make, n_in):
    model = make()
    report = count_parameters(model)
    reference = summary(model, input_size=(2, n_in), verbose=0)
    assert report.total_parameters == reference.total_params == sum(p.numel() for p in model.parameters())
    assert report.trainable_parameters == reference.trainable_params


def test_nested_layers_found_and_batch_norm_listed_apart():
    report = count_parameters(_Nested())
    assert [layer.layer for layer in report.layers] == ["encoder.0", "encoder.3.0", "head"]
    assert report.layers[2].biases == 0 and report.layers[2].parameters == 18
    assert [(o.name, o.kind, o.parameters) for o in report.other] == [("encoder.1", "BatchNorm1d", 16)]


def test_tied_weights_are_counted_once():
    enc, dec = nn.Linear(6, 6), nn.Linear(6, 6)
    dec.weight = enc.weight
    model = nn.Sequential(enc, nn.ReLU(), dec)
    report = count_parameters(model)
    assert report.layers[1].tied_to == "0"
    assert report.total_parameters == 36 + 6 + 6 == sum(p.numel() for p in model.parameters())


def test_frozen_layer_is_not_trainable():
    model = build_mlp(MLPConfig(4, (3,), 2))
    model.fc1.requires_grad_(False)
    report = count_parameters(model)
    assert not report.layers[0].trainable and report.layers[1].trainable
    assert report.trainable_parameters == 2 * 4
    assert torch.is_grad_enabled()


def test_layer_rows_add_up_to_the_total_when_a_weight_is_tied():
    enc, dec = nn.Linear(16, 16), nn.Linear(16, 16)
    dec.weight = enc.weight
    model = nn.Sequential(enc, nn.ReLU(), dec, nn.ReLU(), nn.Linear(16, 4, bias=False))
    report = count_parameters(model)
    expected = 16 * 17 + 16 + 4 * 16  # the shared 16x16 weight once, both biases, the bias-free head
    assert report.total_parameters == expected == sum(p.numel() for p in model.parameters())
    assert sum(layer.parameters for layer in report.layers) == report.linear_parameters == expected
    assert sum(layer.bytes for layer in report.layers) == report.total_bytes == expected * 4
    tied = report.layers[1]
    assert (tied.tied_to, tied.weights, tied.biases, tied.parameters) == ("0", 0, 16, 16)
    assert tied.macs_per_sample == 16 * 16  # a shared weight is still multiplied in every layer that uses it
    assert [layer.formula() for layer in report.layers] == ["16 × (16 + 1)", "16 (weight counted in 0)", "4 × 16"]


# --- embeddings are not dense layers (issue 9) ---------------------------------------------------


def test_an_embedding_is_listed_apart_with_rows_times_dim_parameters():
    model = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 3))
    report = count_parameters(model)
    assert [layer.layer for layer in report.layers] == ["1"]
    (emb,) = report.embeddings
    assert (emb.layer, emb.num_embeddings, emb.embedding_dim, emb.parameters, emb.bytes) == ("0", 10, 4, 40, 160)
    assert emb.formula() == "10 × 4" and emb.tied_to is None and emb.trainable
    assert report.other == () and report.embedding_parameters == 40 and report.linear_parameters == 3 * 5
    assert report.total_parameters == 40 + 15 == sum(p.numel() for p in model.parameters())
    assert report.macs_per_sample == 3 * 4  # a lookup multiplies nothing


class _TinyLM(nn.Module):
    """An 11-token, 6-wide embedding whose weight is also the LM head's."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(11, 6)
        self.head = nn.Linear(6, 11, bias=False)
        self.head.weight = self.embed.weight

    def forward(self, ids):
        return self.head(self.embed(ids))


def test_an_lm_head_tied_to_its_embedding_is_counted_once_in_the_embedding():
    model = _TinyLM()
    report = count_parameters(model)
    assert report.embeddings[0].parameters == 66 and report.embeddings[0].tied_to is None
    (head,) = report.layers
    assert (head.layer, head.tied_to, head.weights, head.parameters) == ("head", "embed", 0, 0)
    assert report.total_parameters == 66 == sum(p.numel() for p in model.parameters())


def test_torchinfo_counts_a_tied_lm_head_twice_and_the_tool_counts_it_once():
    """Where the README's "agrees with torchinfo" stops: torchinfo sums each module's parameters,
    so a weight shared by the embedding and the head is counted in both."""
    model = _TinyLM()
    report = count_parameters(model)
    reference = summary(model, input_data=torch.zeros(1, 3, dtype=torch.long), verbose=0)
    assert report.total_parameters == sum(p.numel() for p in model.parameters()) == 66
    assert reference.total_params == 66 + 11 * 6  # the shared 11 x 6 weight once more, in the head


def _bert_config():
    transformers = pytest.importorskip("transformers")
    return transformers, transformers.BertConfig(
        vocab_size=99,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=64,
    )


# BertConfig(vocab 99, hidden 32, 2 layers, intermediate 37, 64 positions, 2 token types), worked out by hand:
BERT_EMBEDDINGS = [
    ("embeddings.word_embeddings", 99, 32),
    ("embeddings.position_embeddings", 64, 32),
    ("embeddings.token_type_embeddings", 2, 32),
]
BERT_BLOCK = [
    ("attention.self.query", 32, 32),
    ("attention.self.key", 32, 32),
    ("attention.self.value", 32, 32),
    ("attention.output.dense", 32, 32),
    ("intermediate.dense", 32, 37),
    ("output.dense", 37, 32),
]
BERT_LINEAR = [(f"encoder.layer.{b}.{name}", n, m) for b in range(2) for name, n, m in BERT_BLOCK]
BERT_NORMS = 32 * 2 * (1 + 2 * 2)  # LayerNorm weight and bias: after the embeddings and twice per block


def test_bert_embeddings_and_dense_layers_have_closed_form_counts():
    transformers, config = _bert_config()
    model = transformers.BertModel(config)
    report = count_parameters(model)
    assert [(e.layer, e.num_embeddings, e.embedding_dim, e.parameters) for e in report.embeddings] == [
        (name, rows, dim, rows * dim) for name, rows, dim in BERT_EMBEDDINGS
    ]
    expected_linear = [*BERT_LINEAR, ("pooler.dense", 32, 32)]
    assert [(layer.layer, layer.in_features, layer.out_features, layer.parameters) for layer in report.layers] == [
        (name, n, m, m * (n + 1)) for name, n, m in expected_linear
    ]
    assert report.embedding_parameters == 99 * 32 + 64 * 32 + 2 * 32 == 5280
    assert report.other_parameters == BERT_NORMS == 320  # position_ids is a buffer, never a parameter
    assert report.total_parameters == 5280 + sum(m * (n + 1) for _, n, m in expected_linear) + 320
    assert report.total_parameters == sum(p.numel() for p in model.parameters()) == 19978


def test_bert_masked_lm_decoder_is_tied_to_the_word_embeddings():
    transformers, config = _bert_config()
    model = transformers.BertForMaskedLM(config)
    report = count_parameters(model)
    decoder = next(layer for layer in report.layers if layer.layer == "cls.predictions.decoder")
    assert (decoder.tied_to, decoder.weights, decoder.in_features, decoder.out_features) == (
        "bert.embeddings.word_embeddings",
        0,
        32,
        99,
    )
    word = report.embeddings[0]
    assert (word.layer, word.parameters, word.tied_to) == ("bert.embeddings.word_embeddings", 99 * 32, None)
    assert report.total_parameters == sum(p.numel() for p in model.parameters())
    assert sum(layer.parameters for layer in report.layers) == report.linear_parameters
    assert report.total_parameters == report.linear_parameters + report.embedding_parameters + report.other_parameters

"""MeanPoolClassifier: masked mean pooling + linear head, checked against a direct computation."""

import pytest
import torch

from rankwise.models import MeanPoolClassifier

transformers = pytest.importorskip("transformers")


def test_mean_pooling_ignores_padding_and_matches_reference():
    cfg = transformers.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                  intermediate_size=20, max_position_embeddings=32)
    torch.manual_seed(0)
    model = MeanPoolClassifier(transformers.BertModel(cfg), 16, 3).eval()
    ids = torch.tensor([[5, 6, 7, 0, 0], [8, 9, 10, 11, 12]])
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    out = model(ids, mask, labels=torch.tensor([0, 2]))
    h = model.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
    pooled = torch.stack([h[0, :3].mean(0), h[1].mean(0)])
    ref = model.classifier(pooled)
    torch.testing.assert_close(out.logits, ref, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(out.loss, torch.nn.functional.cross_entropy(ref, torch.tensor([0, 2])))
    alone = model(ids[:1, :3], mask[:1, :3]).logits  # padding changes nothing
    torch.testing.assert_close(alone, out.logits[:1], atol=1e-5, rtol=1e-5)

"""Suggested classes: the model's classification head, served (patentclip/model/classes.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from patentclip.errors import InvalidQueryError, ModelLoadError
from patentclip.model.classes import ClassHead
from patentclip.model.registry import HEAD_FILES
from patentclip.search.engine import SearchRequest


def test_the_head_suggests_the_most_probable_classes_with_softmax_probabilities():
    """Logits 2, 0, 1 for classes 09, 06, 26: softmax e^2, e^0, e^1 over their sum."""
    head = ClassHead(("09", "06", "26"), np.array([[2.0, 0], [0, 0], [1, 0]], np.float32),
                     np.zeros(3, np.float32))
    top = head.suggest(np.array([1.0, 0.0]), 2)
    total = np.exp(2) + 1 + np.exp(1)
    assert [c for c, _ in top] == ["09", "26"]
    assert [p for _, p in top] == pytest.approx([np.exp(2) / total, np.exp(1) / total])


def test_a_folder_without_a_head_has_none_and_a_broken_or_misfit_head_is_refused(tmp_path):
    from safetensors.numpy import save_file

    assert ClassHead.load(tmp_path, 4) is None
    weights, meta = (tmp_path / name for name in HEAD_FILES)
    save_file({"weight": np.zeros((2, 8), np.float32), "bias": np.zeros(2, np.float32)},
              str(weights))
    meta.write_text(json.dumps({"classes": ["09", "06"]}))
    assert ClassHead.load(tmp_path, 8).classes == ("09", "06")
    with pytest.raises(ModelLoadError, match="does not fit embeddings of 4"):
        ClassHead.load(tmp_path, 4)
    weights.write_bytes(b"not safetensors")
    with pytest.raises(ModelLoadError, match="not a readable classification head"):
        ClassHead.load(tmp_path, 8)


def test_a_request_asks_for_at_most_ten_suggestions():
    with pytest.raises(InvalidQueryError, match="suggest_classes=11"):
        SearchRequest(suggest=11)
    assert SearchRequest(suggest=10).suggest == 10

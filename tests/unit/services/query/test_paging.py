"""The one paging token of gRPC and the web API (services/query/plane/paging.py)."""

from __future__ import annotations

import pytest

from patentclip.errors import InvalidQueryError
from services.query.plane import paging


def test_page_tokens_round_trip_and_are_bound_to_the_model():
    token = paging.token(20, "tiny_abc")
    assert paging.offset(token, "tiny_abc", "page_token") == 20
    assert paging.offset("", "tiny_abc", "page_token") == 0
    with pytest.raises(InvalidQueryError, match="options.page_token: issued by model version "
                       "tiny_abc, now serving tiny_def"):
        paging.offset(token, "tiny_def", "options.page_token")
    for bad in ("not-a-token", "x" * 600, paging.token(20, "v")[:-4] + "!!!!"):
        with pytest.raises(InvalidQueryError, match="^page_token: not a token"):
            paging.offset(bad, "v", "page_token")

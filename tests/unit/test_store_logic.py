"""Pure store logic: when Milvus Lite is the wrong backend for a collection's size."""

from patentclip.store import LITE_ADVISED_MAX_ROWS, is_lite_uri, lite_size_advice


def test_lite_uris_are_local_paths():
    assert is_lite_uri("data/patents.db") and is_lite_uri("/abs/x.db")
    assert not is_lite_uri("http://milvus:19530") and not is_lite_uri("https://z.cloud")
    assert not is_lite_uri("unix:/tmp/milvus.sock")


def test_advice_only_above_the_limit():
    assert lite_size_advice("data/patents.db", LITE_ADVISED_MAX_ROWS) is None
    advice = lite_size_advice("data/patents.db", LITE_ADVISED_MAX_ROWS + 1)
    assert advice and "data/patents.db" in advice and f"{LITE_ADVISED_MAX_ROWS + 1:,}" in advice
    assert "PATENTCLIP_MILVUS_URI=http://" in advice

"""Refusals, deadlines and unexpected errors over gRPC: each by field and status, counted as it
ends, as other tools send them.

The service is the package's one (conftest.py): the 40 real sample grants, indexed with
the tiny model into Milvus Lite, served on free ports."""

from __future__ import annotations

import json
from datetime import date

import grpc
import pytest

from harness import REPO
from harness.query_service import MAX_IMAGE_BYTES, rpc_code
from patentclip.v1 import grant_pb2, search_pb2
from patentclip_client import PatentSearchClient


@pytest.mark.parametrize(("call", "words"), [
    (lambda c: c.search_text("   "), "text query is empty"),
    (lambda c: c.search_text("x", k=201), "top_k=201"),
    (lambda c: c.search_text("x", locarno=["2"]), "locarno filter '2'"),
    (lambda c: c.search_text("x", page_token="garbage"), "page_token"),
    (lambda c: c.search_image(b""), "image: empty"),
    (lambda c: c.search_image(b"\x89PNG not really"), "not a readable image"),
    (lambda c: c.search_image(b"\0" * (MAX_IMAGE_BYTES + 1)), "limit 2000000"),
    (lambda c: c.encode_texts([]), "at least one"),
    (lambda c: c.search_text("chair " * 400), "2399 characters, limit 2000"),
    (lambda c: c.search_text("x", k=-1), "top_k=-1"),
    (lambda c: c.search_text("x", date_from=date(2022, 1, 1), date_to=date(2021, 1, 1)),
     "date"),
    (lambda c: c.search_text("x", page_token="eyJvZmZzZXQiOiAtNX0="), "page_token"),
    (lambda c: c.search_similar(""), "patent"),
    (lambda c: c.encode_texts(["lamp", " "]), "texts[1] is empty"),
    (lambda c: c.encode_texts(["x" * 2001]), "texts[0] has 2001 characters"),
    (lambda c: c.encode_texts(["x"] * 65), "65 given, limit 64"),
])
def test_bad_requests_are_invalid_argument_with_a_reason(client, call, words):
    code, details = rpc_code(lambda: call(client))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and words in details
    assert "Traceback" not in details


def test_a_message_over_the_receive_limit_is_resource_exhausted(client):
    over = 2 * MAX_IMAGE_BYTES + 1024 * 1024 + 100_000  # ServerSettings.max_receive_bytes
    code, details = rpc_code(lambda: client.search_image(b"\0" * over))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "larger than max" in details


def test_a_spent_deadline_is_deadline_exceeded(server):
    with PatentSearchClient(f"127.0.0.1:{server.port}", timeout=0.0005) as hurried:
        assert rpc_code(lambda: hurried.search_text("a lamp"))[0] == \
            grpc.StatusCode.DEADLINE_EXCEEDED


def test_deadline_propagates_to_the_vector_search(corpus, encoder):
    from patentclip.errors import DeadlineExceededError
    from patentclip.search.engine import Deadline, SearchEngine, SearchRequest
    from patentclip.search.query import Query

    engine = SearchEngine(encoder, corpus[0], corpus[3])
    patent = next(iter(corpus[2]))
    assert engine.search(Query(patent=patent), SearchRequest(deadline=Deadline.after(30.0))).hits
    with pytest.raises(DeadlineExceededError):  # the lookup is done; the search is not
        engine.search(Query(patent=patent), SearchRequest(deadline=Deadline.after(0.0)))


def test_unexpected_errors_are_internal_with_an_id_and_no_details(server, client, monkeypatch,
                                                                  caplog):
    def broken():
        raise RuntimeError("secret connection string user:pw@db")

    monkeypatch.setattr(server.live, "current", broken)
    code, details = rpc_code(lambda: client.server_info())
    assert code == grpc.StatusCode.INTERNAL and "internal error (id " in details
    assert "secret" not in details and "Traceback" not in details
    assert any("secret connection string" in r.getMessage() or (
        r.exc_info and "secret" in str(r.exc_info[1])) for r in caplog.records)


def _raise_unexpected(*args, **kwargs):
    raise RuntimeError("an unexpected error, not a domain error")


def _no_deadline_calls(corpus):
    """Every RPC, as a plain stub sends it without timeout= (grpcurl's, Node's default)."""
    patent, document = next((p, d) for p, d in corpus[2].items() if len(d.images) > 1)
    drawing = sorted(document.images.values())[1]
    return {
        "Search": search_pb2.SearchRequest(query=search_pb2.Query(text="a lid", image=drawing)),
        "SearchByText": search_pb2.SearchByTextRequest(text="a bottle"),
        "SearchByImage": search_pb2.SearchByImageRequest(image=drawing),
        "SearchSimilar": search_pb2.SearchSimilarRequest(patent_number=patent),
        "SearchByTextAndImage": search_pb2.SearchByTextAndImageRequest(text="a lid",
                                                                       image=drawing),
        "GetPatent": search_pb2.GetPatentRequest(patent_number=patent),
        "GetDrawing": search_pb2.GetDrawingRequest(
            drawing=search_pb2.SheetRef(patent_number=patent, sheet=1)),
        "EncodeText": search_pb2.EncodeTextRequest(texts=["a lamp", "a chair"]),
        "EncodeImage": search_pb2.EncodeImageRequest(images=[drawing]),
        "ServerInfo": search_pb2.ServerInfoRequest(),
        "Reload": search_pb2.ReloadRequest(),
    }


def test_every_rpc_succeeds_without_a_deadline(server, corpus):
    from patentclip.v1 import search_pb2_grpc

    calls = _no_deadline_calls(corpus)
    assert set(calls) == set(search_pb2.DESCRIPTOR.services_by_name["PatentSearch"]
                             .methods_by_name)
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = search_pb2_grpc.PatentSearchStub(channel)
        for method, request in calls.items():
            reply = getattr(stub, method)(request)  # no timeout: no deadline on the wire
            assert reply.ByteSize() > 0, method


def test_every_status_a_call_ends_with_is_the_one_counted_and_the_error_rule_sees_it(
        server, client, monkeypatch, tmp_path):
    """INTERNAL (an unexpected error), INVALID_ARGUMENT, NOT_FOUND and OK as counted by the
    service, then those very counts through deploy/prometheus/rules.yml with promtool."""
    import subprocess

    import patentclip.search.engine
    from patentclip.v1 import search_pb2_grpc

    def count(code: str) -> float:
        return server.metrics.registry.get_sample_value(
            "patentclip_query_requests_total", {"method": "SearchByText", "code": code}) or 0

    before = {code: count(code) for code in ("OK", "INTERNAL", "INVALID_ARGUMENT")}
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = search_pb2_grpc.PatentSearchStub(channel)
        stub.SearchByText(search_pb2.SearchByTextRequest(text="lamp"))
        assert rpc_code(lambda: stub.SearchByText(search_pb2.SearchByTextRequest(text=" ")))[0] \
            == grpc.StatusCode.INVALID_ARGUMENT
        monkeypatch.setattr(patentclip.search.engine.SearchEngine, "_words_and_drawings",
                            _raise_unexpected)
        code, details = rpc_code(lambda: stub.SearchByText(search_pb2.SearchByTextRequest(
            text="lamp")))
        assert code == grpc.StatusCode.INTERNAL and "internal error (id " in details
    delta = {code: count(code) - before[code] for code in before}
    assert delta == {"OK": 1, "INTERNAL": 1, "INVALID_ARGUMENT": 1}

    # The same counts, growing at this rate every minute, through the recording rule.
    series = "\n".join(
        f"      - series: 'patentclip_query_requests_total{{method=\"SearchByText\", "
        f"code=\"{code}\"}}'\n        values: '0+{int(n)}x20'" for code, n in delta.items())
    rules = REPO / "deploy" / "prometheus" / "rules.yml"
    test_file = tmp_path / "counted_test.yml"
    test_file.write_text(f"""rule_files: ['{rules}']
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
{series}
    promql_expr_test:
      - expr: patentclip:query_errors:ratio_rate5m
        eval_time: 10m
        exp_samples:
          - labels: 'patentclip:query_errors:ratio_rate5m'
            value: {1 / 3}
""")
    result = subprocess.run(["promtool", "test", "rules", str(test_file)], capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_requests_other_tools_send_are_refused_by_field_or_normalised(client, corpus):
    patent = next(iter(corpus[2]))  # e.g. D0907292
    digits = patent[1:].lstrip("0")
    typed = [f"D{digits[:-3]},{digits[-3:]}", f"D{digits}", f"US{patent}S1",
             f"Des. {digits[:-3]},{digits[-3:]}", patent.lower()]
    for form in typed:
        assert client.get_patent(form).grant.patent_number == patent, form
        hits = client.search_similar(form, k=3).hits
        assert hits and patent not in {h.patent_number for h in hits}, form
    bad = [
        (lambda: client.stub.SearchByText(search_pb2.SearchByTextRequest(
            text="lamp", options=search_pb2.SearchOptions(
                filters=search_pb2.Filters(date_from=20211399)))), "date_from 20211399: not a "
         "calendar date"),
        (lambda: client.stub.SearchByText(search_pb2.SearchByTextRequest(
            text="lamp", options=search_pb2.SearchOptions(against=9))),
         "options.against: 9 is not an Against value"),
        (lambda: client.stub.SearchByText(search_pb2.SearchByTextRequest(
            text="lamp", options=search_pb2.SearchOptions(filters=search_pb2.Filters(
                views=[grant_pb2.VIEW_UNSPECIFIED])))), "filters.views[0]: VIEW_UNSPECIFIED"),
        (lambda: client.search_image(b"GIF89a not an image at all"),
         "image: not a readable image (expected TIFF, PNG or JPEG bytes)"),
        (lambda: client.encode_images([b"\x89PNG", b"x"]), "images[0]: not a readable image"),
        (lambda: client.get_patent("Des. nine"), "patent_number 'Des. nine': not a patent"),
    ]
    for call, words in bad:
        code, details = rpc_code(call)
        assert code == grpc.StatusCode.INVALID_ARGUMENT and words in details, details
        assert "BytesIO" not in details and "0x" not in details


def test_mixed_and_unknown_views_filter_over_grpc_and_the_cli(server, client, capsys):
    from patentclip_cli.main import main

    for view in ("mixed", "unknown"):
        page = client.search_text("a design", k=20, views=[view], group=False)
        assert page.hits or view == "mixed"  # one-per-sheet mapping never mixes views
        assert all(h.view_name == view for h in page.hits)
        expected = grant_pb2.VIEW_MIXED if view == "mixed" else grant_pb2.VIEW_UNKNOWN
        assert all(h.view == expected for h in page.hits)
    target = f"127.0.0.1:{server.port}"
    assert main(["search", "--server", target, "--text", "bottle", "--view", "mixed",
                 "--no-group", "--json"]) == 0
    assert all(h["view"] == "mixed" for h in json.loads(capsys.readouterr().out)["hits"])
    with pytest.raises(SystemExit):
        main(["search", "--server", target, "--text", "bottle", "--view", "sideways"])
    assert "invalid choice: 'sideways'" in capsys.readouterr().err


def test_an_oversized_image_is_invalid_argument_naming_field_and_limit(client):
    code, details = rpc_code(lambda: client.search_image(b"\0" * (MAX_IMAGE_BYTES * 5 // 4)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert f"image: {MAX_IMAGE_BYTES * 5 // 4} bytes, limit {MAX_IMAGE_BYTES}" in details

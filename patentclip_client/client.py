"""PatentSearchClient: a typed Python client for examiner tooling.

    with PatentSearchClient("search.example:50051") as client:
        page = client.search(text="hinged lid cosmetic case with mirror", k=20,
                             locarno=["0204"], date_from=date(2019, 1, 1))
        for hit in page.hits: ...
        more = client.search(..., page_token=page.next_page_token)
        part = client.search(image=open("kettle.tif", "rb").read(), crop=(0.6, 0.2, 1, 0.7))
        hit = part.hits[0]  # hit.matched: "part"; hit.figure_numbers: the figure it is in
        hit.region if hit.HasField("region") else None  # where on its sheet it matched

``hit.region`` (fractions of the sheet) is the part of the hit's drawing that matched best,
where the collection holds figure or part rows (``docs/figures.md``).

Security: ``token`` is sent as ``authorization: Bearer <token>`` on every call;
``ca_cert`` (PEM path) switches to TLS, and ``client_cert`` + ``client_key`` add a client
certificate for mutual TLS. Every call has a deadline (``timeout``, default 10 s).
UNAVAILABLE is retried by gRPC's own retry policy (up to 4 attempts, exponential
back-off); other errors raise ``grpc.RpcError`` with the server's status code and message.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import grpc

from patentclip.codec.api import AGAINST_NAME_TO_PB, VIEW_NAME_TO_PB
from patentclip.codec.api import query_message as api_query_message
from patentclip.grants.model import SHEET_VIEWS, yyyymmdd
from patentclip.v1 import search_pb2, search_pb2_grpc

_RETRY_CONFIG = json.dumps({"methodConfig": [{
    "name": [{"service": "patentclip.v1.PatentSearch"}],
    "retryPolicy": {"maxAttempts": 4, "initialBackoff": "0.1s", "maxBackoff": "2s",
                    "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"]},
}]})


@dataclass(frozen=True)
class SearchPage:
    hits: list[search_pb2.Hit]
    model_version: str
    collection: str
    next_page_token: str
    locarno_counts: dict[str, int] = field(default_factory=dict)  # with locarno_counts_depth
    counted_results: int = 0
    # With suggest_classes: (Locarno class, probability), most probable first; or the note
    # saying why there are none (a model without a classification head).
    suggested_classes: list[tuple[str, float]] = field(default_factory=list)
    suggestions_note: str = ""
    # The legs searched ("drawing", "caption", "words"; each hit's found_by names those that
    # held it), and why one asked for was left out (the lexical leg on a backend without it).
    legs: list[str] = field(default_factory=list)
    legs_note: str = ""

Crop = tuple[float, float, float, float]  # left, top, right, bottom, fractions of the drawing
DRAWING_SIZES = {"thumbnail": search_pb2.DRAWING_SIZE_THUMBNAIL,
                 "medium": search_pb2.DRAWING_SIZE_MEDIUM, "full": search_pb2.DRAWING_SIZE_FULL}


class PatentSearchClient:
    def __init__(self, target: str, timeout: float = 10.0,
                 credentials: grpc.ChannelCredentials | None = None, token: str = "",
                 ca_cert: str = "", client_cert: str = "", client_key: str = "",
                 retry: bool = True) -> None:
        """``retry``: UNAVAILABLE is retried within the call's deadline (gRPC's retry
        policy); off, every answer of the server reaches the caller as it is."""
        options = [("grpc.service_config", _RETRY_CONFIG), ("grpc.enable_retries", int(retry)),
                   ("grpc.max_send_message_length", 32 * 1024 * 1024)]
        credentials = credentials or tls_credentials(ca_cert, client_cert, client_key)
        self.channel = (grpc.secure_channel(target, credentials, options) if credentials
                        else grpc.insecure_channel(target, options))
        self.stub = _AuthorizedStub(search_pb2_grpc.PatentSearchStub(self.channel), token)
        self.timeout = timeout

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> PatentSearchClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def search(self, k: int = 10, query: search_pb2.Query | None = None, **given
               ) -> SearchPage:
        """Any query, through the one Search RPC: ``query`` (an API Query message) or its
        fields as keywords (text, image, image_name, crop as (left, top, right, bottom),
        patent, sheet, mode, drawings as [{"image": ..., "name": ..., "crop": ...}]:
        whatever the message holds), with the options of ``search_options``::

            client.search(text="hinged lid", image=png, crop=(0.1, 0.1, 0.6, 0.5), k=20)
            client.search(image=front, drawings=[{"image": side}], mode="photo")
        """
        message = query_message({n: v for n, v in given.items() if n in QUERY_FIELDS})
        if query is not None:
            message.MergeFrom(query)
        options = search_options(k, **{n: v for n, v in given.items() if n not in QUERY_FIELDS})
        request = search_pb2.SearchRequest(query=message, options=options)
        return _page(self.stub.Search(request, timeout=self.timeout))

    # One method per query kind, each on its own RPC (as before Search; metrics by method
    # tell the kinds apart). Every one of them runs the same search on the server.

    def search_text(self, text: str, k: int = 10, **options) -> SearchPage:
        request = search_pb2.SearchByTextRequest(text=text,
                                                 options=search_options(k, **options))
        return _page(self.stub.SearchByText(request, timeout=self.timeout))

    def search_image(self, image: bytes, k: int = 10, crop: Crop | None = None,
                     **options) -> SearchPage:
        request = search_pb2.SearchByImageRequest(image=image, crop=query_message(
            {"crop": crop}).crop if crop else None, options=search_options(k, **options))
        return _page(self.stub.SearchByImage(request, timeout=self.timeout))

    def search_text_and_image(self, text: str, image: bytes, k: int = 10,
                              crop: Crop | None = None, **options) -> SearchPage:
        """Text and a drawing in one query (the rankings fused by reciprocal rank)."""
        request = search_pb2.SearchByTextAndImageRequest(
            text=text, image=image, crop=query_message({"crop": crop}).crop if crop else None,
            options=search_options(k, **options))
        return _page(self.stub.SearchByTextAndImage(request, timeout=self.timeout))

    def search_similar(self, patent_number: str, k: int = 10, sheet: int | None = None,
                       **options) -> SearchPage:
        request = search_pb2.SearchSimilarRequest(patent_number=patent_number, sheet=sheet,
                                                  options=search_options(k, **options))
        return _page(self.stub.SearchSimilar(request, timeout=self.timeout))

    def get_drawing(self, patent_number: str, sheet: int, size: str = "thumbnail"
                    ) -> search_pb2.GetDrawingResponse:
        """One sheet as PNG (``png``, ``width``, ``height``): thumbnail (long edge 256 px),
        medium (1024 px) or full."""
        if size not in DRAWING_SIZES:
            raise ValueError(f"size {size!r}: choose from {', '.join(DRAWING_SIZES)}")
        request = search_pb2.GetDrawingRequest(
            drawing=search_pb2.SheetRef(patent_number=patent_number, sheet=sheet),
            size=DRAWING_SIZES[size])
        return self.stub.GetDrawing(request, timeout=self.timeout)

    def get_patent(self, patent_number: str) -> search_pb2.GetPatentResponse:
        return self.stub.GetPatent(search_pb2.GetPatentRequest(patent_number=patent_number),
                                   timeout=self.timeout)

    def encode_texts(self, texts: Sequence[str]) -> search_pb2.EncodeResponse:
        return self.stub.EncodeText(search_pb2.EncodeTextRequest(texts=list(texts)),
                                    timeout=self.timeout)

    def encode_images(self, images: Sequence[bytes]) -> search_pb2.EncodeResponse:
        return self.stub.EncodeImage(search_pb2.EncodeImageRequest(images=list(images)),
                                     timeout=self.timeout)

    def server_info(self) -> search_pb2.ServerInfoResponse:
        return self.stub.ServerInfo(search_pb2.ServerInfoRequest(), timeout=self.timeout)

    def reload(self) -> search_pb2.ReloadResponse:
        """Admin role: serve what the live alias points at now."""
        return self.stub.Reload(search_pb2.ReloadRequest(), timeout=self.timeout)


def tls_credentials(ca_cert: str = "", client_cert: str = "",
                    client_key: str = "") -> grpc.ChannelCredentials | None:
    """TLS channel credentials from PEM paths; None when no CA and no certificate is given."""
    if not (ca_cert or client_cert):
        return None
    if bool(client_cert) != bool(client_key):
        raise ValueError("client_cert and client_key go together (mutual TLS)")
    read = lambda path: Path(path).read_bytes() if path else None  # noqa: E731
    return grpc.ssl_channel_credentials(read(ca_cert), read(client_key), read(client_cert))


class _AuthorizedStub:
    """The generated stub, with the bearer token added to every call's metadata."""

    def __init__(self, stub, token: str) -> None:
        self._stub = stub
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()

    def __getattr__(self, name: str):
        method = getattr(self._stub, name)
        if not self._metadata:
            return method
        return lambda request, **kw: method(request, metadata=self._metadata, **kw)


def search_options(k: int, locarno: Iterable[str] = (), date_from: date | None = None,
                   date_to: date | None = None, views: Iterable[str] = (), group: bool = True,
                   against: str | None = None, page_token: str = "",
                   locarno_counts_depth: int = 0, suggest_classes: int = 0
                   ) -> search_pb2.SearchOptions:
    """A search's options as the service reads them; ValueError for a view or ``against``
    the API has no name for (the service would refuse it by field)."""
    unknown = [v for v in views if v not in VIEW_NAME_TO_PB]
    if unknown:
        raise ValueError(f"views {unknown}: choose from {', '.join(SHEET_VIEWS)}")
    if against is not None and against not in AGAINST_NAME_TO_PB:
        raise ValueError(f"against {against!r}: choose from {', '.join(AGAINST_NAME_TO_PB)}")
    filters = search_pb2.Filters(
        locarno=list(locarno), date_from=yyyymmdd(date_from) or 0,
        date_to=yyyymmdd(date_to) or 0,
        views=[VIEW_NAME_TO_PB[v] for v in views])
    return search_pb2.SearchOptions(top_k=k, filters=filters, group_by_patent=group,
                                    page_token=page_token,
                                    locarno_counts_depth=locarno_counts_depth,
                                    suggest_classes=suggest_classes,
                                    against=AGAINST_NAME_TO_PB.get(against or "",
                                                                   search_pb2.AGAINST_UNSPECIFIED))


QUERY_FIELDS = frozenset(search_pb2.Query.DESCRIPTOR.fields_by_name)


def query_message(fields: dict) -> search_pb2.Query:
    """An API Query message from its fields by name. None leaves a field unset; a message
    field (the crop) may be given as a tuple of its fields in order."""
    unknown = set(fields) - QUERY_FIELDS
    if unknown:
        raise ValueError(f"{sorted(unknown)}: not fields of a query ({', '.join(QUERY_FIELDS)})")
    return api_query_message(fields)


def _page(response: search_pb2.SearchResponse) -> SearchPage:
    return SearchPage(list(response.hits), response.model_version, response.collection,
                      response.next_page_token,
                      {c.locarno_class: c.results for c in response.locarno_counts},
                      response.counted_results,
                      [(c.locarno_class, c.probability) for c in response.suggested_classes],
                      response.suggestions_note, list(response.legs), response.legs_note)

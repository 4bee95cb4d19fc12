"""PatentSearch RPCs: validate, convert, call the core, convert back. Errors: interceptor."""

from __future__ import annotations

import logging

from patentclip.errors import InvalidQueryError
from patentclip.search.query import Query, check_image, check_text, query_from_message
from patentclip.v1 import search_pb2, search_pb2_grpc
from services.query.plane.drawings import StoredDrawings
from services.query.plane.live import LiveSearch
from services.query.rpc import convert

logger = logging.getLogger(__name__)

MAX_ENCODE_ITEMS = 64


class PatentSearchServicer(search_pb2_grpc.PatentSearchServicer):
    def __init__(self, live: LiveSearch, stored: StoredDrawings, max_image_bytes: int) -> None:
        self.live, self.stored, self.max_image_bytes = live, stored, max_image_bytes

    def Search(self, request, context):  # noqa: N802 (gRPC names)
        query = query_from_message(request.query, self.max_image_bytes, "query.")
        return self._search(query, request.options, context)

    # The four RPCs of one query kind each, as before Search (existing clients use them).

    def SearchByText(self, request, context):  # noqa: N802
        return self._search(Query(text=request.text), request.options, context)

    def SearchByImage(self, request, context):  # noqa: N802
        return self._search(self._drawing_query(request), request.options, context)

    def SearchByTextAndImage(self, request, context):  # noqa: N802
        return self._search(self._drawing_query(request, request.text), request.options,
                            context)

    def SearchSimilar(self, request, context):  # noqa: N802
        return self._search(Query(patent=convert.patent_number(request.patent_number),
                                  sheet=request.sheet if request.HasField("sheet") else None),
                            request.options, context)

    def _drawing_query(self, request, text: str | None = None) -> Query:
        """The Query of a request with a required image, a crop and (given) its words."""
        message = search_pb2.Query(text=text, image=self._check_image(request.image, "image"),
                                   image_name="image",
                                   crop=request.crop if request.HasField("crop") else None)
        return query_from_message(message, self.max_image_bytes)

    def _search(self, query: Query, options, context):
        """Every search RPC: its query, its options and the caller's deadline, one engine."""
        snap = self.live.current()
        q = convert.request(options, snap.model_version, context)
        result = snap.engine.search(query, q)
        with snap.engine.stage("serialize"):
            return convert.search_response(result, q)

    def GetPatent(self, request, context):  # noqa: N802
        snap = self.live.current()
        patent = convert.patent_number(request.patent_number)
        record = snap.engine.get_patent(patent, convert.deadline(context))
        grant = self.stored.grant(patent)
        return convert.patent_response(record, grant, snap.model_version,
                                       self.stored.citation_links(patent, grant))

    def GetDrawing(self, request, context):  # noqa: N802
        snap = self.live.current()
        patent, number, size = convert.drawing_request(request)
        sheet = snap.engine.drawing_sheet(patent, number, convert.deadline(context))
        return convert.drawing_response(patent, sheet, self.stored.render(sheet.image_uri, size))

    def EncodeText(self, request, context):  # noqa: N802
        snap = self.live.current()
        _check_count(request.texts, "texts")
        for i, text in enumerate(request.texts):
            check_text(text, f"texts[{i}]")
        vectors = snap.encoder.encode_texts(list(request.texts),
                                            timeout=convert.deadline(context))
        return convert.encode_response(vectors, snap.model_version, snap.encoder.dim)

    def EncodeImage(self, request, context):  # noqa: N802
        snap = self.live.current()
        _check_count(request.images, "images")
        for i, image in enumerate(request.images):
            self._check_image(image, f"images[{i}]")
        vectors = snap.encoder.encode_drawings(
            list(request.images), [f"images[{i}]" for i in range(len(request.images))],
            timeout=convert.deadline(context))
        return convert.encode_response(vectors, snap.model_version, snap.encoder.dim)

    def ServerInfo(self, request, context):  # noqa: N802
        snap = self.live.current()
        return search_pb2.ServerInfoResponse(
            model_version=snap.model_version, collection=snap.collection,
            alias=self.live.alias, corpus_sheets=snap.sheets, dim=snap.encoder.dim,
            lexical=not snap.engine.lexical_off, lexical_note=snap.engine.lexical_off)

    def Reload(self, request, context):  # noqa: N802 (admin role: see interceptor)
        swapped = self.live.refresh()
        snap = self.live.current()
        logger.info("reload requested: %s", "swapped" if swapped else "already current")
        return search_pb2.ReloadResponse(swapped=swapped, model_version=snap.model_version,
                                         collection=snap.collection)

    def _check_image(self, data: bytes, field: str) -> bytes:
        return check_image(data, field, self.max_image_bytes)


def _check_count(items, field: str) -> None:
    if not items:
        raise InvalidQueryError(f"{field}: at least one is required")
    if len(items) > MAX_ENCODE_ITEMS:
        raise InvalidQueryError(f"{field}: {len(items)} given, limit {MAX_ENCODE_ITEMS}")

"""Protobuf <-> domain conversion for the query service: the only place that knows both."""

from __future__ import annotations

from patentclip.codec.api import AGAINST_PB_TO_NAME, view_from_proto, view_to_proto
from patentclip.codec.events import CATEGORY_TO_PB, grant_to_proto, region_to_proto
from patentclip.drawings.render import RenderedDrawing
from patentclip.errors import InvalidQueryError
from patentclip.grants.model import LOCARNO_MAIN_CLASSES, Grant, normalize_patent_number
from patentclip.search.engine import Deadline, PatentRecord, SearchRequest, SearchResult
from patentclip.store import Hit, SearchFilters
from patentclip.store.schema import StoredSheet
from patentclip.v1 import grant_pb2, search_pb2
from services.query.plane import paging
from services.query.plane.drawings import CitationLinks

DEFAULT_TOP_K = 10
# gRPC reports "no deadline" as a time remaining of about 2**63 ns, which overflows every
# timed wait below; a budget longer than this is no deadline at all.
NO_DEADLINE_ABOVE_S = 365 * 24 * 3600.0


def deadline(context) -> float | None:
    """Seconds left of the caller's deadline; None when the client sent none (the default
    of grpcurl, buf curl, Node, Go and Java stubs)."""
    remaining = context.time_remaining()
    return None if remaining is None or remaining > NO_DEADLINE_ABOVE_S else remaining


def patent_number(text: str) -> str:
    """A request's patent_number as stored ("D907,292", "USD0907292S1" -> "D0907292")."""
    return normalize_patent_number(text, "patent_number")


def request(options: search_pb2.SearchOptions, model_version: str, context) -> SearchRequest:
    """A search's options and the caller's deadline as a SearchRequest (validated: an
    InvalidQueryError names the bad field)."""
    offset = paging.offset(options.page_token, model_version, "options.page_token")
    return SearchRequest(
        top_k=options.top_k or DEFAULT_TOP_K, offset=offset, filters=filters(options.filters),
        against=_against(options.against),
        group=options.group_by_patent if options.HasField("group_by_patent") else True,
        deadline=Deadline.after(deadline(context)), count_depth=options.locarno_counts_depth,
        suggest=options.suggest_classes)


DRAWING_SIZE_NAMES = {search_pb2.DRAWING_SIZE_UNSPECIFIED: "thumbnail",
                      search_pb2.DRAWING_SIZE_THUMBNAIL: "thumbnail",
                      search_pb2.DRAWING_SIZE_MEDIUM: "medium",
                      search_pb2.DRAWING_SIZE_FULL: "full"}


def drawing_request(request: search_pb2.GetDrawingRequest) -> tuple[str, int, str]:
    """(patent, sheet, size name) of a GetDrawing request, validated by field."""
    if not request.HasField("drawing"):
        raise InvalidQueryError("drawing: required (a SheetRef from a hit or GetPatent)")
    if request.size not in DRAWING_SIZE_NAMES:
        raise InvalidQueryError(f"size: {request.size} is not a DrawingSize value")
    if request.drawing.sheet < 0:
        raise InvalidQueryError(f"drawing.sheet: {request.drawing.sheet} is negative")
    return (normalize_patent_number(request.drawing.patent_number, "drawing.patent_number"),
            request.drawing.sheet, DRAWING_SIZE_NAMES[request.size])


def drawing_response(patent: str, sheet: StoredSheet, rendered: RenderedDrawing
                     ) -> search_pb2.GetDrawingResponse:
    return search_pb2.GetDrawingResponse(
        png=rendered.png, width=rendered.width, height=rendered.height,
        drawing=search_pb2.SheetRef(patent_number=patent, sheet=sheet.sheet),
        figure_numbers=sheet.figures)


def _against(value: int) -> str:
    """"" (the query's default) for AGAINST_UNSPECIFIED."""
    if value == search_pb2.AGAINST_UNSPECIFIED:
        return ""
    if value not in AGAINST_PB_TO_NAME:
        choices = ", ".join(search_pb2.Against.Name(n) for n in AGAINST_PB_TO_NAME)
        raise InvalidQueryError(f"options.against: {value} is not an Against value; choose "
                                f"from {choices}")
    return AGAINST_PB_TO_NAME[value]


def filters(message: search_pb2.Filters) -> SearchFilters:
    views = tuple(view_from_proto(number, f"filters.views[{i}]")
                  for i, number in enumerate(message.views))
    return SearchFilters(locarno=tuple(message.locarno), date_from=message.date_from or None,
                         date_to=message.date_to or None, views=views)


def search_response(result: SearchResult, q: SearchRequest) -> search_pb2.SearchResponse:
    response = search_pb2.SearchResponse(model_version=result.model_version,
                                         collection=result.collection)
    response.hits.extend(hit(h) for h in result.hits)
    if q.count_depth:
        response.locarno_counts.extend(search_pb2.LocarnoCount(locarno_class=c, results=n)
                                       for c, n in result.locarno_counts)
        response.locarno_counts_depth, response.counted_results = q.count_depth, result.counted
    response.suggested_classes.extend(
        search_pb2.ClassSuggestion(locarno_class=c, title=LOCARNO_MAIN_CLASSES.get(c, ""),
                                   probability=p) for c, p in result.suggested)
    response.suggestions_note = result.suggest_note
    response.legs.extend(result.legs)
    response.legs_note = result.legs_note
    following = q.next_offset(len(result.hits))
    if following is not None:
        response.next_page_token = paging.token(following, result.model_version)
    return response


def hit(h: Hit) -> search_pb2.Hit:
    return search_pb2.Hit(
        patent_number=h.patent, title=h.title, grant_date=h.grant_date, locarno=h.locarno,
        sheet=h.sheet, figure_numbers=h.figures,
        view=view_to_proto(h.view), view_name=h.view,
        figure_description=h.caption, score=h.score, image_uri=h.image_uri,
        matched=h.modality, drawing=search_pb2.SheetRef(patent_number=h.patent, sheet=h.sheet),
        found_by=h.legs, region=region_to_proto(h.region) if h.region else None)


def patent_response(record: PatentRecord, grant: Grant | None, model_version: str,
                    links: CitationLinks | None = None) -> search_pb2.GetPatentResponse:
    """The full Grant (with its citations) when its record is stored, else what the
    collection knows; and where the citations lead in this corpus."""
    message = grant_to_proto(grant) if grant else grant_pb2.Grant(
        patent_number=record.patent, title=record.title, grant_date=record.grant_date)
    if grant is None:
        if record.locarno:
            message.locarno.code = record.locarno
        for sheet in record.sheets:
            message.sheets.add(number=sheet.sheet, image_uri=sheet.image_uri,
                               figure_numbers=sheet.figures, regions=[
                                   grant_pb2.FigureRegion(figure_number=f.number,
                                                          region=region_to_proto(f.region))
                                   for f in sheet.regions])
            views = {f.number: f.view for f in sheet.regions}  # a sheet of several figures
            for number in sheet.figures:
                message.figures.add(number=number, description=sheet.caption,
                                    view=view_to_proto(views.get(number, sheet.view)))
    drawings = [search_pb2.SheetRef(patent_number=record.patent, sheet=s.sheet)
                for s in record.sheets]
    links = links or CitationLinks()
    cited_by = [search_pb2.CitingPatent(patent_number=p, category=CATEGORY_TO_PB.get(c, 0))
                for p, c in links.cited_by]
    return search_pb2.GetPatentResponse(grant=message, model_version=model_version,
                                        drawings=drawings, cited_in_corpus=links.in_corpus,
                                        cited_by=cited_by)


def encode_response(vectors, model_version: str, dim: int) -> search_pb2.EncodeResponse:
    response = search_pb2.EncodeResponse(model_version=model_version, dim=dim)
    response.vectors.extend(search_pb2.Vector(values=v.tolist()) for v in vectors)
    return response

from patentclip.v1 import grant_pb2 as _grant_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Against(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AGAINST_UNSPECIFIED: _ClassVar[Against]
    AGAINST_DRAWING: _ClassVar[Against]
    AGAINST_CAPTION: _ClassVar[Against]
    AGAINST_BOTH: _ClassVar[Against]
    AGAINST_WORDS: _ClassVar[Against]
    AGAINST_ALL: _ClassVar[Against]

class DrawingSize(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DRAWING_SIZE_UNSPECIFIED: _ClassVar[DrawingSize]
    DRAWING_SIZE_THUMBNAIL: _ClassVar[DrawingSize]
    DRAWING_SIZE_MEDIUM: _ClassVar[DrawingSize]
    DRAWING_SIZE_FULL: _ClassVar[DrawingSize]
AGAINST_UNSPECIFIED: Against
AGAINST_DRAWING: Against
AGAINST_CAPTION: Against
AGAINST_BOTH: Against
AGAINST_WORDS: Against
AGAINST_ALL: Against
DRAWING_SIZE_UNSPECIFIED: DrawingSize
DRAWING_SIZE_THUMBNAIL: DrawingSize
DRAWING_SIZE_MEDIUM: DrawingSize
DRAWING_SIZE_FULL: DrawingSize

class Filters(_message.Message):
    __slots__ = ("locarno", "date_from", "date_to", "views")
    LOCARNO_FIELD_NUMBER: _ClassVar[int]
    DATE_FROM_FIELD_NUMBER: _ClassVar[int]
    DATE_TO_FIELD_NUMBER: _ClassVar[int]
    VIEWS_FIELD_NUMBER: _ClassVar[int]
    locarno: _containers.RepeatedScalarFieldContainer[str]
    date_from: int
    date_to: int
    views: _containers.RepeatedScalarFieldContainer[_grant_pb2.View]
    def __init__(self, locarno: _Optional[_Iterable[str]] = ..., date_from: _Optional[int] = ..., date_to: _Optional[int] = ..., views: _Optional[_Iterable[_Union[_grant_pb2.View, str]]] = ...) -> None: ...

class SearchOptions(_message.Message):
    __slots__ = ("top_k", "filters", "group_by_patent", "page_token", "against", "locarno_counts_depth", "suggest_classes")
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    FILTERS_FIELD_NUMBER: _ClassVar[int]
    GROUP_BY_PATENT_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    AGAINST_FIELD_NUMBER: _ClassVar[int]
    LOCARNO_COUNTS_DEPTH_FIELD_NUMBER: _ClassVar[int]
    SUGGEST_CLASSES_FIELD_NUMBER: _ClassVar[int]
    top_k: int
    filters: Filters
    group_by_patent: bool
    page_token: str
    against: Against
    locarno_counts_depth: int
    suggest_classes: int
    def __init__(self, top_k: _Optional[int] = ..., filters: _Optional[_Union[Filters, _Mapping]] = ..., group_by_patent: _Optional[bool] = ..., page_token: _Optional[str] = ..., against: _Optional[_Union[Against, str]] = ..., locarno_counts_depth: _Optional[int] = ..., suggest_classes: _Optional[int] = ...) -> None: ...

class Crop(_message.Message):
    __slots__ = ("left", "top", "right", "bottom")
    LEFT_FIELD_NUMBER: _ClassVar[int]
    TOP_FIELD_NUMBER: _ClassVar[int]
    RIGHT_FIELD_NUMBER: _ClassVar[int]
    BOTTOM_FIELD_NUMBER: _ClassVar[int]
    left: float
    top: float
    right: float
    bottom: float
    def __init__(self, left: _Optional[float] = ..., top: _Optional[float] = ..., right: _Optional[float] = ..., bottom: _Optional[float] = ...) -> None: ...

class QueryDrawing(_message.Message):
    __slots__ = ("image", "name", "crop")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    CROP_FIELD_NUMBER: _ClassVar[int]
    image: bytes
    name: str
    crop: Crop
    def __init__(self, image: _Optional[bytes] = ..., name: _Optional[str] = ..., crop: _Optional[_Union[Crop, _Mapping]] = ...) -> None: ...

class SheetRef(_message.Message):
    __slots__ = ("patent_number", "sheet")
    PATENT_NUMBER_FIELD_NUMBER: _ClassVar[int]
    SHEET_FIELD_NUMBER: _ClassVar[int]
    patent_number: str
    sheet: int
    def __init__(self, patent_number: _Optional[str] = ..., sheet: _Optional[int] = ...) -> None: ...

class Query(_message.Message):
    __slots__ = ("text", "image", "image_name", "crop", "patent", "sheet", "mode", "drawings")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    IMAGE_NAME_FIELD_NUMBER: _ClassVar[int]
    CROP_FIELD_NUMBER: _ClassVar[int]
    PATENT_FIELD_NUMBER: _ClassVar[int]
    SHEET_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    DRAWINGS_FIELD_NUMBER: _ClassVar[int]
    text: str
    image: bytes
    image_name: str
    crop: Crop
    patent: str
    sheet: int
    mode: str
    drawings: _containers.RepeatedCompositeFieldContainer[QueryDrawing]
    def __init__(self, text: _Optional[str] = ..., image: _Optional[bytes] = ..., image_name: _Optional[str] = ..., crop: _Optional[_Union[Crop, _Mapping]] = ..., patent: _Optional[str] = ..., sheet: _Optional[int] = ..., mode: _Optional[str] = ..., drawings: _Optional[_Iterable[_Union[QueryDrawing, _Mapping]]] = ...) -> None: ...

class SearchRequest(_message.Message):
    __slots__ = ("query", "options")
    QUERY_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    query: Query
    options: SearchOptions
    def __init__(self, query: _Optional[_Union[Query, _Mapping]] = ..., options: _Optional[_Union[SearchOptions, _Mapping]] = ...) -> None: ...

class SearchByTextRequest(_message.Message):
    __slots__ = ("text", "options")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    text: str
    options: SearchOptions
    def __init__(self, text: _Optional[str] = ..., options: _Optional[_Union[SearchOptions, _Mapping]] = ...) -> None: ...

class SearchByImageRequest(_message.Message):
    __slots__ = ("image", "options", "crop")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    CROP_FIELD_NUMBER: _ClassVar[int]
    image: bytes
    options: SearchOptions
    crop: Crop
    def __init__(self, image: _Optional[bytes] = ..., options: _Optional[_Union[SearchOptions, _Mapping]] = ..., crop: _Optional[_Union[Crop, _Mapping]] = ...) -> None: ...

class SearchSimilarRequest(_message.Message):
    __slots__ = ("patent_number", "options", "sheet")
    PATENT_NUMBER_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    SHEET_FIELD_NUMBER: _ClassVar[int]
    patent_number: str
    options: SearchOptions
    sheet: int
    def __init__(self, patent_number: _Optional[str] = ..., options: _Optional[_Union[SearchOptions, _Mapping]] = ..., sheet: _Optional[int] = ...) -> None: ...

class SearchByTextAndImageRequest(_message.Message):
    __slots__ = ("text", "image", "crop", "options")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    CROP_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    text: str
    image: bytes
    crop: Crop
    options: SearchOptions
    def __init__(self, text: _Optional[str] = ..., image: _Optional[bytes] = ..., crop: _Optional[_Union[Crop, _Mapping]] = ..., options: _Optional[_Union[SearchOptions, _Mapping]] = ...) -> None: ...

class Hit(_message.Message):
    __slots__ = ("patent_number", "title", "grant_date", "locarno", "sheet", "figure_numbers", "view", "figure_description", "score", "image_uri", "matched", "view_name", "drawing", "found_by", "region")
    PATENT_NUMBER_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    GRANT_DATE_FIELD_NUMBER: _ClassVar[int]
    LOCARNO_FIELD_NUMBER: _ClassVar[int]
    SHEET_FIELD_NUMBER: _ClassVar[int]
    FIGURE_NUMBERS_FIELD_NUMBER: _ClassVar[int]
    VIEW_FIELD_NUMBER: _ClassVar[int]
    FIGURE_DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    IMAGE_URI_FIELD_NUMBER: _ClassVar[int]
    MATCHED_FIELD_NUMBER: _ClassVar[int]
    VIEW_NAME_FIELD_NUMBER: _ClassVar[int]
    DRAWING_FIELD_NUMBER: _ClassVar[int]
    FOUND_BY_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    patent_number: str
    title: str
    grant_date: int
    locarno: str
    sheet: int
    figure_numbers: _containers.RepeatedScalarFieldContainer[str]
    view: _grant_pb2.View
    figure_description: str
    score: float
    image_uri: str
    matched: str
    view_name: str
    drawing: SheetRef
    found_by: _containers.RepeatedScalarFieldContainer[str]
    region: _grant_pb2.Region
    def __init__(self, patent_number: _Optional[str] = ..., title: _Optional[str] = ..., grant_date: _Optional[int] = ..., locarno: _Optional[str] = ..., sheet: _Optional[int] = ..., figure_numbers: _Optional[_Iterable[str]] = ..., view: _Optional[_Union[_grant_pb2.View, str]] = ..., figure_description: _Optional[str] = ..., score: _Optional[float] = ..., image_uri: _Optional[str] = ..., matched: _Optional[str] = ..., view_name: _Optional[str] = ..., drawing: _Optional[_Union[SheetRef, _Mapping]] = ..., found_by: _Optional[_Iterable[str]] = ..., region: _Optional[_Union[_grant_pb2.Region, _Mapping]] = ...) -> None: ...

class LocarnoCount(_message.Message):
    __slots__ = ("locarno_class", "results")
    LOCARNO_CLASS_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    locarno_class: str
    results: int
    def __init__(self, locarno_class: _Optional[str] = ..., results: _Optional[int] = ...) -> None: ...

class SearchResponse(_message.Message):
    __slots__ = ("hits", "model_version", "collection", "next_page_token", "locarno_counts", "locarno_counts_depth", "counted_results", "suggested_classes", "suggestions_note", "legs", "legs_note")
    HITS_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    LOCARNO_COUNTS_FIELD_NUMBER: _ClassVar[int]
    LOCARNO_COUNTS_DEPTH_FIELD_NUMBER: _ClassVar[int]
    COUNTED_RESULTS_FIELD_NUMBER: _ClassVar[int]
    SUGGESTED_CLASSES_FIELD_NUMBER: _ClassVar[int]
    SUGGESTIONS_NOTE_FIELD_NUMBER: _ClassVar[int]
    LEGS_FIELD_NUMBER: _ClassVar[int]
    LEGS_NOTE_FIELD_NUMBER: _ClassVar[int]
    hits: _containers.RepeatedCompositeFieldContainer[Hit]
    model_version: str
    collection: str
    next_page_token: str
    locarno_counts: _containers.RepeatedCompositeFieldContainer[LocarnoCount]
    locarno_counts_depth: int
    counted_results: int
    suggested_classes: _containers.RepeatedCompositeFieldContainer[ClassSuggestion]
    suggestions_note: str
    legs: _containers.RepeatedScalarFieldContainer[str]
    legs_note: str
    def __init__(self, hits: _Optional[_Iterable[_Union[Hit, _Mapping]]] = ..., model_version: _Optional[str] = ..., collection: _Optional[str] = ..., next_page_token: _Optional[str] = ..., locarno_counts: _Optional[_Iterable[_Union[LocarnoCount, _Mapping]]] = ..., locarno_counts_depth: _Optional[int] = ..., counted_results: _Optional[int] = ..., suggested_classes: _Optional[_Iterable[_Union[ClassSuggestion, _Mapping]]] = ..., suggestions_note: _Optional[str] = ..., legs: _Optional[_Iterable[str]] = ..., legs_note: _Optional[str] = ...) -> None: ...

class ClassSuggestion(_message.Message):
    __slots__ = ("locarno_class", "title", "probability")
    LOCARNO_CLASS_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    locarno_class: str
    title: str
    probability: float
    def __init__(self, locarno_class: _Optional[str] = ..., title: _Optional[str] = ..., probability: _Optional[float] = ...) -> None: ...

class GetPatentRequest(_message.Message):
    __slots__ = ("patent_number",)
    PATENT_NUMBER_FIELD_NUMBER: _ClassVar[int]
    patent_number: str
    def __init__(self, patent_number: _Optional[str] = ...) -> None: ...

class GetPatentResponse(_message.Message):
    __slots__ = ("grant", "model_version", "drawings", "cited_in_corpus", "cited_by")
    GRANT_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    DRAWINGS_FIELD_NUMBER: _ClassVar[int]
    CITED_IN_CORPUS_FIELD_NUMBER: _ClassVar[int]
    CITED_BY_FIELD_NUMBER: _ClassVar[int]
    grant: _grant_pb2.Grant
    model_version: str
    drawings: _containers.RepeatedCompositeFieldContainer[SheetRef]
    cited_in_corpus: _containers.RepeatedScalarFieldContainer[str]
    cited_by: _containers.RepeatedCompositeFieldContainer[CitingPatent]
    def __init__(self, grant: _Optional[_Union[_grant_pb2.Grant, _Mapping]] = ..., model_version: _Optional[str] = ..., drawings: _Optional[_Iterable[_Union[SheetRef, _Mapping]]] = ..., cited_in_corpus: _Optional[_Iterable[str]] = ..., cited_by: _Optional[_Iterable[_Union[CitingPatent, _Mapping]]] = ...) -> None: ...

class CitingPatent(_message.Message):
    __slots__ = ("patent_number", "category")
    PATENT_NUMBER_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    patent_number: str
    category: _grant_pb2.CitationCategory
    def __init__(self, patent_number: _Optional[str] = ..., category: _Optional[_Union[_grant_pb2.CitationCategory, str]] = ...) -> None: ...

class GetDrawingRequest(_message.Message):
    __slots__ = ("drawing", "size")
    DRAWING_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    drawing: SheetRef
    size: DrawingSize
    def __init__(self, drawing: _Optional[_Union[SheetRef, _Mapping]] = ..., size: _Optional[_Union[DrawingSize, str]] = ...) -> None: ...

class GetDrawingResponse(_message.Message):
    __slots__ = ("png", "width", "height", "drawing", "figure_numbers")
    PNG_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    DRAWING_FIELD_NUMBER: _ClassVar[int]
    FIGURE_NUMBERS_FIELD_NUMBER: _ClassVar[int]
    png: bytes
    width: int
    height: int
    drawing: SheetRef
    figure_numbers: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, png: _Optional[bytes] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., drawing: _Optional[_Union[SheetRef, _Mapping]] = ..., figure_numbers: _Optional[_Iterable[str]] = ...) -> None: ...

class EncodeTextRequest(_message.Message):
    __slots__ = ("texts",)
    TEXTS_FIELD_NUMBER: _ClassVar[int]
    texts: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, texts: _Optional[_Iterable[str]] = ...) -> None: ...

class EncodeImageRequest(_message.Message):
    __slots__ = ("images",)
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    images: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, images: _Optional[_Iterable[bytes]] = ...) -> None: ...

class Vector(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, values: _Optional[_Iterable[float]] = ...) -> None: ...

class EncodeResponse(_message.Message):
    __slots__ = ("vectors", "model_version", "dim")
    VECTORS_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    DIM_FIELD_NUMBER: _ClassVar[int]
    vectors: _containers.RepeatedCompositeFieldContainer[Vector]
    model_version: str
    dim: int
    def __init__(self, vectors: _Optional[_Iterable[_Union[Vector, _Mapping]]] = ..., model_version: _Optional[str] = ..., dim: _Optional[int] = ...) -> None: ...

class ServerInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ServerInfoResponse(_message.Message):
    __slots__ = ("model_version", "collection", "alias", "corpus_sheets", "dim", "lexical", "lexical_note")
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    CORPUS_SHEETS_FIELD_NUMBER: _ClassVar[int]
    DIM_FIELD_NUMBER: _ClassVar[int]
    LEXICAL_FIELD_NUMBER: _ClassVar[int]
    LEXICAL_NOTE_FIELD_NUMBER: _ClassVar[int]
    model_version: str
    collection: str
    alias: str
    corpus_sheets: int
    dim: int
    lexical: bool
    lexical_note: str
    def __init__(self, model_version: _Optional[str] = ..., collection: _Optional[str] = ..., alias: _Optional[str] = ..., corpus_sheets: _Optional[int] = ..., dim: _Optional[int] = ..., lexical: _Optional[bool] = ..., lexical_note: _Optional[str] = ...) -> None: ...

class ReloadRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ReloadResponse(_message.Message):
    __slots__ = ("swapped", "model_version", "collection")
    SWAPPED_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    swapped: bool
    model_version: str
    collection: str
    def __init__(self, swapped: _Optional[bool] = ..., model_version: _Optional[str] = ..., collection: _Optional[str] = ...) -> None: ...

from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class View(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VIEW_UNSPECIFIED: _ClassVar[View]
    VIEW_FRONT: _ClassVar[View]
    VIEW_REAR: _ClassVar[View]
    VIEW_LEFT: _ClassVar[View]
    VIEW_RIGHT: _ClassVar[View]
    VIEW_TOP: _ClassVar[View]
    VIEW_BOTTOM: _ClassVar[View]
    VIEW_PERSPECTIVE: _ClassVar[View]
    VIEW_EXPLODED: _ClassVar[View]
    VIEW_SECTION: _ClassVar[View]
    VIEW_DETAIL: _ClassVar[View]
    VIEW_IN_USE: _ClassVar[View]
    VIEW_OTHER: _ClassVar[View]
    VIEW_UNKNOWN: _ClassVar[View]
    VIEW_MIXED: _ClassVar[View]

class SheetFigureMapping(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SHEET_FIGURE_MAPPING_UNSPECIFIED: _ClassVar[SheetFigureMapping]
    SHEET_FIGURE_MAPPING_ONE_PER_SHEET: _ClassVar[SheetFigureMapping]
    SHEET_FIGURE_MAPPING_FRONT_PAGE: _ClassVar[SheetFigureMapping]
    SHEET_FIGURE_MAPPING_UNKNOWN: _ClassVar[SheetFigureMapping]
    SHEET_FIGURE_MAPPING_LABELS: _ClassVar[SheetFigureMapping]

class CitationCategory(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CITATION_CATEGORY_UNSPECIFIED: _ClassVar[CitationCategory]
    CITATION_CATEGORY_EXAMINER: _ClassVar[CitationCategory]
    CITATION_CATEGORY_APPLICANT: _ClassVar[CitationCategory]
    CITATION_CATEGORY_OTHER: _ClassVar[CitationCategory]
VIEW_UNSPECIFIED: View
VIEW_FRONT: View
VIEW_REAR: View
VIEW_LEFT: View
VIEW_RIGHT: View
VIEW_TOP: View
VIEW_BOTTOM: View
VIEW_PERSPECTIVE: View
VIEW_EXPLODED: View
VIEW_SECTION: View
VIEW_DETAIL: View
VIEW_IN_USE: View
VIEW_OTHER: View
VIEW_UNKNOWN: View
VIEW_MIXED: View
SHEET_FIGURE_MAPPING_UNSPECIFIED: SheetFigureMapping
SHEET_FIGURE_MAPPING_ONE_PER_SHEET: SheetFigureMapping
SHEET_FIGURE_MAPPING_FRONT_PAGE: SheetFigureMapping
SHEET_FIGURE_MAPPING_UNKNOWN: SheetFigureMapping
SHEET_FIGURE_MAPPING_LABELS: SheetFigureMapping
CITATION_CATEGORY_UNSPECIFIED: CitationCategory
CITATION_CATEGORY_EXAMINER: CitationCategory
CITATION_CATEGORY_APPLICANT: CitationCategory
CITATION_CATEGORY_OTHER: CitationCategory

class LocarnoClass(_message.Message):
    __slots__ = ("code", "edition")
    CODE_FIELD_NUMBER: _ClassVar[int]
    EDITION_FIELD_NUMBER: _ClassVar[int]
    code: str
    edition: str
    def __init__(self, code: _Optional[str] = ..., edition: _Optional[str] = ...) -> None: ...

class UspcClass(_message.Message):
    __slots__ = ("raw", "normalized", "main")
    RAW_FIELD_NUMBER: _ClassVar[int]
    NORMALIZED_FIELD_NUMBER: _ClassVar[int]
    MAIN_FIELD_NUMBER: _ClassVar[int]
    raw: str
    normalized: str
    main: bool
    def __init__(self, raw: _Optional[str] = ..., normalized: _Optional[str] = ..., main: _Optional[bool] = ...) -> None: ...

class Figure(_message.Message):
    __slots__ = ("number", "view", "view_text", "description")
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    VIEW_FIELD_NUMBER: _ClassVar[int]
    VIEW_TEXT_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    number: str
    view: View
    view_text: str
    description: str
    def __init__(self, number: _Optional[str] = ..., view: _Optional[_Union[View, str]] = ..., view_text: _Optional[str] = ..., description: _Optional[str] = ...) -> None: ...

class DrawingSheet(_message.Message):
    __slots__ = ("number", "file_name", "image_uri", "figure_numbers", "mapping", "regions")
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    FILE_NAME_FIELD_NUMBER: _ClassVar[int]
    IMAGE_URI_FIELD_NUMBER: _ClassVar[int]
    FIGURE_NUMBERS_FIELD_NUMBER: _ClassVar[int]
    MAPPING_FIELD_NUMBER: _ClassVar[int]
    REGIONS_FIELD_NUMBER: _ClassVar[int]
    number: int
    file_name: str
    image_uri: str
    figure_numbers: _containers.RepeatedScalarFieldContainer[str]
    mapping: SheetFigureMapping
    regions: _containers.RepeatedCompositeFieldContainer[FigureRegion]
    def __init__(self, number: _Optional[int] = ..., file_name: _Optional[str] = ..., image_uri: _Optional[str] = ..., figure_numbers: _Optional[_Iterable[str]] = ..., mapping: _Optional[_Union[SheetFigureMapping, str]] = ..., regions: _Optional[_Iterable[_Union[FigureRegion, _Mapping]]] = ...) -> None: ...

class Region(_message.Message):
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

class FigureRegion(_message.Message):
    __slots__ = ("figure_number", "region")
    FIGURE_NUMBER_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    figure_number: str
    region: Region
    def __init__(self, figure_number: _Optional[str] = ..., region: _Optional[_Union[Region, _Mapping]] = ...) -> None: ...

class Citation(_message.Message):
    __slots__ = ("country", "doc_number", "kind", "date", "name", "category", "text")
    COUNTRY_FIELD_NUMBER: _ClassVar[int]
    DOC_NUMBER_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    DATE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    country: str
    doc_number: str
    kind: str
    date: int
    name: str
    category: CitationCategory
    text: str
    def __init__(self, country: _Optional[str] = ..., doc_number: _Optional[str] = ..., kind: _Optional[str] = ..., date: _Optional[int] = ..., name: _Optional[str] = ..., category: _Optional[_Union[CitationCategory, str]] = ..., text: _Optional[str] = ...) -> None: ...

class Grant(_message.Message):
    __slots__ = ("patent_number", "kind", "title", "grant_date", "locarno", "uspc", "claim", "figures", "sheets", "drawing_notes", "dtd_version", "source", "citations")
    PATENT_NUMBER_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    GRANT_DATE_FIELD_NUMBER: _ClassVar[int]
    LOCARNO_FIELD_NUMBER: _ClassVar[int]
    USPC_FIELD_NUMBER: _ClassVar[int]
    CLAIM_FIELD_NUMBER: _ClassVar[int]
    FIGURES_FIELD_NUMBER: _ClassVar[int]
    SHEETS_FIELD_NUMBER: _ClassVar[int]
    DRAWING_NOTES_FIELD_NUMBER: _ClassVar[int]
    DTD_VERSION_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    CITATIONS_FIELD_NUMBER: _ClassVar[int]
    patent_number: str
    kind: str
    title: str
    grant_date: int
    locarno: LocarnoClass
    uspc: _containers.RepeatedCompositeFieldContainer[UspcClass]
    claim: str
    figures: _containers.RepeatedCompositeFieldContainer[Figure]
    sheets: _containers.RepeatedCompositeFieldContainer[DrawingSheet]
    drawing_notes: _containers.RepeatedScalarFieldContainer[str]
    dtd_version: str
    source: str
    citations: _containers.RepeatedCompositeFieldContainer[Citation]
    def __init__(self, patent_number: _Optional[str] = ..., kind: _Optional[str] = ..., title: _Optional[str] = ..., grant_date: _Optional[int] = ..., locarno: _Optional[_Union[LocarnoClass, _Mapping]] = ..., uspc: _Optional[_Iterable[_Union[UspcClass, _Mapping]]] = ..., claim: _Optional[str] = ..., figures: _Optional[_Iterable[_Union[Figure, _Mapping]]] = ..., sheets: _Optional[_Iterable[_Union[DrawingSheet, _Mapping]]] = ..., drawing_notes: _Optional[_Iterable[str]] = ..., dtd_version: _Optional[str] = ..., source: _Optional[str] = ..., citations: _Optional[_Iterable[_Union[Citation, _Mapping]]] = ...) -> None: ...

class GrantEvent(_message.Message):
    __slots__ = ("schema_version", "grant", "published_unix_ms", "bundle")
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    GRANT_FIELD_NUMBER: _ClassVar[int]
    PUBLISHED_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_FIELD_NUMBER: _ClassVar[int]
    schema_version: int
    grant: Grant
    published_unix_ms: int
    bundle: str
    def __init__(self, schema_version: _Optional[int] = ..., grant: _Optional[_Union[Grant, _Mapping]] = ..., published_unix_ms: _Optional[int] = ..., bundle: _Optional[str] = ...) -> None: ...

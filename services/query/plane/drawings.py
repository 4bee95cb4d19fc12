"""What the query service serves besides vectors: stored grant records and rendered drawings
from the image store. One object, shared by the gRPC servicer and the web app."""

from __future__ import annotations

from dataclasses import dataclass

from patentclip.drawings.imagestore import LocalImageStore
from patentclip.drawings.render import DrawingRenderer, RenderedDrawing
from patentclip.errors import NotFoundError, UnavailableError
from patentclip.grants.model import Grant


@dataclass(frozen=True)
class CitationLinks:
    """Where a patent's citations lead in this corpus: the cited US patents it holds (in the
    order cited) and the stored grants citing the patent, with how they marked it."""

    in_corpus: tuple[str, ...] = ()
    cited_by: tuple[tuple[str, str], ...] = ()  # (citing patent, category)


@dataclass(frozen=True)
class StoredDrawings:
    """The image store (None when the service has none) and its drawing renderer."""

    images: LocalImageStore | None
    renderer: DrawingRenderer | None

    def grant(self, patent: str) -> Grant | None:
        """The stored Grant record, if the image store has one (else None)."""
        if self.images is None:
            return None
        try:
            return self.images.get_grant(patent)
        except NotFoundError:
            return None

    def citation_links(self, patent: str, grant: Grant | None) -> CitationLinks:
        """The corpus side of a patent's citations (empty without an image store)."""
        if self.images is None:
            return CitationLinks()
        cited = dict.fromkeys(c.us_patent for c in (grant.citations if grant else ())
                              if c.us_patent)
        return CitationLinks(tuple(p for p in cited if self.images.has_grant(p)),
                             tuple(self.images.cited_by(patent)))

    def render(self, uri: str, size: str) -> RenderedDrawing:
        """A stored sheet as PNG; UnavailableError, saying why, without an image store."""
        if self.renderer is None:
            raise UnavailableError("drawings are not served: this query service has no image "
                                   "store (set PATENTCLIP_IMAGES_DIR)")
        return self.renderer.render(uri, size)

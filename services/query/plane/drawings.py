"""What the query service serves besides vectors: stored grant records and rendered drawings
from the image store. One object, shared by the gRPC servicer and the web app."""

from __future__ import annotations

from dataclasses import dataclass

from patentclip.drawings.imagestore import LocalImageStore
from patentclip.drawings.render import DrawingRenderer, RenderedDrawing
from patentclip.errors import NotFoundError, UnavailableError
from patentclip.grants.model import Grant


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

    def render(self, uri: str, size: str) -> RenderedDrawing:
        """A stored sheet as PNG; UnavailableError, saying why, without an image store."""
        if self.renderer is None:
            raise UnavailableError("drawings are not served: this query service has no image "
                                   "store (set PATENTCLIP_IMAGES_DIR)")
        return self.renderer.render(uri, size)

"""The one paging token of both transports: gRPC's ``options.page_token`` and the web API's
``page_token``. Opaque to clients; it binds the next page's offset to the model version
that ranked the results, so a page is never joined to another model's ranking. Where the
next page starts is the core's rule (``SearchRequest.next_offset``)."""

from __future__ import annotations

import base64
import re

from patentclip.errors import InvalidQueryError

MAX_TOKEN_CHARS = 512  # ours are about 100; a longer one is no token of ours


def token(offset: int, model_version: str) -> str:
    """The token of the page that starts at ``offset`` of ``model_version``'s ranking."""
    return base64.urlsafe_b64encode(f"v1:{offset}:{model_version}".encode()).decode()


def offset(page_token: str, model_version: str, field: str) -> int:
    """Where the page of ``page_token`` starts (0 for no token); InvalidQueryError naming
    ``field`` for a token this service did not issue, or one another model version
    ranked (after a rollout: search again from the first page)."""
    if not page_token:
        return 0
    if len(page_token) > MAX_TOKEN_CHARS:
        raise InvalidQueryError(f"{field}: not a token this service issued (over "
                                f"{MAX_TOKEN_CHARS} characters)")
    try:
        text = base64.urlsafe_b64decode(page_token.encode()).decode()
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidQueryError(f"{field}: not a token this service issued") from exc
    match = re.fullmatch(r"v1:(\d{1,9}):(.+)", text, re.ASCII)
    if not match:
        raise InvalidQueryError(f"{field}: not a token this service issued")
    if match.group(2) != model_version:
        raise InvalidQueryError(f"{field}: issued by model version {match.group(2)}, now "
                                f"serving {model_version}; search again from the first page")
    return int(match.group(1))

"""The live alias: which collection examiners search, and the atomic switch of a rollout.

Methods of PatentStore (``AliasOperations`` is its base), kept apart from rows and search
because they are what rollout, rollback, the embedder and the CLI share: the answer to
"which collection is live, if any" has one owner.
"""

from __future__ import annotations

import logging

from patentclip.errors import NotFoundError
from patentclip.store.schema import CollectionInfo

logger = logging.getLogger(__name__)


class AliasOperations:
    """Alias operations over PatentStore's ``_call``, ``client``, ``prefix`` and
    ``describe``."""

    @property
    def live_alias(self) -> str:
        return f"{self.prefix}_live"

    def live_collection(self) -> str:
        """The collection the live alias points at, or "" when there is no live alias yet."""
        try:
            return self.resolve(self.live_alias)
        except NotFoundError:
            return ""

    def live_info(self) -> CollectionInfo | None:
        """The live collection's model, dim and rows, or None when nothing is live yet."""
        try:
            return self.describe(self.live_alias)  # describe resolves the alias itself
        except NotFoundError:
            return None

    def set_live_if_missing(self, collection: str) -> str:
        """Point the live alias at ``collection`` if there is no live collection; returns
        the live collection (``collection`` when it was set here)."""
        live = self.live_collection()
        if not live:
            self.set_alias(self.live_alias, collection)
            logger.info("live alias %s -> %s", self.live_alias, collection)
        return live or collection

    def resolve(self, name_or_alias: str) -> str:
        """The collection a name or alias points to; NotFoundError if neither exists."""
        if name_or_alias in self._call(self.client.list_aliases).get("aliases", []):
            return self._call(self.client.describe_alias, name_or_alias)["collection_name"]
        if self._call(self.client.has_collection, name_or_alias):
            return name_or_alias
        raise NotFoundError(f"no collection or alias named {name_or_alias!r} at {self.uri}")

    def set_alias(self, alias: str, collection: str) -> None:
        """Point ``alias`` at ``collection`` (atomic switch if it already exists)."""
        if alias in self._call(self.client.list_aliases).get("aliases", []):
            self._call(self.client.alter_alias, collection, alias)
        else:
            self._call(self.client.create_alias, collection, alias)

    def drop_alias(self, alias: str) -> None:
        if alias in self._call(self.client.list_aliases).get("aliases", []):
            self._call(self.client.drop_alias, alias)

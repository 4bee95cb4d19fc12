"""Ingestion: grant sheets to stored rows (``sheets``) and a bundle into the store
(``indexer``)."""

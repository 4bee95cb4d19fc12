"""The embedding microservice: grants topic -> open_clip -> Milvus.

Run it with ``python -m services.embedder`` or ``patentclip serve embedder``.
"""

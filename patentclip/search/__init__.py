"""Search: the engine and its query values (``engine``), ranking and fusion (``ranking``),
batching of concurrent queries (``batching``), the bound on work in flight
(``admission``) and the BM25 caption collection (``captions``)."""

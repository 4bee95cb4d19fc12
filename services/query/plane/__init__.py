"""The query service's data plane, free of transports: the live snapshot of encoder,
engine and collection, hot-swapped (``live``), and the stored drawings and grant records
(``drawings``). Both transports serve from it."""

"""The query service's HTTP side: the examiner web app and the embedding provider, one ASGI
app (FastAPI) on uvicorn in the query process."""

"""PatentCLIP Search core: grant parsing, drawing preprocessing, encoder, vector store.

The core knows nothing of transport: it imports no gRPC, Kafka or service code.
"""

__version__ = "0.1.0"

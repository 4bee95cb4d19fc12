"""The gRPC transport: the PatentSearch servicer, protobuf conversion, the interceptors
(error answers, metrics, tokens) and server reflection."""

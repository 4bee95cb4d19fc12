"""Generated protobuf code for the patentclip.v1 API (``make proto``; never edit by hand).

The ``*_pb2_grpc`` modules import grpc; only services import them, never the core.
"""

"""Server reflection under both names clients ask for: ``grpc.reflection.v1`` (current
grpcurl, buf curl, Postman and grpc-js tools try it first) and ``grpc.reflection.v1alpha``.

The pinned grpcio-reflection (1.85) implements only v1alpha. The two protocols are the same
messages with the same field numbers under another package name, so v1 is served by the
same servicer with the v1alpha (de)serializers registered under the v1 service name.
"""

from __future__ import annotations

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_reflection.v1alpha import reflection
from grpc_reflection.v1alpha import reflection_pb2 as v1alpha_pb2

V1_SERVICE_NAME = "grpc.reflection.v1.ServerReflection"
V1_FILE = "grpc/reflection/v1/reflection.proto"
SERVICE_NAMES = (V1_SERVICE_NAME, reflection.SERVICE_NAME)


def _add_v1_descriptor() -> None:
    """Put grpc/reflection/v1/reflection.proto into the default pool: v1alpha's file under
    the v1 package. Listing tools (buf curl, grpcurl) ask reflection for the file of every
    service it lists, this one included, and give up when it is missing."""
    pool = descriptor_pool.Default()
    try:
        pool.FindFileByName(V1_FILE)
        return
    except KeyError:
        pass
    proto = descriptor_pb2.FileDescriptorProto()
    v1alpha_pb2.DESCRIPTOR.CopyToProto(proto)
    proto.name, proto.package = V1_FILE, "grpc.reflection.v1"
    old = ".grpc.reflection.v1alpha."
    for message in proto.message_type:
        for f in message.field:
            if f.type_name:
                f.type_name = f.type_name.replace(old, ".grpc.reflection.v1.")
    for service in proto.service:
        for method in service.method:
            method.input_type = method.input_type.replace(old, ".grpc.reflection.v1.")
            method.output_type = method.output_type.replace(old, ".grpc.reflection.v1.")
    pool.Add(proto)


def enable_reflection(service_names: tuple[str, ...], server: grpc.Server) -> None:
    """Serve reflection of ``service_names`` (plus both reflection services) on ``server``."""
    _add_v1_descriptor()
    names = (*service_names, *SERVICE_NAMES)
    servicer = reflection.ReflectionServicer(names)
    handler = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=v1alpha_pb2.ServerReflectionRequest.FromString,
        response_serializer=v1alpha_pb2.ServerReflectionResponse.SerializeToString)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        V1_SERVICE_NAME, {"ServerReflectionInfo": handler}),))
    reflection.enable_server_reflection(names, server)

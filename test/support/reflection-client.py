"""An independent gRPC server-reflection client for the tests: Python's grpcio (C-core) and the
protobuf library's own DescriptorPool (Debian's python3-grpcio and python3-protobuf).

It speaks the reflection protocol itself (grpc_reflection may not be installed): the request and
response messages are described below from grpc/reflection/v1/reflection.proto by field number,
so nothing of sluice's is used to encode or decode them. Then it does what a tool such as grpcurl
does with the answers: it links the returned FileDescriptorProtos into a DescriptorPool that
already holds the standard google/protobuf/*.proto files (copied from the protobuf library's
default pool), adding only the files the pool does not have, and calls ShouldRateLimit with
messages built from the linked descriptors.

usage: reflection-client.py HOST:PORT v1|v1alpha DOMAIN KEY=VALUE...
prints one JSON object (see main()).
"""

import json
import sys

import grpc
from google.protobuf import (
    any_pb2,
    descriptor_pb2,
    descriptor_pool,
    duration_pb2,
    empty_pb2,
    field_mask_pb2,
    json_format,
    message_factory,
    struct_pb2,
    timestamp_pb2,
    wrappers_pb2,
)

RLS_FILE = "envoy/service/ratelimit/v3/rls.proto"
RLS_SERVICE = "envoy.service.ratelimit.v3.RateLimitService"
WELL_KNOWN = [any_pb2, duration_pb2, empty_pb2, field_mask_pb2, struct_pb2, timestamp_pb2, wrappers_pb2]

F = descriptor_pb2.FieldDescriptorProto


def message_class(pool, full_name):
    descriptor = pool.FindMessageTypeByName(full_name)
    if hasattr(message_factory, "GetMessageClass"):  # protobuf >= 4.22
        return message_factory.GetMessageClass(descriptor)
    return message_factory.MessageFactory(pool).GetPrototype(descriptor)


def reflection_classes(version):
    """ServerReflectionRequest / ServerReflectionResponse of grpc.reflection.<version>, by hand."""
    package = "grpc.reflection." + version
    file = descriptor_pb2.FileDescriptorProto(name="client-side/reflection.proto", package=package, syntax="proto3")

    def message(name, fields, oneof=None):
        m = file.message_type.add(name=name)
        if oneof:
            m.oneof_decl.add(name=oneof)
        for field_name, number, kind, label, type_name, in_oneof in fields:
            f = m.field.add(name=field_name, number=number, type=kind, label=label)
            if type_name:
                f.type_name = "." + package + "." + type_name
            if in_oneof:
                f.oneof_index = 0

    opt, rep = F.LABEL_OPTIONAL, F.LABEL_REPEATED
    message("ServerReflectionRequest", [
        ("host", 1, F.TYPE_STRING, opt, None, False),
        ("file_by_filename", 3, F.TYPE_STRING, opt, None, True),
        ("file_containing_symbol", 4, F.TYPE_STRING, opt, None, True),
        ("list_services", 7, F.TYPE_STRING, opt, None, True),
    ], oneof="message_request")
    message("FileDescriptorResponse", [("file_descriptor_proto", 1, F.TYPE_BYTES, rep, None, False)])
    message("ServiceResponse", [("name", 1, F.TYPE_STRING, opt, None, False)])
    message("ListServiceResponse", [("service", 1, F.TYPE_MESSAGE, rep, "ServiceResponse", False)])
    message("ErrorResponse", [
        ("error_code", 1, F.TYPE_INT32, opt, None, False),
        ("error_message", 2, F.TYPE_STRING, opt, None, False),
    ])
    message("ServerReflectionResponse", [
        ("valid_host", 1, F.TYPE_STRING, opt, None, False),
        ("original_request", 2, F.TYPE_MESSAGE, opt, "ServerReflectionRequest", False),
        ("file_descriptor_response", 4, F.TYPE_MESSAGE, opt, "FileDescriptorResponse", True),
        ("list_services_response", 6, F.TYPE_MESSAGE, opt, "ListServiceResponse", True),
        ("error_response", 7, F.TYPE_MESSAGE, opt, "ErrorResponse", True),
    ], oneof="message_response")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return (message_class(pool, package + ".ServerReflectionRequest"),
            message_class(pool, package + ".ServerReflectionResponse"))


class Reflection:
    def __init__(self, channel, version):
        self.request_class, self.response_class = reflection_classes(version)
        self.call = channel.stream_stream(
            "/grpc.reflection.%s.ServerReflection/ServerReflectionInfo" % version,
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=self.response_class.FromString,
        )

    def ask(self, **request):
        """One request on its own stream; returns (response, None) or (None, {code, message})."""
        response = next(self.call(iter([self.request_class(**request)]), timeout=10))
        if response.HasField("error_response"):
            return None, {"code": response.error_response.error_code, "message": response.error_response.error_message}
        return response, None

    def files(self, **request):
        response, error = self.ask(**request)
        if error:
            return None, error
        return [descriptor_pb2.FileDescriptorProto.FromString(b) for b in response.file_descriptor_response.file_descriptor_proto], None


def pool_with_well_known_types():
    pool = descriptor_pool.DescriptorPool()
    for module in WELL_KNOWN:
        proto = descriptor_pb2.FileDescriptorProto()
        module.DESCRIPTOR.CopyToProto(proto)
        pool.Add(proto)
    return pool


def has_file(pool, name):
    try:
        pool.FindFileByName(name)
        return True
    except KeyError:
        return False


def link(pool, files, skip_known=True):
    """Adds `files` (and their dependencies among them) to `pool` as a reflection-backed pool does:
    a file the pool already has by name is not added again. Returns what was added / reused; raises
    on a file that does not link (a missing dependency, a symbol defined twice, a bad reference).
    With skip_known=False every file is added, as a naive client does: the pool accepts a file it
    already has only when the two are identical."""
    by_name = {f.name: f for f in files}
    added, reused = [], []

    def add(name, chain):
        if name in added or name in reused:
            return
        if has_file(pool, name) and (skip_known or name not in by_name):
            reused.append(name)
            if name in by_name:
                check_same_symbols(pool.FindFileByName(name), by_name[name])
            return
        if name not in by_name:
            raise LookupError("%s needs %s, which the server did not send" % (chain[-1] if chain else "?", name))
        for dependency in by_name[name].dependency:
            add(dependency, chain + [name])
        pool.Add(by_name[name])
        added.append(name)

    for f in files:
        add(f.name, [])
    return added, reused


def check_same_symbols(existing, served):
    """A served file the client already has must declare the same messages with the same fields."""
    for message in served.message_type:
        known = existing.message_types_by_name.get(message.name)
        if known is None:
            raise LookupError("%s: served message %s is not in the client's copy" % (served.name, message.name))
        for field in message.field:
            k = known.fields_by_name.get(field.name)
            if k is None or k.number != field.number or k.type != field.type:
                raise LookupError("%s: %s.%s differs from the client's copy" % (served.name, message.name, field.name))


def describe_service(pool, name):
    service = pool.FindServiceByName(name)
    return {
        "file": service.file.name,
        "methods": {m.name: [m.input_type.full_name, m.output_type.full_name] for m in service.methods},
    }


def main():
    target, version, domain = sys.argv[1], sys.argv[2], sys.argv[3]
    entries = [dict(zip(("key", "value"), kv.split("=", 1))) for kv in sys.argv[4:]]
    out = {}
    with grpc.insecure_channel(target) as channel:
        reflection = Reflection(channel, version)

        response, error = reflection.ask(list_services="")
        out["services"] = sorted(s.name for s in response.list_services_response.service) if response else error

        files, error = reflection.files(file_by_filename=RLS_FILE)
        out["by_filename"] = error or {f.name: list(f.dependency) for f in files}
        files_by_symbol, error = reflection.files(file_containing_symbol=RLS_SERVICE)
        out["by_symbol"] = error or [f.name for f in files_by_symbol]
        _, out["unknown_file"] = reflection.files(file_by_filename="no/such/file.proto")
        _, out["unknown_symbol"] = reflection.files(file_containing_symbol="no.such.Service")

        # A client that already holds the well-known types (as every protobuf runtime does), and
        # one that holds nothing and takes the server's copies.
        cases = [("by_filename", files, pool_with_well_known_types), ("by_symbol", files_by_symbol, pool_with_well_known_types),
                 ("by_symbol_empty_pool", files_by_symbol, descriptor_pool.DescriptorPool),
                 ("by_symbol_add_all", files_by_symbol, pool_with_well_known_types)]
        # Every listed service resolves by its name too (health, reflection itself).
        for name in out["services"] if isinstance(out["services"], list) else []:
            received, error = reflection.files(file_containing_symbol=name)
            cases.append(("service " + name, received, pool_with_well_known_types))
        linked = {}
        for how, received, new_pool in cases:
            pool = new_pool()
            try:
                added, reused = link(pool, received or [], skip_known=how != "by_symbol_add_all")
                service = RLS_SERVICE if not how.startswith("service ") else how[len("service "):]
                linked[how] = {"added": added, "reused": sorted(reused), "service": describe_service(pool, service)}
            except Exception as err:  # noqa: BLE001 - the error is the answer
                linked[how] = {"error": "%s: %s" % (type(err).__name__, err)}
        out["linked"] = linked

        # And the descriptors are good enough to talk to the service.
        if "error" not in linked["by_symbol"]:
            pool = pool_with_well_known_types()
            link(pool, files_by_symbol)
            service = pool.FindServiceByName(RLS_SERVICE)
            method = service.methods_by_name["ShouldRateLimit"]
            request_class = message_class(pool, method.input_type.full_name)
            response_class = message_class(pool, method.output_type.full_name)
            request = json_format.ParseDict({"domain": domain, "descriptors": [{"entries": entries}]}, request_class())
            call = channel.unary_unary(
                "/%s/%s" % (service.full_name, method.name),
                request_serializer=lambda m: m.SerializeToString(),
                response_deserializer=response_class.FromString,
            )
            out["should_rate_limit"] = json_format.MessageToDict(call(request, timeout=10), preserving_proto_field_name=True)
    print(json.dumps(out, sort_keys=True))


if __name__ == "__main__":
    main()

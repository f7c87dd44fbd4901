"""An independent gRPC client for the tests: Python's grpcio (C-core, Debian's python3-grpcio).

Sends the same serialized ShouldRateLimit request N times at once to HOST:PORT and prints one JSON
line per call: {"code": <grpc status name>, "details": <str>, "response": <hex of the reply>}.
The caller serializes the request and decodes the replies (with sluice's own protos), so this
script needs no generated code: it is only a second HTTP/2 + gRPC implementation.

usage: grpcio-burst.py HOST:PORT REQUEST_HEX COUNT TIMEOUT_SECONDS
"""

import json
import sys

import grpc

METHOD = "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit"


def main() -> None:
    target, request_hex, count, timeout = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    request = bytes.fromhex(request_hex)
    with grpc.insecure_channel(target) as channel:
        call = channel.unary_unary(METHOD, request_serializer=None, response_deserializer=None)
        futures = [call.future(request, timeout=timeout) for _ in range(count)]
        for future in futures:
            try:
                reply = future.result()
                print(json.dumps({"code": "OK", "details": "", "response": reply.hex()}))
            except grpc.RpcError as err:
                print(json.dumps({"code": err.code().name, "details": err.details() or "", "response": ""}))


if __name__ == "__main__":
    main()

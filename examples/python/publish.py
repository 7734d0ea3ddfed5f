#!/usr/bin/env python3
"""Calls the fabric gateway's /fabric.v1.PublishService/Publish with a .creds file and prints the reply as
JSON. The request and reply are encoded by hand (a few protobuf fields), so no generated code is needed:

    python3 publish.py --addr 127.0.0.1:50051 --creds fleet-dev-service.creds \\
        --subject telemetry.plant-a.d1.temp --data '{"value":1}'

With --ca the channel uses TLS; without it, a plaintext channel to a local gateway (grpcio sends call
credentials only over TLS or local connections).
"""

import argparse
import json
import os
import sys

import grpc

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fabric_auth import FabricAuth  # noqa: E402

METHOD = "/fabric.v1.PublishService/Publish"


def _varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number, value):
    """A length-delimited field (wire type 2); empty values are left out, as proto3 does."""
    return _varint(number << 3 | 2) + _varint(len(value)) + value if value else b""


def encode_request(subject, data, idempotency_key):
    """fabric.v1.PublishRequest: subject = 1, data = 2, headers = 3 (none here), idempotency_key = 4."""
    return _field(1, subject.encode()) + _field(2, data) + _field(4, idempotency_key.encode())


def _read_varint(buf, i):
    shift = result = 0
    while True:
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return result, i


def decode_response(buf):
    """fabric.v1.PublishResponse: stream = 1, sequence = 2, duplicate = 3."""
    out = {"stream": "", "sequence": 0, "duplicate": False}
    i = 0
    while i < len(buf):
        key, i = _read_varint(buf, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _read_varint(buf, i)
            if number == 2:
                out["sequence"] = value
            elif number == 3:
                out["duplicate"] = bool(value)
        elif wire == 2:
            length, i = _read_varint(buf, i)
            if number == 1:
                out["stream"] = buf[i : i + length].decode()
            i += length
        else:
            raise ValueError(f"unexpected wire type {wire}")
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--addr", default="127.0.0.1:50051", help="the gateway's host:port")
    p.add_argument("--creds", required=True, help="the fabric credential (.creds file)")
    p.add_argument("--subject", default="telemetry.plant-a.d1.temp")
    p.add_argument("--data", default='{"value":1}', help="the message body")
    p.add_argument("--key", default="", help="an idempotency key (stored once however often it is sent)")
    p.add_argument("--ca", help="a CA certificate (PEM): connect with TLS")
    p.add_argument("--timeout", type=float, default=10.0, help="the call's deadline in seconds")
    p.add_argument("--count", type=int, default=1, help="publish this many times on the one channel")
    args = p.parse_args()

    # the plugin runs for every call attempt: each gets a fresh timestamp, nonce and signature
    call_creds = grpc.metadata_call_credentials(FabricAuth.from_file(args.creds), name="fabric")
    if args.ca:
        with open(args.ca, "rb") as f:
            channel_creds = grpc.ssl_channel_credentials(root_certificates=f.read())
    else:
        channel_creds = grpc.local_channel_credentials(grpc.LocalConnectionType.LOCAL_TCP)
    options = []
    if args.key:  # with an idempotency key a retry cannot store twice: let grpcio retry UNAVAILABLE
        policy = {"maxAttempts": 3, "initialBackoff": "0.2s", "maxBackoff": "2s", "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"]}
        config = {"methodConfig": [{"name": [{"service": "fabric.v1.PublishService"}], "retryPolicy": policy}]}
        options = [("grpc.enable_retries", 1), ("grpc.service_config", json.dumps(config))]
    with grpc.secure_channel(args.addr, grpc.composite_channel_credentials(channel_creds, call_creds), options) as channel:
        publish = channel.unary_unary(METHOD, request_serializer=None, response_deserializer=None)
        for _ in range(args.count):
            try:
                reply = publish(encode_request(args.subject, args.data.encode(), args.key), timeout=args.timeout)
            except grpc.RpcError as err:
                code = err.code()
                print(f"grpc error code={code.value[0]} ({code.name}): {err.details()}", file=sys.stderr)
                return 1
            print(json.dumps(decode_response(reply)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Authenticates gRPC calls to the fabric gateway with a fabric credential (a NATS .creds file).

Every call carries four metadata headers: ``fabric-jwt`` (the user JWT), ``fabric-ts`` (epoch ms),
``fabric-nonce`` (fresh, accepted once) and ``fabric-sig``: the unpadded base64url Ed25519 signature, made
with the creds' NKey seed, over ``"<method path>\\n<ts>\\n<nonce>"`` (the path with its leading slash, e.g.
``/fabric.v1.PublishService/Publish``). grpcio calls the plugin for every call attempt (retries included),
so the headers are made fresh each time.

    creds = grpc.metadata_call_credentials(FabricAuth.from_file("service.creds"))
    channel = grpc.secure_channel(addr, grpc.composite_channel_credentials(grpc.ssl_channel_credentials(ca), creds))
"""

import base64
import secrets
import time

import grpc

try:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    def _signer(seed):
        return Ed25519PrivateKey.from_private_bytes(seed).sign

except ImportError:  # PyNaCl instead
    import nacl.signing

    def _signer(seed):
        key = nacl.signing.SigningKey(seed)
        return lambda data: key.sign(data).signature


def _block(text, marker):
    """The first non-empty line after the line holding ``marker`` (a .creds file's JWT or seed)."""
    lines = iter(text.splitlines())
    for line in lines:
        if marker in line:
            for value in lines:
                value = value.strip()
                if value:
                    return "" if value.startswith("---") else value
    return ""


def _crc16(data):
    crc = 0
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


def decode_user_seed(seed):
    """The 32-byte Ed25519 seed of an encoded user seed ("SU..."): base32 (RFC 4648, no padding) of two
    prefix bytes ('S' and the kind 'U'), the seed and a little-endian CRC16 (XMODEM) of what precedes it."""
    seed = seed.strip()
    try:
        raw = base64.b32decode(seed + "=" * (-len(seed) % 8))
    except ValueError as err:
        raise ValueError("the seed is not base32") from err
    if len(raw) != 36:
        raise ValueError("the seed has the wrong length")
    body, crc = raw[:34], raw[34] | raw[35] << 8
    if _crc16(body) != crc:
        raise ValueError("the seed has a bad checksum")
    if body[0] & 0xF8 != 18 << 3:  # 'S'
        raise ValueError("not a seed (it must start with S)")
    if ((body[0] & 7) << 5 | (body[1] & 0xF8) >> 3) != 20 << 3:  # 'U'
        raise ValueError("not a user seed (it must start with SU)")
    return bytes(body[2:])


def signed_payload(method, ts, nonce):
    """What the NKey signs: the full method path, the timestamp and the nonce, newline-separated."""
    return f"{method}\n{ts}\n{nonce}".encode("utf-8")


def method_path(context):
    """The full method path of a call from grpcio's AuthMetadataContext. ``service_url`` is
    ``<scheme>://<host>[:port]/<package.Service>`` (grpcio 1.51 leaves the scheme empty on local and
    plaintext channels: ``://127.0.0.1:50051/fabric.v1.PublishService``) and ``method_name`` the method."""
    url = context.service_url
    rest = url.split("://", 1)[1] if "://" in url else url
    slash = rest.find("/")
    if slash < 0 or not context.method_name:
        raise ValueError(f"cannot tell the method path from service_url {url!r}, method_name {context.method_name!r}")
    return f"{rest[slash:].rstrip('/')}/{context.method_name}"


class FabricAuth(grpc.AuthMetadataPlugin):
    """A grpc.AuthMetadataPlugin signing every call with the user NKey of a .creds file."""

    def __init__(self, creds_text):
        self._jwt = _block(creds_text, "BEGIN NATS USER JWT")
        seed = _block(creds_text, "BEGIN USER NKEY SEED")
        if not self._jwt:
            raise ValueError("the creds file has no JWT block")
        if not seed:
            raise ValueError("the creds file has no seed block")
        self._sign = _signer(decode_user_seed(seed))

    @classmethod
    def from_file(cls, path):
        with open(path, encoding="utf-8") as f:
            return cls(f.read())

    def metadata(self, method, now_ms=None):
        """One call's headers for ``method`` (the full path, e.g. ``/fabric.v1.PublishService/Publish``)."""
        ts = str(int(time.time() * 1000) if now_ms is None else now_ms)
        nonce = secrets.token_urlsafe(24)  # 32 characters
        sig = base64.urlsafe_b64encode(self._sign(signed_payload(method, ts, nonce))).rstrip(b"=").decode("ascii")
        return (("fabric-jwt", self._jwt), ("fabric-ts", ts), ("fabric-nonce", nonce), ("fabric-sig", sig))

    def __call__(self, context, callback):
        try:
            callback(self.metadata(method_path(context)), None)
        except Exception as err:  # grpcio fails the call with this error
            callback((), err)

"""The kubelet pod-resources API (``v1.PodResourcesLister/List``) over its unix socket.

Only the messages needed to map device IDs to containers are encoded here, by hand, in the
protobuf wire format (field numbers from the kubelet's ``api.proto``), so no generated code or
protobuf runtime is needed beside grpcio::

    ListPodResourcesResponse { repeated PodResources pod_resources = 1; }
    PodResources { string name = 1; string namespace = 2; repeated ContainerResources containers = 3; }
    ContainerResources { string name = 1; repeated ContainerDevices devices = 2; ... }
    ContainerDevices { string resource_name = 1; repeated string device_ids = 2; ... }

Unknown fields are skipped, as protobuf requires; a malformed message raises ``ValueError``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

LIST_METHOD = "/v1.PodResourcesLister/List"
DEFAULT_SOCKET = "/var/lib/kubelet/pod-resources/kubelet.sock"


@dataclass(frozen=True)
class DeviceAssignment:
    """One device ID of a resource, assigned to a container of a pod."""

    namespace: str
    pod: str
    container: str
    resource: str
    device_id: str


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def fields(data: bytes) -> Iterator[tuple[int, int | bytes]]:
    """(field number, value) pairs of one message: ints for varints, bytes for length-delimited."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise ValueError("field number 0")
        if wire == 0:
            value, pos = _varint(data, pos)
            yield number, value
        elif wire == 2:
            length, pos = _varint(data, pos)
            if pos + length > len(data):
                raise ValueError("truncated length-delimited field")
            yield number, data[pos : pos + length]
            pos += length
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        if pos > len(data):
            raise ValueError("truncated fixed-size field")


def _text(value: int | bytes) -> str:
    if not isinstance(value, bytes):
        raise ValueError("expected a string, got a varint")
    return value.decode("utf-8", "replace")


def _message(value: int | bytes) -> bytes:
    if not isinstance(value, bytes):
        raise ValueError("expected a message, got a varint")
    return value


def decode_list_response(data: bytes) -> list[DeviceAssignment]:
    """Every (pod, container, resource, device ID) in a ListPodResourcesResponse."""
    out: list[DeviceAssignment] = []
    for number, pod_bytes in fields(data):
        if number != 1:
            continue
        name = namespace = ""
        containers: list[bytes] = []
        for n, v in fields(_message(pod_bytes)):
            if n == 1:
                name = _text(v)
            elif n == 2:
                namespace = _text(v)
            elif n == 3:
                containers.append(_message(v))
        for container_bytes in containers:
            container = ""
            devices: list[bytes] = []
            for n, v in fields(container_bytes):
                if n == 1:
                    container = _text(v)
                elif n == 2:
                    devices.append(_message(v))
            for device_bytes in devices:
                resource = ""
                ids: list[str] = []
                for n, v in fields(device_bytes):
                    if n == 1:
                        resource = _text(v)
                    elif n == 2:
                        ids.append(_text(v))
                out += [DeviceAssignment(namespace, name, container, resource, i) for i in ids]
    return out


# --- encoding, for the fake kubelet in tests and the demo --------------------------------


def _key(number: int, wire: int) -> bytes:
    return _encode_varint(number << 3 | wire)


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _bytes_field(number: int, value: bytes) -> bytes:
    return _key(number, 2) + _encode_varint(len(value)) + value


def encode_list_response(assignments: Sequence[DeviceAssignment]) -> bytes:
    """The inverse of ``decode_list_response`` (pods and containers grouped in first-seen order)."""
    pods: dict[tuple[str, str], dict[str, dict[str, list[str]]]] = {}
    for a in assignments:
        containers = pods.setdefault((a.namespace, a.pod), {})
        containers.setdefault(a.container, {}).setdefault(a.resource, []).append(a.device_id)
    out = b""
    for (namespace, pod), containers in pods.items():
        body = _bytes_field(1, pod.encode()) + _bytes_field(2, namespace.encode())
        for container, resources in containers.items():
            cbody = _bytes_field(1, container.encode())
            for resource, ids in resources.items():
                dbody = _bytes_field(1, resource.encode()) + b"".join(
                    _bytes_field(2, i.encode()) for i in ids
                )
                cbody += _bytes_field(2, dbody)
            body += _bytes_field(3, cbody)
        out += _bytes_field(1, body)
    return out


async def list_assignments(socket_path: str, seconds: float) -> list[DeviceAssignment]:
    """Ask the kubelet which devices each container holds."""
    import grpc  # imported here: only nodes running Kubernetes need it

    async with grpc.aio.insecure_channel(f"unix://{socket_path}") as channel:
        call = channel.unary_unary(
            LIST_METHOD,
            request_serializer=lambda _request: b"",
            response_deserializer=lambda data: data,
        )
        data = await call(b"", timeout=max(seconds, 0.05))
    return decode_list_response(bytes(data))

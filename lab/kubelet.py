"""A fake kubelet pod-resources endpoint: ``v1.PodResourcesLister/List`` on a unix socket.

It serves whatever device assignments the test or demo sets, through real gRPC (grpcio), so
the exporter's client meets the same transport as on a node::

    kubelet = FakePodResources(Path("/tmp/x/kubelet.sock"))
    kubelet.assignments = [DeviceAssignment("ml", "llm-0", "train", "nvidia.com/gpu", uuid)]
    await kubelet.start(); ...; await kubelet.stop()

Setting ``raw`` replaces the encoded answer with arbitrary bytes (for malformed-input tests).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from powerplane.exporters.gpu.podresources import DeviceAssignment, encode_list_response


class FakePodResources:
    def __init__(self, socket_path: Path, assignments: list[DeviceAssignment] | None = None) -> None:
        self.socket_path = Path(socket_path)
        self.assignments = list(assignments or [])
        self.raw: bytes | None = None
        self.calls = 0
        self._server: Any = None

    def _list(self, _request: bytes, _context: Any) -> bytes:
        self.calls += 1
        return self.raw if self.raw is not None else encode_list_response(self.assignments)

    async def start(self) -> FakePodResources:
        import grpc

        server = grpc.aio.server()
        handler = grpc.method_handlers_generic_handler(
            "v1.PodResourcesLister",
            {
                "List": grpc.unary_unary_rpc_method_handler(
                    self._list, request_deserializer=lambda b: b, response_serializer=lambda b: b
                )
            },
        )
        server.add_generic_rpc_handlers((handler,))
        self.socket_path.parent.mkdir(parents=True, exist_ok=True)
        server.add_insecure_port(f"unix://{self.socket_path}")
        await server.start()
        self._server = server
        return self

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(None)
            self._server = None

"""Several embedded nats-servers routed to each other on loopback: one JetStream cluster."""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import Self

from orchestrator.embedded.nats_server import ClusterOptions, EmbeddedNats, find_nats_server
from orchestrator.embedded.process import free_ports


class EmbeddedNatsCluster:
    """``size`` embedded servers routed to each other on loopback: one JetStream cluster.

    Node ``i`` (1-based) lives in ``base_dir/n<i>`` and is named ``<name>-n<i>``; client,
    route ports and stores are distinct and kept across restarts of a node. ``start()``
    launches every stopped node first, then waits for each (JetStream answers only once a
    quorum has elected its meta leader). ``url`` is the comma-separated list of client URLs
    (the form ``NATS_URL`` takes in ``deploy/``), ``urls`` the same as a list.
    """

    def __init__(
        self,
        base_dir: Path | str,
        *,
        size: int = 3,
        name: str = "checkout",
        sync_interval: str | None = "always",
        binary: Path | str | None = None,
        start_timeout: float = 30.0,
    ) -> None:
        if size < 1:
            raise ValueError("a cluster needs at least one node")
        self.base_dir = Path(base_dir).resolve()
        self.name = name
        ports = free_ports(2 * size)
        client_ports, route_ports = ports[:size], tuple(ports[size:])
        found = Path(binary) if binary is not None else find_nats_server()
        self.nodes: tuple[EmbeddedNats, ...] = tuple(
            EmbeddedNats(
                self.base_dir / f"n{index}",
                port=client_ports[index - 1],
                sync_interval=sync_interval,
                binary=found,
                start_timeout=start_timeout,
                server_name=f"{name}-n{index}",
                cluster=ClusterOptions(name, route_ports[index - 1], route_ports),
            )
            for index in range(1, size + 1)
        )

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    @property
    def url(self) -> str:
        return ",".join(self.urls)

    def node(self, server_name: str) -> EmbeddedNats:
        """The node called ``server_name`` (as JetStream reports leaders and replicas)."""
        for node in self.nodes:
            if node.server_name == server_name:
                return node
        raise KeyError(server_name)

    def start(self) -> None:
        """Start every stopped node; return once each one's JetStream answers."""
        waiting = [node for node in self.nodes if not node.is_running()]
        try:
            for node in waiting:
                node.spawn()
            for node in waiting:
                node.wait_ready()
        except BaseException:
            self.kill()
            raise

    def stop(self, timeout: float = 10.0) -> None:
        for node in self.nodes:
            node.stop(timeout)

    def kill(self) -> None:
        for node in self.nodes:
            node.kill()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        running = sum(node.is_running() for node in self.nodes)
        return f"EmbeddedNatsCluster({self.name}, {running}/{len(self.nodes)} running)"

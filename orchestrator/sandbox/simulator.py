"""The base of every provider simulator: app, server, faults, webhooks, control routes.

A simulator is a stateful local HTTP server speaking one provider's API (PROVIDERS.md),
driven by the provider's real SDK or our client exactly as the real service would be.
A subclass adds the provider's routes (`add_routes`), renders errors in the provider's
shape (`error_response`), and implements the three drives and its stats. The base gives
every simulator the same control surface, outside the provider's API, under ``/_sim``::

    POST   /_sim/sessions/{id}/pay       drive to paid; sends the provider's signed webhook(s)
    POST   /_sim/sessions/{id}/fail      drive to failed (provider-specific meaning)
    POST   /_sim/sessions/{id}/expire    drive to expired, as if its expiry had passed
           body (optional JSON): {"delayed": bool, "background": bool, "echo_metadata": bool,
                                  "customer": {"name", "email", "phone", "address": {...}}}
    GET    /_sim/sessions/{id}           the provider's own object, for tests
    GET    /_sim/stats                   counters, e.g. {"sessions_created": 1, ...}
    GET    /_sim/faults                  the current `FaultPlan`
    POST   /_sim/faults                  change some fields of it (partial JSON)
    DELETE /_sim/faults                  reset to healthy
    GET    /_sim/webhooks                target URL and every delivery so far
    POST   /_sim/webhooks                {"url": "http://..."}: where webhooks go (null: nowhere)
    POST   /_sim/webhooks/{delivery_id}/redeliver   send one again, freshly signed

The same controls from Python: ``await sim.pay(id)``, ``sim.faults.set(error_next=2)``,
``sim.webhooks.url = ...``, ``sim.stats()``, ``sim.echo_metadata = False`` (webhooks echo
none of our metadata: every ``metadata`` object in their body is sent empty, as after a
dashboard edit or for a session opened elsewhere; ``{"echo_metadata": false}`` on one
drive does the same for that drive's webhooks). Faults apply to the provider routes only,
never to ``/_sim``. Lifecycle: ``async with StripeSimulator(...) as sim: sim.base_url``,
or ``await sim.start()`` / ``await sim.stop()``, inside the caller's running loop.

A subclass sets its own state first, then calls ``super().__init__``; the app is built
lazily on first use of `Simulator.app`.
"""

from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from contextvars import ContextVar
from functools import cached_property
from types import TracebackType
from typing import Annotated, Any, ClassVar, Self

from fastapi import APIRouter, Body, FastAPI, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.responses import Response

from orchestrator.errors import CheckoutError
from orchestrator.http.server import HttpServer
from orchestrator.sandbox.faults import CONTROL_PREFIX, FaultMiddleware, FaultPlan, Faults
from orchestrator.sandbox.webhooks import Delivery, RetryPolicy, Signer, WebhookSender

__all__ = [
    "Clock",
    "DriveAddress",
    "DriveCustomer",
    "DriveRequest",
    "DriveResult",
    "Simulator",
    "SimulatorError",
]

Clock = Callable[[], float]
"""Unix time in seconds; simulators take one so tests can move time."""

# One drive's ``echo_metadata: false``; a context variable, so concurrent drives and the
# background deliveries they start (which copy the context) each keep their own.
_DRIVE_ECHOES_METADATA: ContextVar[bool] = ContextVar("drive_echoes_metadata", default=True)


class SimulatorError(CheckoutError):
    """Answered with ``status`` in the provider's error shape (`Simulator.error_response`);
    ``provider_code`` is the provider's own error code, where it has one."""

    code = "simulator_error"

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        kind: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.provider_code = code
        self.param = param
        self.kind = kind


class DriveAddress(BaseModel):
    """A postal address as a payer types it on the hosted page (Stripe's field names)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    country: str = Field(min_length=2, max_length=2)
    city: str | None = None
    line1: str | None = None
    line2: str | None = None
    postal_code: str | None = None
    state: str | None = None


class DriveCustomer(BaseModel):
    """Who pays, as the payer would enter it; simulators fall back to their own defaults."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = None
    email: str | None = None
    phone: str | None = None
    address: DriveAddress | None = None


class DriveRequest(BaseModel):
    """Options of a ``/_sim/sessions/{id}/<drive>`` call."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    delayed: bool = False  # a delayed payment method (e.g. Stripe: completed unpaid first)
    background: bool = False  # answer before the webhooks are delivered
    customer: DriveCustomer | None = None  # the payer's details, where the provider collects them
    echo_metadata: bool = True  # False: this drive's webhooks carry empty metadata


class DriveResult(BaseModel):
    session: dict[str, Any]
    webhooks: list[dict[str, Any]]


class _WebhookEndpoint(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str | None


class Simulator(ABC):
    provider: ClassVar[str]

    def __init__(
        self,
        *,
        webhook_url: str | None = None,
        faults: Faults | None = None,
        port: int = 0,
        clock: Clock = time.time,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.faults = faults or Faults()
        self.clock = clock
        self.webhooks = WebhookSender(self.faults, url=webhook_url, retry=retry or RetryPolicy())
        self._host = "127.0.0.1"
        self._port = port
        self._server: HttpServer | None = None
        self.echo_metadata = True

    # --- what a provider simulator implements ---------------------------------------------

    @abstractmethod
    def add_routes(self, app: FastAPI) -> None:
        """Add the provider's API routes."""

    @abstractmethod
    def error_response(self, error: SimulatorError) -> Response:
        """Render an error in the provider's own shape."""

    @abstractmethod
    async def pay(self, session_id: str, drive: DriveRequest | None = None) -> DriveResult: ...

    @abstractmethod
    async def fail(self, session_id: str, drive: DriveRequest | None = None) -> DriveResult: ...

    @abstractmethod
    async def expire(self, session_id: str, drive: DriveRequest | None = None) -> DriveResult: ...

    @abstractmethod
    def describe(self, session_id: str) -> dict[str, Any]:
        """The provider's object for a session; raise `SimulatorError` 404 if unknown."""

    @abstractmethod
    def stats(self) -> dict[str, int]:
        """Provider counters, e.g. ``sessions_created``."""

    # --- shared machinery ----------------------------------------------------------------

    def all_stats(self) -> dict[str, int]:
        return {**self.stats(), **self.faults.counters(), **self.webhooks.counters()}

    async def emit(
        self, event_id: str, event_type: str, body: bytes, sign: Signer, *, background: bool
    ) -> Delivery:
        if not (self.echo_metadata and _DRIVE_ECHOES_METADATA.get()):
            body = _without_metadata(body)
        return await self.webhooks.send(event_id, event_type, body, sign, background=background)

    @cached_property
    def app(self) -> FastAPI:
        app = FastAPI(
            title=f"{self.provider} simulator", docs_url=None, redoc_url=None, openapi_url=None
        )
        app.add_exception_handler(SimulatorError, self._handle_error)
        app.include_router(self._control_router())
        self.add_routes(app)
        app.add_middleware(FaultMiddleware, faults=self.faults, error_response=self._injected_error)
        return app

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError(f"{self.provider} simulator not started")
        return self._server.base_url

    async def start(self) -> None:
        self.faults.rearm()
        server = HttpServer(self.app, host=self._host, port=self._port)
        await server.start()
        self._server = server
        self._port = server.port  # a restart (outage, recovery) keeps the base URL

    async def stop(self) -> None:
        self.faults.release()  # a hanging request must not hold the shutdown
        server, self._server = self._server, None
        if server is not None:
            await server.stop()
        await self.webhooks.aclose()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def _handle_error(self, _request: Request, exc: Exception) -> Response:
        if not isinstance(exc, SimulatorError):  # registered for SimulatorError only
            raise exc
        return self.error_response(exc)

    def _injected_error(self, status: int) -> Response:
        return self.error_response(
            SimulatorError(status, "injected fault: the service is unavailable", kind="api_error")
        )

    def _control_router(self) -> APIRouter:  # noqa: C901 - one small closure per route
        router = APIRouter(prefix=CONTROL_PREFIX)

        @router.post("/sessions/{session_id}/pay")
        async def pay(session_id: str, drive: DriveRequest | None = None) -> DriveResult:
            token = _DRIVE_ECHOES_METADATA.set(drive is None or drive.echo_metadata)
            try:
                return await self.pay(session_id, drive)
            finally:
                _DRIVE_ECHOES_METADATA.reset(token)

        @router.post("/sessions/{session_id}/fail")
        async def fail(session_id: str, drive: DriveRequest | None = None) -> DriveResult:
            return await self.fail(session_id, drive)

        @router.post("/sessions/{session_id}/expire")
        async def expire(session_id: str, drive: DriveRequest | None = None) -> DriveResult:
            return await self.expire(session_id, drive)

        @router.get("/sessions/{session_id}")
        async def describe(session_id: str) -> dict[str, Any]:
            return self.describe(session_id)

        @router.get("/stats")
        async def stats() -> dict[str, int]:
            return self.all_stats()

        @router.get("/faults")
        async def faults() -> FaultPlan:
            return self.faults.plan

        @router.post("/faults")
        async def set_faults(changes: Annotated[dict[str, Any], Body()]) -> FaultPlan:
            try:
                return self.faults.set(**changes)
            except ValidationError as exc:
                raise SimulatorError(400, f"invalid fault plan: {exc}") from None

        @router.delete("/faults")
        async def reset_faults() -> FaultPlan:
            return self.faults.reset()

        @router.get("/webhooks")
        async def deliveries() -> dict[str, Any]:
            return {
                "url": self.webhooks.url,
                "deliveries": [d.to_json() for d in self.webhooks.deliveries],
            }

        @router.post("/webhooks")
        async def set_endpoint(endpoint: _WebhookEndpoint) -> dict[str, Any]:
            self.webhooks.url = endpoint.url
            return {"url": endpoint.url}

        @router.post("/webhooks/{delivery_id}/redeliver")
        async def redeliver(delivery_id: str) -> dict[str, Any]:
            try:
                return (await self.webhooks.redeliver(delivery_id)).to_json()
            except KeyError:
                raise SimulatorError(404, f"no delivery {delivery_id}") from None

        return router


def _without_metadata(body: bytes) -> bytes:
    """The webhook body with every ``metadata`` object emptied (before it is signed)."""

    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {
                key: {} if key == "metadata" and isinstance(item, dict) else strip(item)
                for key, item in value.items()
            }
        if isinstance(value, list):
            return [strip(item) for item in value]
        return value

    return json.dumps(strip(json.loads(body))).encode()

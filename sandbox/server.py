"""Run the sandbox: in the foreground for `mkt-x sandbox`, or in a background thread for tests."""

from __future__ import annotations

import logging
import socket
import threading
import time
from types import TracebackType
from typing import Any, Literal, Self

import uvicorn

from mktx.logs import configure_logging
from mktx.settings import Settings
from sandbox.admin import SandboxAdmin
from sandbox.app import SandboxConfig, create_sandbox_app
from sandbox.state import SandboxState

logger = logging.getLogger(__name__)

STARTUP_TIMEOUT_SECONDS = 10.0


def serve(settings: Settings, host: str, port: int) -> int:
    configure_logging(settings.log_level)
    config = SandboxConfig.from_settings(settings)
    logger.info(
        "sandbox.starting",
        extra={"url": f"http://{host}:{port}", "webhook_url": config.webhook_url},
    )
    uvicorn.run(create_sandbox_app(config), host=host, port=port, log_config=None, access_log=False)
    return 0


class RunningServer:
    """An ASGI app serving on loopback from a daemon thread; `.url` to call it, `.stop()` to end it."""

    def __init__(self, server: uvicorn.Server, thread: threading.Thread, url: str) -> None:
        self._server = server
        self._thread = thread
        self.url = url

    @property
    def app(self) -> Any:
        return self._server.config.app

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=STARTUP_TIMEOUT_SECONDS)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


class RunningSandbox(RunningServer):
    @property
    def state(self) -> SandboxState:
        """The live state, for assertions a test cannot make over HTTP."""
        state: SandboxState = self.app.state.sandbox
        return state

    @property
    def admin(self) -> SandboxAdmin:
        return SandboxAdmin(self.url)


def _start(
    app: Any, host: str, port: int, lifespan: Literal["auto", "on", "off"] = "off"
) -> tuple[uvicorn.Server, threading.Thread, str]:
    # Binding here (not in uvicorn) tells us the port the OS chose before the server starts.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound_port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, log_config=None, access_log=False, lifespan=lifespan)
    )
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="mktx-server", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            sock.close()
            raise RuntimeError("the server did not start")
        time.sleep(0.01)
    return server, thread, f"http://{host}:{bound_port}"


def serve_in_thread(
    app: Any, host: str = "127.0.0.1", port: int = 0, lifespan: Literal["auto", "on", "off"] = "off"
) -> RunningServer:
    """Serve any ASGI app (a test's webhook receiver, the API itself) on a free port."""
    return RunningServer(*_start(app, host, port, lifespan))


def start_sandbox_thread(
    config: SandboxConfig, host: str = "127.0.0.1", port: int = 0
) -> RunningSandbox:
    return RunningSandbox(*_start(create_sandbox_app(config), host, port))

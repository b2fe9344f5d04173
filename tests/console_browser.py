"""Headless Chromium for the console tests, driven over the DevTools protocol directly (no
Selenium, no chromedriver): the browser's own WebSocket endpoint, spoken with realtalk's
transport, so the driver runs in the test's event loop on asyncio and trio alike."""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

from realtalk.transport import WebSocket, open_websocket

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")


def chromium_or_skip() -> str:
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    if os.environ.get("CI") == "true":
        pytest.fail("chromium is missing in CI: .ci/run installs it")
    pytest.skip("chromium is not installed here (apt-get install chromium)")


class BrowserError(AssertionError):
    """A DevTools command failed, or the page threw."""


class Page:
    """One tab: DevTools commands, JavaScript evaluation, and what the page logged."""

    def __init__(self, ws: WebSocket) -> None:
        self._ws = ws
        self._next_id = 0
        self._replies: dict[int, Any] = {}
        self._arrived = anyio.Event()
        self.session_id: str | None = None
        self.events: list[dict[str, Any]] = []

    async def read_forever(self) -> None:
        while True:
            message = json.loads(await self._ws.receive())
            if "id" in message:
                self._replies[message["id"]] = message
            else:
                self.events.append(message)
            self._arrived.set()
            self._arrived = anyio.Event()

    async def call(self, method: str, params: dict[str, Any] | None = None, *,
                   browser: bool = False, timeout: float = 30.0) -> dict[str, Any]:
        self._next_id += 1
        request: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if not browser and self.session_id is not None:
            request["sessionId"] = self.session_id
        await self._ws.send_text(json.dumps(request))
        with anyio.fail_after(timeout):
            while self._next_id not in self._replies:
                await self._arrived.wait()
        reply = self._replies.pop(self._next_id)
        if "error" in reply:
            raise BrowserError(f"{method}: {reply['error']}")
        return reply.get("result", {})  # type: ignore[no-any-return]

    async def evaluate(self, expression: str, *, gesture: bool = False) -> Any:
        """The value of a JavaScript expression (promises awaited)."""
        result = await self.call("Runtime.evaluate", {
            "expression": expression, "awaitPromise": True, "returnByValue": True,
            "userGesture": gesture})
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, timeout: float = 20.0) -> Any:
        """Poll until a JavaScript expression is truthy; its value."""
        with anyio.fail_after(timeout):
            while True:
                value = await self.evaluate(expression)
                if value:
                    return value
                await anyio.sleep(0.05)

    async def open(self, url: str) -> None:
        await self.call("Page.navigate", {"url": url})
        await self.wait_for("document.readyState === 'complete' && !!window.realtalkConsole")

    async def screenshot(self, path: Path) -> None:
        shot = await self.call("Page.captureScreenshot", {"format": "png"})
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(shot["data"]))

    def problems(self) -> list[str]:
        """Console errors and warnings, uncaught exceptions, failed loads: what a user would
        see in the browser's console."""
        found = []
        for event in self.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.exceptionThrown":
                found.append(f"exception: {params['exceptionDetails']}")
            elif method == "Runtime.consoleAPICalled" and params["type"] in ("error", "warning",
                                                                              "assert"):
                found.append(f"console.{params['type']}: {params['args']}")
            elif method == "Log.entryAdded" and params["entry"]["level"] in ("error", "warning"):
                entry = params["entry"]
                found.append(f"{entry['source']} {entry['level']}: {entry['text']}")
        return found


@asynccontextmanager
async def chromium(audio_file: Path | None = None) -> AsyncIterator[Page]:
    """A headless Chromium whose fake microphone plays ``audio_file`` once (then silence),
    with one blank tab attached."""
    binary = chromium_or_skip()
    # Chromium's helper processes may still be writing the profile as the browser exits.
    with tempfile.TemporaryDirectory(prefix="realtalk-chromium-",
                                     ignore_cleanup_errors=True) as profile:
        arguments = [
            binary, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--no-default-browser-check", "--disable-extensions", "--disable-sync",
            "--disable-background-networking", "--disable-component-update",
            "--autoplay-policy=no-user-gesture-required",
            "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            "--window-size=1200,900", f"--user-data-dir={profile}",
            "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
        ]
        if audio_file is not None:
            arguments.append(f"--use-file-for-fake-audio-capture={audio_file}%noloop")
        # Its own process group, so the teardown ends the browser's helpers with it.
        process = subprocess.Popen(arguments + ["about:blank"], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            active = Path(profile, "DevToolsActivePort")
            with anyio.fail_after(30):
                while not (active.exists() and len(active.read_text().splitlines()) >= 2):
                    if process.poll() is not None:
                        raise BrowserError(f"chromium exited with {process.returncode}")
                    await anyio.sleep(0.05)
            port, path = active.read_text().splitlines()[:2]
            async with open_websocket(f"ws://127.0.0.1:{port}{path}", max_size=None,
                                      compression=None, ping_interval=None) as ws:
                page = Page(ws)
                async with anyio.create_task_group() as tg:
                    tg.start_soon(page.read_forever)
                    target = await page.call("Target.createTarget", {"url": "about:blank"})
                    attached = await page.call("Target.attachToTarget", {
                        "targetId": target["targetId"], "flatten": True})
                    page.session_id = attached["sessionId"]
                    for domain in ("Runtime", "Log", "Page"):
                        await page.call(f"{domain}.enable")
                    try:
                        yield page
                    finally:
                        tg.cancel_scope.cancel()
        finally:
            _end_group(process)


def _end_group(process: subprocess.Popen[bytes]) -> None:
    for sig, wait_s in ((signal.SIGTERM, 10.0), (signal.SIGKILL, None)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            pass
        try:
            process.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue

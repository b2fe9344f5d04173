"""The console's server side: its files ship in the package, the pages and the demo token
endpoint exist only with ``console=True``, tokens go to the relay's own origin only, and both
commands (``realtalk relay --console``, ``realtalk console``) serve it. The browser tests are
in test_console_browser.py."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import anyio
import httpx
import msgspec
import pytest

import realtalk.relay
from realtalk.relay import Relay, verify_token
from realtalk.relay.console import TOKEN_PATH, static_files
from realtalk.simulator import Simulator
from realtalk.transport import open_websocket

SECRET = "console-test-secret-0123456789"
STATIC = ("console.html", "console.css", "console.js", "console-worklets.js")
SCRIPT = Path(sys.executable).with_name("realtalk")


def test_the_console_files_are_in_the_imported_package_and_served_from_there() -> None:
    folder = Path(realtalk.relay.__file__).parent / "static"
    served = static_files()
    for name in STATIC:
        assert (folder / name).is_file(), name
    assert served["/"] == (folder / "console.html").read_bytes()
    assert served["/console-worklets.js"] == (folder / "console-worklets.js").read_bytes()


def test_the_console_files_are_in_the_installed_wheel() -> None:
    files = metadata.files("realtalk") or []
    recorded = {str(path) for path in files}
    if "realtalk/__init__.py" not in recorded:  # an editable install or a source checkout
        if os.environ.get("CI") == "true":
            pytest.fail("CI tests the installed wheel, but realtalk is not installed from one")
        pytest.skip("realtalk is not installed from a wheel here (`make test` tests the wheel)")
    for name in STATIC:
        assert f"realtalk/relay/static/{name}" in recorded, name


async def test_without_console_there_is_no_page_and_no_token_endpoint() -> None:
    async with Simulator() as sim, Relay(sim.url, api_key="sk-local", secret=SECRET) as relay:
        base = f"http://127.0.0.1:{relay.port}"
        async with httpx.AsyncClient(base_url=base) as client:
            for path in ("/", "/console.js", "/console-worklets.js"):
                assert (await client.get(path)).status_code == 404
            token = await client.post(TOKEN_PATH, headers={"Origin": base})
            assert token.status_code == 404


async def test_the_console_page_and_its_scripts_are_served_with_a_strict_policy() -> None:
    async with Simulator() as sim, Relay(sim.url, api_key="sk-local", secret=SECRET,
                                         console=True) as relay:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{relay.port}") as client:
            page = await client.get("/")
            assert page.status_code == 200
            assert page.headers["content-type"].startswith("text/html")
            assert "default-src 'none'" in page.headers["content-security-policy"]
            assert page.headers["x-content-type-options"] == "nosniff"
            assert '<script src="console.js"' in page.text
            for path in ("/console.js", "/console-worklets.js"):
                script = await client.get(path)
                assert script.headers["content-type"].startswith("text/javascript")
            assert (await client.get("/console.css")).headers["content-type"].startswith(
                "text/css")
            assert (await client.post("/")).status_code == 405
            assert (await client.get("/metrics")).status_code == 200  # still there


async def test_the_token_endpoint_serves_only_the_relays_own_origin() -> None:
    async with Simulator() as sim, Relay(sim.url, api_key="sk-local", secret=SECRET,
                                         console=True, console_token_ttl_s=30) as relay:
        origin = f"http://127.0.0.1:{relay.port}"
        async with httpx.AsyncClient(base_url=origin) as client:
            refused = [
                await client.post(TOKEN_PATH),  # no Origin: not a page's request
                await client.post(TOKEN_PATH, headers={"Origin": "http://evil.example"}),
                await client.post(TOKEN_PATH, headers={"Origin": "null"}),
                await client.post(TOKEN_PATH, headers={"Origin": origin,
                                                       "Sec-Fetch-Site": "cross-site"}),
            ]
            assert [r.status_code for r in refused] == [403] * 4
            assert (await client.get(TOKEN_PATH, headers={"Origin": origin})).status_code == 405
            answer = await client.post(TOKEN_PATH, headers={"Origin": origin,
                                                            "Sec-Fetch-Site": "same-origin"})
            assert answer.status_code == 200
            assert answer.headers["cache-control"] == "no-store"
            body = answer.json()
        claims = verify_token(SECRET, body["token"])  # the relay's own token, short-lived
        assert claims.subject == "console"
        assert 0 < claims.expires_at - time.time() <= 31
        # ... which opens a session the way the page does: in the subprotocol list.
        async with open_websocket(relay.url, subprotocols=[
                "realtime", f"openai-insecure-api-key.{body['token']}"]) as ws:
            assert ws.subprotocol == "realtime"
            first = msgspec.json.decode(await ws.receive())
            assert first["type"] == "session.created"


def test_the_console_needs_a_secret_to_sign_its_tokens() -> None:
    async def allow(token: str, request: object) -> bool:
        return True

    with pytest.raises(ValueError, match="secret"):
        Relay("ws://127.0.0.1:9/v1/realtime", api_key="sk-x", authenticate=allow,
              console=True)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _environment(**extra: str) -> dict[str, str]:
    environment = {k: v for k, v in os.environ.items()
                   if k not in ("OPENAI_API_KEY", "REALTALK_RELAY_SECRET")}
    environment.update(extra)
    return environment


async def _serving(command: list[str], port: int, env: dict[str, str]) -> str:
    """Start the command, wait for the console's line, fetch / and a token, stop it."""
    async with await anyio.open_process(command, env=env, stderr=subprocess.STDOUT) as process:
        assert process.stdout is not None
        output = b""
        try:
            with anyio.fail_after(30):
                while b"realtalk console at " not in output:
                    chunk = await process.stdout.receive()
                    output += chunk
            origin = f"http://127.0.0.1:{port}"
            async with httpx.AsyncClient(base_url=origin) as client:
                page = await client.get("/")
                assert page.status_code == 200 and "realtalk console" in page.text
                token = await client.post(TOKEN_PATH, headers={"Origin": origin})
                assert token.status_code == 200
            async with open_websocket(f"ws://127.0.0.1:{port}/v1/realtime", subprotocols=[
                    "realtime", f"openai-insecure-api-key.{token.json()['token']}"]) as ws:
                assert msgspec.json.decode(await ws.receive())["type"] == "session.created"
        finally:
            process.terminate()
            with anyio.move_on_after(10):
                await process.wait()
            if process.returncode is None:
                process.kill()
    return output.decode()


async def test_realtalk_console_serves_the_page_in_front_of_the_simulator() -> None:
    port = _free_port()
    output = await _serving([str(SCRIPT), "console", "--port", str(port)], port, _environment())
    assert f"realtalk console at http://127.0.0.1:{port}/" in output


async def test_realtalk_relay_with_console_serves_it_too() -> None:
    port = _free_port()
    await _serving([str(SCRIPT), "relay", "--console", "--port", str(port)], port,
                   _environment(REALTALK_RELAY_SECRET=SECRET))


def test_console_mistakes_get_one_line() -> None:
    result = subprocess.run([str(SCRIPT), "console", "--upstream", "ws://127.0.0.1:9/x"],
                            capture_output=True, text=True, timeout=60, env=_environment())
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "realtalk: set OPENAI_API_KEY: the relay opens upstream sessions with it"]
    result = subprocess.run([str(SCRIPT), "console"], capture_output=True, text=True,
                            timeout=60, env=_environment(REALTALK_RELAY_SECRET="short"))
    assert result.returncode == 1
    assert result.stderr.strip() == "realtalk: REALTALK_RELAY_SECRET must be at least 16 bytes"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        for command in (["console"], ["relay", "--console"]):  # a traceback before the fix
            result = subprocess.run([str(SCRIPT), *command, "--port", str(port)],
                                    capture_output=True, text=True, timeout=60,
                                    env=_environment(REALTALK_RELAY_SECRET=SECRET))
            assert result.returncode == 1
            assert result.stderr.strip() == (
                f"realtalk: cannot listen on 127.0.0.1:{port}: Address already in use")

"""The running service (``python -m homework_assignment`` under uvicorn) refuses huge unauthenticated bodies
with 413 without reading them: its RSS grows by less than 20 MiB after 64 MiB bodies, with and without
``Content-Length``; hostile small bodies get a clear 4xx over a real socket too."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.infra import Infra
from tests.integration.assignment.test_process import Process, process

MIB = 1024 * 1024
BODY_BYTES = 64 * MIB
RSS_GROWTH_LIMIT = 20 * MIB


def rss_bytes(p: Process) -> int:
    """The process's resident set size, from ``/proc/<pid>/status`` (``VmRSS``, in kB)."""
    assert p.proc is not None
    for line in Path(f"/proc/{p.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS line")


async def chunked(total: int, size: int = 256 * 1024) -> AsyncIterator[bytes]:
    """``total`` bytes of a JSON body in chunks: httpx sends it with ``Transfer-Encoding: chunked``."""
    yield b'{"title": "'
    for _ in range(total // size):
        yield b"x" * size
    yield b'"}'


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads RSS from /proc (Linux)")
async def test_64_mib_unauthenticated_bodies_get_413_and_the_rss_grows_by_less_than_20_mib(
    infra: Infra, tmp_path: Path
) -> None:
    with process(infra, tmp_path) as p:
        p.start()
        await p.wait_ready(kafka=False)
        async with httpx.AsyncClient(base_url=p.url, timeout=120) as http:
            # Warm the code paths a refusal takes, so the figure below is growth, not first use.
            warm = await http.post("/v1/assignments", content=b"{}", headers={"Content-Type": "application/json"})
            assert warm.status_code == 401, warm.text
            before = rss_bytes(p)
            big = b'{"title": "' + b"x" * BODY_BYTES + b'"}'
            answers = []
            for _ in range(3):
                with_length = await http.post(
                    "/v1/assignments", content=big, headers={"Content-Type": "application/json"}
                )
                assert "content-length" in with_length.request.headers
                without_length = await http.post(
                    "/v1/assignments", content=chunked(BODY_BYTES), headers={"Content-Type": "application/json"}
                )
                assert "content-length" not in without_length.request.headers
                assert without_length.request.headers["transfer-encoding"] == "chunked"
                answers += [with_length, without_length]
            after = rss_bytes(p)
            for response in answers:
                assert response.status_code == 413, response.text[:300]
                assert response.json()["error"] == "payload_too_large"
            assert (await http.get("/healthz")).status_code == 200, "still serving"
        growth = after - before
        print(f"RSS before {before / MIB:.1f} MiB, after 6 x 64 MiB bodies {after / MIB:.1f} MiB")
        assert growth < RSS_GROWTH_LIMIT, f"RSS grew {growth / MIB:.1f} MiB"


HOSTILE = {
    "10000 levels": (b"[" * 10_000 + b"]" * 10_000, "application/json", 400, "invalid_json"),
    "1e400": (b'{"client_id": 1e400}', "application/json", 400, "invalid_json"),
    "100000 digits": (b'{"client_id": ' + b"1" * 100_000 + b"}", "application/json", 400, "invalid_json"),
    "invalid utf-8": (b'{"client_id": "\xff"}', "application/json", 400, "invalid_json"),
    "text/plain": (b'{"client_id": "c1"}', "text/plain", 415, "unsupported_media_type"),
}


async def test_hostile_bodies_get_a_clear_4xx_from_the_running_service(infra: Infra, tmp_path: Path) -> None:
    with process(infra, tmp_path) as p:
        p.start()
        await p.wait_ready(kafka=False)
        answered = {}
        async with httpx.AsyncClient(base_url=p.url, timeout=30) as http:
            for case, (body, content_type, _, _) in HOSTILE.items():
                response = await http.post("/v1/assignments", content=body, headers={"Content-Type": content_type})
                answered[case] = (response.status_code, response.json().get("error"))
    assert answered == {case: (status, code) for case, (_, _, status, code) in HOSTILE.items()}

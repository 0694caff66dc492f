"""Who may reach the sidecar: Host names, browser origins, the API key (real process).

The browser attacks run in Debian's Chromium: a hostile page on another local port that
submits a multipart form and a `no-cors` fetch, and a page on a name that resolves to
127.0.0.1 (`--host-resolver-rules`: DNS rebinding's outcome without a DNS server).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from playwright.sync_api import Browser, sync_playwright
from s2_sidecar.middleware import ANY, served_hosts
from support import raw_http
from support.browser import launch
from support.sidecar import PERSONAS_TOML, SidecarProcess
from support.waiting import wait_for

from s2_plugin.protocol import HEADER_CLIENT

CLIP = (PERSONAS_TOML.parent / "joe.wav").read_bytes()
REBOUND = "rebound.test"
"""A name Chromium resolves to 127.0.0.1 here, as a rebound DNS name would."""


def request(sidecar: SidecarProcess, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
    return raw_http.request(sidecar.port, method, path, **kwargs)


def upload(sidecar: SidecarProcess, name: str, headers: dict[str, str]) -> tuple[int, Any]:
    """A persona upload replacing `name`, as a form (or curl) sends it."""
    fields: dict[str, str | bytes] = {
        "name": name,
        "transcript": "Pwned.",
        "replace": "true",
        "audio": CLIP,
    }
    return raw_http.upload(sidecar.port, fields, headers)


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SidecarProcess]:
    """A sidecar of its own with `joe`, which the attacks here try to replace or delete."""
    root = tmp_path_factory.mktemp("guarded")
    with SidecarProcess(root / "store", personas=PERSONAS_TOML) as process:
        yield process


def joe(sidecar: SidecarProcess) -> Any:
    status, info = request(sidecar, "GET", "/v1/audio/voices/joe")
    assert status == 200
    return info


# --- Host ----------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["evil.example", "attacker.test:{port}", "1.2.3.4", "localhost."])
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/audio/voices"),
        ("GET", "/metrics"),
        ("GET", "/"),
        ("DELETE", "/v1/audio/voices/joe"),
    ],
)
def test_a_host_name_not_of_this_machine_is_refused(
    sidecar: SidecarProcess, host: str, method: str, path: str
) -> None:
    status, body = request(sidecar, method, path, host=host.format(port=sidecar.port))
    assert status == 421
    assert body["error"]["code"] == "host_not_allowed"
    assert "--allowed-host" in body["error"]["message"]
    assert joe(sidecar)["name"] == "joe"


@pytest.mark.parametrize(
    "host", ["127.0.0.1:{port}", "localhost:{port}", "[::1]:{port}", "127.0.0.2"]
)
def test_this_machines_names_are_served(sidecar: SidecarProcess, host: str) -> None:
    status, body = request(sidecar, "GET", "/v1/audio/voices", host=host.format(port=sidecar.port))
    assert status == 200
    assert "joe" in body["voices"]


def test_an_allowed_host_is_served_and_others_still_refused(make_sidecar: Any) -> None:
    process = make_sidecar(args=["--allowed-host", "studio.lan"])
    assert request(process, "GET", "/health", host=f"STUDIO.lan:{process.port}")[0] == 200
    assert request(process, "GET", "/health", host="other.lan")[0] == 421


def test_a_sidecar_on_another_address_serves_any_host_unless_names_are_given() -> None:
    # It needs a key there, which keeps a rebound page out of the API; its clients' names
    # (a Kubernetes service, a LAN address) are not known to it.
    assert served_hosts("0.0.0.0", []) == (ANY,)
    assert served_hosts("0.0.0.0", ["s2-sidecar"]) == ("s2-sidecar", "0.0.0.0")
    assert served_hosts("127.0.0.1", []) == ()
    assert served_hosts("localhost", ["Dev.Lan"]) == ("dev.lan",)


# --- Origin --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({"Origin": "https://evil.example"}, "origin_not_allowed"),
        ({"Origin": "http://127.0.0.1:3000", HEADER_CLIENT: "x"}, "origin_not_allowed"),
        ({"Origin": "null", HEADER_CLIENT: "x"}, "origin_not_allowed"),
        ({"Sec-Fetch-Site": "cross-site", HEADER_CLIENT: "x"}, "cross_site"),
        ({"Sec-Fetch-Site": "same-site", HEADER_CLIENT: "x"}, "cross_site"),
        (
            {"Origin": "http://127.0.0.1:{port}", "Sec-Fetch-Site": "same-origin"},
            "client_header_missing",
        ),
        ({"Sec-Fetch-Mode": "navigate"}, "client_header_missing"),
    ],
    ids=["foreign", "other-port", "null", "cross-site", "same-site", "no-header", "form"],
)
def test_a_browser_upload_from_elsewhere_or_without_the_header_is_refused(
    guarded: SidecarProcess, headers: dict[str, str], code: str
) -> None:
    process = guarded
    before = joe(process)
    headers = {k: v.format(port=process.port) for k, v in headers.items()}
    status, body = upload(process, "joe", headers)
    assert (status, body["error"]["code"]) == (403, code)
    assert joe(process) == before
    status, body = request(process, "DELETE", "/v1/audio/voices/joe", headers=headers)
    assert (status, body["error"]["code"]) == (403, code)
    assert joe(process) == before


def test_uploads_from_the_sidecars_own_page_and_from_clients_outside_a_browser(
    sidecar: SidecarProcess,
) -> None:
    own = {
        "Origin": f"http://127.0.0.1:{sidecar.port}",
        "Sec-Fetch-Site": "same-origin",
        HEADER_CLIENT: "studio",
    }
    assert upload(sidecar, "own-page", own)[0] == 201
    assert upload(sidecar, "curl-like", {})[0] == 201  # SGLang-Omni's and OpenAI's clients
    for name in ("own-page", "curl-like"):
        assert request(sidecar, "DELETE", f"/v1/audio/voices/{name}", headers=own)[0] == 204


def test_an_allowed_origin_may_upload(make_sidecar: Any) -> None:
    process = make_sidecar(args=["--allowed-origin", "https://app.example/"])
    headers = {"Origin": "https://app.example", "Sec-Fetch-Site": "cross-site"}
    assert upload(process, "ava", headers)[0] == 403  # still needs the header
    assert upload(process, "ava", {**headers, HEADER_CLIENT: "app"})[0] == 201
    assert upload(process, "ava", {"Origin": "https://other.example", HEADER_CLIENT: "x"})[0] == 403


# --- in a browser --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        browser = launch(p, f"--host-resolver-rules=MAP {REBOUND} 127.0.0.1")
        yield browser
        browser.close()


@pytest.fixture
def hostile_site() -> Iterator[Callable[[str], str]]:
    """`hostile_site(html)`: the URL of a page serving `html`, on another local port."""
    pages: dict[str, bytes] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = pages.get(self.path, b"")
            self.send_response(200 if body else 404)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def page(html: str) -> str:
        path = f"/{len(pages)}.html"
        pages[path] = html.encode()
        return f"http://127.0.0.1:{server.server_address[1]}{path}"

    yield page
    server.shutdown()
    server.server_close()


_WAV_JS = """
function wav() {  // 5 s of a 220 Hz tone at 16 kHz, as a page would make a clip
  const n = 16000 * 5, view = new DataView(new ArrayBuffer(44 + 2 * n));
  const text = (at, s) => [...s].forEach((c, i) => view.setUint8(at + i, c.charCodeAt(0)));
  text(0, "RIFF"); view.setUint32(4, 36 + 2 * n, true); text(8, "WAVEfmt ");
  view.setUint32(16, 16, true); view.setUint16(20, 1, true); view.setUint16(22, 1, true);
  view.setUint32(24, 16000, true); view.setUint32(28, 32000, true);
  view.setUint16(32, 2, true); view.setUint16(34, 16, true); text(36, "data");
  view.setUint32(40, 2 * n, true);
  for (let i = 0; i < n; i++) {
    view.setInt16(44 + 2 * i, 8000 * Math.sin((i / 16000) * 2 * Math.PI * 220), true);
  }
  return new File([view.buffer], "clip.wav", {type: "audio/wav"});
}
"""


def refusals(process: SidecarProcess, code: str) -> float:
    return process.metrics().value("s2_errors_total", code=code)


def test_a_hostile_pages_form_cannot_replace_a_persona(
    guarded: SidecarProcess, browser: Browser, hostile_site: Callable[[str], str]
) -> None:
    process = guarded
    before = joe(process)
    url = hostile_site(
        f"""<form id=f method=post enctype=multipart/form-data
              action="{process.url}/v1/audio/voices">
          <input name=name value=joe><input name=transcript value="Pwned.">
          <input name=replace value=true><input type=file name=audio id=a></form>
        <script>{_WAV_JS}
          const files = new DataTransfer(); files.items.add(wav());
          document.getElementById("a").files = files.files;
          document.getElementById("f").submit();
        </script>"""
    )
    page = browser.new_page()
    try:
        with page.expect_response(lambda r: r.url.endswith("/v1/audio/voices")) as answer:
            page.goto(url)
        assert answer.value.status == 403
        assert answer.value.json()["error"]["code"] == "origin_not_allowed"
    finally:
        page.close()
    assert joe(process) == before


def test_a_no_cors_fetch_from_another_local_origin_plants_nothing(
    guarded: SidecarProcess, browser: Browser, hostile_site: Callable[[str], str]
) -> None:
    process = guarded
    before, refused = joe(process), refusals(process, "origin_not_allowed")
    url = hostile_site(
        f"""<script>{_WAV_JS}
          for (const name of ["joe", "planted"]) {{
            const form = new FormData();
            form.set("name", name); form.set("transcript", "Pwned."); form.set("replace", "true");
            form.set("audio", wav());
            fetch("{process.url}/v1/audio/voices", {{method: "POST", mode: "no-cors", body: form}});
          }}
        </script>"""
    )
    page = browser.new_page()
    try:
        page.goto(url)
        wait_for(
            lambda: refusals(process, "origin_not_allowed") >= refused + 2, "two refused uploads"
        )
    finally:
        page.close()
    assert joe(process) == before
    assert request(process, "GET", "/v1/audio/voices/planted")[0] == 404


def test_a_page_on_a_rebound_name_reads_and_changes_nothing(
    guarded: SidecarProcess, browser: Browser
) -> None:
    process = guarded
    page = browser.new_page()
    try:
        rebound = f"http://{REBOUND}:{process.port}"
        for path in ("/", "/v1/audio/voices", "/metrics"):
            response = page.goto(rebound + path)
            assert response is not None and response.status == 421, path
        assert (
            page.evaluate(
                """async (url) => (await fetch(url, {method: "DELETE",
                  headers: {"X-S2-Client": "x"}})).status""",
                rebound + "/v1/audio/voices/joe",
            )
            == 421
        )
    finally:
        page.close()
    assert joe(process)["name"] == "joe"


def test_the_rebound_name_reaches_a_sidecar_that_allows_it(
    make_sidecar: Any, browser: Browser
) -> None:
    # The same browser and name against a sidecar told to serve it: the 421s above are the
    # sidecar's refusals, not a name the browser could not reach.
    process = make_sidecar(personas=PERSONAS_TOML, args=["--allowed-host", REBOUND])
    page = browser.new_page()
    try:
        response = page.goto(f"http://{REBOUND}:{process.port}/v1/audio/voices")
        assert response is not None and response.status == 200
        assert "joe" in response.json()["voices"]
    finally:
        page.close()

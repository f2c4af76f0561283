"""FakeInflux: InfluxDB 2's write endpoint, for unit tests only.

It follows InfluxDB's API reference for ``POST /api/v2/write``: a token in
``Authorization: Token <token>`` (401 ``unauthorized`` otherwise), an
existing ``org``/``bucket`` (404 ``not found``), line protocol in the body
(400 ``invalid`` for a line it cannot parse - the batch is refused), and 204
when written. ``down`` makes it answer 503 like a server that is
restarting; ``flap_every`` alternates. The functional tests use a real
time-series server (VictoriaMetrics behind nginx enforcing the token).
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

LINE = re.compile(r"^[^\s,#][^\s]*(?<!\\) [^\s]+=[^\s]+( \d+)?$")
#: A field value InfluxDB's parser refuses: line protocol has no inf or NaN.
NOT_A_NUMBER = re.compile(r"=[-+]?(inf|nan)\b", re.IGNORECASE)


class FakeInflux:
    def __init__(self, token: str = "s3cret", org: str = "lm", bucket: str = "rally_lm") -> None:
        self.token, self.org, self.bucket = token, org, bucket
        self.points: list[str] = []
        self.down = False
        #: Answer 503 to every n-th write (0: never).
        self.flap_every = 0
        self.requests = 0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> FakeInflux:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                return

            def _answer(self, code: int, error: str = "", message: str = "") -> None:
                body = json.dumps({"code": error, "message": message}).encode() if error else b""
                self.send_response(code)
                if body:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):  # noqa: N802
                url = urlparse(self.path)
                query = parse_qs(url.query)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
                with fake._lock:
                    fake.requests += 1
                    flapping = fake.flap_every and fake.requests % fake.flap_every == 0
                if url.path != "/api/v2/write":
                    return self._answer(404, "not found", "path not found")
                if fake.down or flapping:
                    return self._answer(503, "unavailable", "service unavailable")
                if self.headers.get("Authorization") != f"Token {fake.token}":
                    return self._answer(401, "unauthorized", "unauthorized access")
                if query.get("org") != [fake.org] or query.get("bucket") != [fake.bucket]:
                    return self._answer(404, "not found",
                                        f'bucket "{query.get("bucket")}" not found')
                lines = [ln for ln in body.splitlines() if ln.strip()]
                bad = next((ln for ln in lines if not LINE.match(ln)
                            or NOT_A_NUMBER.search(ln.split(" ")[1])), None)
                if bad is not None:
                    return self._answer(400, "invalid", f"unable to parse '{bad}': bad line")
                with fake._lock:
                    fake.points += lines
                return self._answer(204)

        return Handler

"""``detoxrl label``: the labelling page, served on 127.0.0.1 for one or several people at once.

Built on the standard library's ``http.server`` (``ThreadingHTTPServer``, a thread per request). The page
needs one HTML document and three JSON routes; the standard library serves them in a page of code, works
offline, adds no dependency to install or keep up to date, and its threads are plenty for a few people
labelling. A web framework (flask, starlette with uvicorn) would bring routing and an application server
that this page does not use. The one shared state, the rankings file, is written under a lock by
:class:`~detoxrl.feedback.store.RankingStore`.

Routes (JSON in and out, errors as ``{"error": message}`` with status 400, 404 or 409):

- ``GET /``: the page; its CSS and JavaScript (``static/``) are inlined and a Content-Security-Policy lets
  only them run, so the page loads nothing from anywhere else.
- ``GET /api/batch``: ``{"items": [{"id", "prompt", "completions"}], "instructions_html", "specials"}``
  (the judges' scores stay on the server: they would bias the people who rank).
- ``GET /api/progress?labeller=NAME``: ``{"done": [ids], "total", "next": id or null}``.
- ``POST /api/submit``: ``{"labeller", "id", "ranks": [...]}`` or ``{..., "special": ...}``; checked
  (:func:`~detoxrl.feedback.rankings.check_submission`), saved, answered with the progress.

Only requests addressed to this server by name (``Host`` 127.0.0.1 or localhost with its port, and the
same ``Origin`` when a browser sends one) are served, so another web site cannot write rankings through
the labeller's browser.
"""

from __future__ import annotations

import base64
import hashlib
import json
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from detoxrl.config import Config
from detoxrl.errors import ConfigError
from detoxrl.feedback.batch import BATCH, INSTRUCTIONS, RANKINGS, BatchItem, labels_dir, read_batch
from detoxrl.feedback.instructions import SPECIAL_KEYS, render_instructions, write_instructions
from detoxrl.feedback.rankings import SPECIAL_LABELS, SubmissionError, check_labeller, check_submission, ranking_row
from detoxrl.feedback.store import RankingStore
from detoxrl.utils import console

HOST = "127.0.0.1"
MAX_BODY = 1 << 20


def _static(name: str) -> str:
    return resources.files("detoxrl.feedback").joinpath("static", name).read_text(encoding="utf-8")


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode() + "'"


def build_page() -> tuple[bytes, str]:
    """The page with its CSS and JS inlined, and the Content-Security-Policy that allows exactly them."""
    css, js = _static("label.css"), _static("label.js")
    page = _static("label.html").replace("%%CSS%%", css, 1).replace("%%JS%%", js, 1)
    csp = (f"default-src 'none'; script-src {_sha256(js)}; style-src {_sha256(css)}; connect-src 'self'; "
           "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
    return page.encode("utf-8"), csp


class LabelApp:
    """What the page talks to: the batch, the instructions and the rankings store."""

    def __init__(self, items: list[BatchItem], store: RankingStore, instructions: str):
        self.items = items
        self.by_id = {it.id: it for it in items}
        self.store = store
        self.instructions_html = render_instructions(instructions)
        self.page, self.csp = build_page()

    @classmethod
    def from_files(cls, batch: str | Path, rankings: str | Path, instructions: str | Path) -> LabelApp:
        text = Path(instructions).read_text(encoding="utf-8") if Path(instructions).exists() else ""
        return cls(read_batch(batch), RankingStore(rankings), text)

    def batch_payload(self) -> dict:
        return {"items": [{"id": it.id, "prompt": it.prompt, "completions": it.completions} for it in self.items],
                "instructions_html": self.instructions_html,
                "specials": [{"name": n, "key": SPECIAL_KEYS[n], "meaning": m} for n, m in SPECIAL_LABELS.items()]}

    def progress(self, labeller: str) -> dict:
        done = self.store.done_ids(check_labeller(labeller), self.items)
        left = [it.id for it in self.items if it.id not in set(done)]
        return {"done": done, "total": len(self.items), "next": left[0] if left else None}

    def submit(self, payload) -> dict:
        sub = check_submission(payload, self.by_id)
        self.store.append(ranking_row(sub))
        what = f"ranks {sub.ranks}" if sub.ranks is not None else f"special {sub.special}"
        console.print(f"label: saved {sub.labeller}'s {what} for item {sub.item.id}", highlight=False)
        return {"saved": True, **self.progress(sub.labeller)}


class LabelHandler(BaseHTTPRequestHandler):
    """Routes requests to the server's :class:`LabelApp` (``self.server.app``)."""

    server_version = "detoxrl-label"
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass  # each submission is printed by LabelApp.submit; nothing else is worth a line

    def _send(self, status: int, body: bytes, content_type: str, extra: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, obj) -> None:
        self._send(status, json.dumps(obj, ensure_ascii=False).encode("utf-8"), "application/json; charset=utf-8")

    def _addressed_to_us(self) -> bool:
        port = self.server.server_address[1]
        names = {f"{HOST}:{port}", f"localhost:{port}"}
        origin = self.headers.get("Origin")
        return self.headers.get("Host") in names and (origin is None or origin in {f"http://{n}" for n in names})

    def do_GET(self):  # noqa: N802 - http.server's name
        if not self._addressed_to_us():
            self.close_connection = True
            return self._json(HTTPStatus.FORBIDDEN, {"error": "requests must come from this server's own page"})
        url = urlsplit(self.path)
        app: LabelApp = self.server.app
        if url.path in ("/", "/index.html"):
            return self._send(HTTPStatus.OK, app.page, "text/html; charset=utf-8", {"Content-Security-Policy": app.csp})
        if url.path == "/favicon.ico":
            return self._send(HTTPStatus.NO_CONTENT, b"", "image/x-icon")
        if url.path == "/api/batch":
            return self._json(HTTPStatus.OK, app.batch_payload())
        if url.path == "/api/progress":
            name = parse_qs(url.query).get("labeller", [""])[0]
            return self._guarded(lambda: app.progress(name))
        return self._json(HTTPStatus.NOT_FOUND, {"error": f"no such page: {url.path}"})

    def do_POST(self):  # noqa: N802
        if not self._addressed_to_us():
            self.close_connection = True  # the body is not read: the connection cannot carry another request
            return self._json(HTTPStatus.FORBIDDEN, {"error": "requests must come from this server's own page"})
        if urlsplit(self.path).path != "/api/submit":
            self.close_connection = True
            return self._json(HTTPStatus.NOT_FOUND, {"error": f"no such route: {self.path}"})
        length = int(self.headers.get("Content-Length") or 0)
        if not 0 < length <= MAX_BODY:
            self.close_connection = True
            return self._json(HTTPStatus.BAD_REQUEST, {"error": "a submission is a JSON body of at most 1 MiB"})
        try:
            payload = json.loads(self.rfile.read(length))
        except (ValueError, UnicodeDecodeError):
            return self._json(HTTPStatus.BAD_REQUEST, {"error": "the submission is not JSON"})
        return self._guarded(lambda: self.server.app.submit(payload))

    def _guarded(self, fn) -> None:
        try:
            result = fn()
        except SubmissionError as exc:
            return self._json(exc.status, {"error": str(exc)})
        return self._json(HTTPStatus.OK, result)


def make_server(app: LabelApp, port: int = 8765, host: str = HOST) -> ThreadingHTTPServer:
    """A threading server for ``app`` on ``host:port`` (0: a free port; ``server_address`` says which)."""
    server = ThreadingHTTPServer((host, port), LabelHandler)
    server.daemon_threads = True
    server.app = app
    return server


def label_files(cfg: Config, batch: str | Path | None = None) -> tuple[Path, Path, Path]:
    """``(batch, rankings, instructions)``: ``--batch`` or ``labels/batch.jsonl``; the rankings always in
    ``labels.output_dir``; the instructions beside the batch if there are some, else ``labels.output_dir``'s."""
    out = labels_dir(cfg)
    batch_path = Path(batch) if batch else out / BATCH
    beside = batch_path.parent / INSTRUCTIONS
    return batch_path, out / RANKINGS, beside if beside.exists() else out / INSTRUCTIONS


def serve(cfg: Config, port: int = 8765, batch: str | Path | None = None) -> None:
    """Serve the labelling page until Ctrl-C; every submission is already saved when the page hears so."""
    batch_path, rankings, instructions = label_files(cfg, batch)
    items = read_batch(batch_path)  # a missing or bad batch is refused before anything is written
    write_instructions(instructions, cfg.labels.criterion, cfg.labels.n_candidates)  # only when absent
    app = LabelApp(items, RankingStore(rankings), instructions.read_text(encoding="utf-8"))
    try:
        server = make_server(app, port)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {HOST}:{port} ({exc.strerror}); choose another --port") from None
    url = f"http://{HOST}:{server.server_address[1]}/"
    console.print(f"label: {len(app.items)} items from {batch_path}; rankings go to {rankings}; "
                  f"instructions: {instructions}")
    console.print(f"label: open [bold]{url}[/] (Ctrl-C stops the server; nothing submitted is lost)", highlight=False)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        console.print("label: stopped")
    finally:
        server.server_close()

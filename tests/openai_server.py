"""A scripted OpenAI-compatible HTTP server on 127.0.0.1 for tests: each request takes the next scripted reply."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def completion(text: str, prompt_tokens: int | None = 11, completion_tokens: int | None = 7) -> dict:
    reply = {"id": "x", "object": "chat.completion", "choices": [{"index": 0, "message": {"role": "assistant",
                                                                                         "content": text}}]}
    if prompt_tokens is not None:
        reply["usage"] = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens}
    return reply


class Server:
    """``script`` entries: ("json", obj) | ("status", code) | ("sleep", seconds, obj) | ("raw", text). When the
    script runs out, ``default`` answers. ``requests`` records every request body."""

    def __init__(self, default=("json", completion("ok [1]"))):
        self.script, self.default, self.requests = [], default, []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                server.requests.append({"path": self.path, "body": json.loads(body or b"{}"),
                                        "auth": self.headers.get("Authorization")})
                step = server.script.pop(0) if server.script else server.default
                kind = step[0]
                if kind == "sleep":
                    time.sleep(step[1])
                    kind, step = "json", ("json", step[2])
                if kind == "status":
                    self.send_response(step[1])
                    self.end_headers()
                    self.wfile.write(b"upstream unavailable")
                    return
                payload = json.dumps(step[1]).encode() if kind == "json" else step[1].encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                try:
                    self.wfile.write(payload)
                except BrokenPipeError:  # the client gave up (timeout test)
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()

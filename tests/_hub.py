"""A loopback stand-in for the Hugging Face Hub's upload protocol, as ``huggingface_hub`` (2.x) speaks it when its
xet transfer is off: the endpoints ``HfApi.create_repo`` and ``HfApi.upload_folder`` call, served from memory.

- ``POST /api/repos/create``: the repository, or 409 if it exists (``exist_ok=True`` accepts that);
- ``POST /api/validate-yaml``: the model card's metadata (parsed here with PyYAML: invalid YAML is a 400);
- ``POST /api/models/{repo}/preupload/{rev}``: each file's upload mode, ``lfs`` for weights, as the Hub decides;
- ``POST /{repo}.git/info/lfs/objects/batch``: git-lfs batch API, ``basic`` transfer, upload + verify actions;
- ``PUT /lfs/{oid}``: the object's bytes, checked against its sha256; ``POST /lfs/verify``: it arrived whole;
- ``POST /api/models/{repo}/commit/{rev}``: the NDJSON commit (header, base64 ``file``, ``lfsFile`` by oid).

and the one endpoint ``hf_hub_download`` calls, for the repositories in ``repos``:

- ``HEAD`` and ``GET /{repo}/resolve/{rev}/{path}``: the file with the headers the client reads (``X-Repo-Commit``,
  ``ETag``, ``Content-Length``), or the Hub's error, named by its ``X-Error-Code`` header (which huggingface_hub's
  ``hf_raise_for_status`` turns into its error classes): ``RepoNotFound`` (401, as the Hub answers a missing or
  private repository: one in ``private`` asked without an ``Authorization`` header), ``GatedRepo`` (403, a repository
  in ``gated``), ``EntryNotFound`` (404, a missing file).

The Hub's xet storage (hf_xet's content-addressed protocol) is not served: tests set ``HF_HUB_DISABLE_XET``, with
which huggingface_hub uploads through git-lfs, a protocol the Hub still accepts.

``python tests/_hub.py [PORT]`` serves it until interrupted and lists each commit's files (docs/deploy.md's
steps use it in place of the Hub).
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import re
import sys
import threading

import yaml


class LoopbackHub:
    """``with LoopbackHub() as hub:`` ... ``hub.url``; ``hub.repos[repo_id][path] -> bytes`` after a commit."""

    def __init__(self, port: int = 0):
        self.repos: dict[str, dict[str, bytes]] = {}
        self.created: list[dict] = []
        self.commits: list[dict] = []  # each commit's header
        self.auth: set[str] = set()  # Authorization headers seen
        self.requests: list[str] = []  # "METHOD path" in order
        self.gated: set[str] = set()  # repositories whose files need accepted conditions (none are accepted here)
        self.private: set[str] = set()  # repositories served only to a request with a token (any token here)
        self._objects: dict[str, bytes] = {}
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    out = b""
                    while (size := int(self.rfile.readline().split(b";")[0], 16)) > 0:
                        out += self.rfile.read(size)
                        self.rfile.readline()
                    self.rfile.readline()
                    return out
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _send(self, status: int, payload) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _resolve(self, body: bool) -> None:
                hub.requests.append(f"{'GET' if body else 'HEAD'} {self.path}")
                if self.headers.get("Authorization"):
                    hub.auth.add(self.headers["Authorization"])
                m = re.fullmatch(r"/(.+?/.+?)/resolve/([^/]+)/(.+)", self.path.split("?")[0])
                repo, path = (m.group(1), m.group(3)) if m else (None, None)
                if repo not in hub.repos or (repo in hub.private and not self.headers.get("Authorization")):
                    code, status = "RepoNotFound", 401
                elif repo in hub.gated:
                    code, status = "GatedRepo", 403
                elif path not in hub.repos[repo]:
                    code, status = "EntryNotFound", 404
                else:
                    data = hub.repos[repo][path]
                    self.send_response(200)
                    self.send_header("X-Repo-Commit", hashlib.sha1(repo.encode()).hexdigest())
                    self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    if body:
                        self.wfile.write(data)
                    return
                self.send_response(status)
                self.send_header("X-Error-Code", code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_HEAD(self):
                self._resolve(body=False)

            def do_GET(self):
                self._resolve(body=True)

            def do_PUT(self):
                hub.requests.append(f"PUT {self.path}")
                body = self._body()
                oid = self.path.rsplit("/", 1)[-1]
                if hashlib.sha256(body).hexdigest() != oid:
                    return self._send(400, {"error": "sha256 mismatch"})
                hub._objects[oid] = body
                self._send(200, {})

            def do_POST(self):
                hub.requests.append(f"POST {self.path}")
                if self.headers.get("Authorization"):
                    hub.auth.add(self.headers["Authorization"])
                body = self._body()
                path = self.path.split("?")[0]
                if path == "/api/repos/create":
                    req = json.loads(body)
                    repo = f"{req['organization']}/{req['name']}" if req.get("organization") else req["name"]
                    hub.created.append(req)
                    if repo in hub.repos:
                        return self._send(409, {"error": "You already created this model repo", "url": repo})
                    hub.repos[repo] = {}
                    return self._send(200, {"url": f"{hub.url}/{repo}", "name": repo})
                if path == "/api/validate-yaml":
                    text = json.loads(body)["content"]
                    front = re.match(r"---\n(.*?)\n---\n", text, re.S)
                    try:
                        meta = yaml.safe_load(front.group(1)) if front else None
                    except yaml.YAMLError as e:
                        return self._send(400, {"error": f"invalid YAML: {e}"})
                    warnings = [] if isinstance(meta, dict) else [{"message": "empty or missing metadata"}]
                    return self._send(200, {"errors": [], "warnings": warnings})
                if m := re.fullmatch(r"/api/models/(.+)/preupload/[^/]+", path):
                    if m.group(1) not in hub.repos:
                        return self._send(404, {"error": "Repository not found"})
                    files = [
                        {
                            "path": f["path"],
                            "shouldIgnore": False,
                            "oid": None,
                            "uploadMode": "lfs"
                            if f["path"].endswith((".safetensors", ".bin", ".pt")) or f["size"] > 10_000_000
                            else "regular",
                        }
                        for f in json.loads(body)["files"]
                    ]
                    return self._send(200, {"files": files})
                if m := re.fullmatch(r"/(.+)\.git/info/lfs/objects/batch", path):
                    req = json.loads(body)
                    assert req["operation"] == "upload" and "basic" in req["transfers"], req
                    objects = [
                        {
                            "oid": o["oid"],
                            "size": o["size"],
                            "authenticated": True,
                            "actions": {
                                "upload": {"href": f"{hub.url}/lfs/{o['oid']}"},
                                "verify": {"href": f"{hub.url}/lfs/verify"},
                            },
                        }
                        for o in req["objects"]
                    ]
                    return self._send(200, {"transfer": "basic", "objects": objects})
                if path == "/lfs/verify":
                    req = json.loads(body)
                    ok = len(hub._objects.get(req["oid"], b"")) == req["size"]
                    return self._send(200 if ok else 404, {"ok": ok})
                if m := re.fullmatch(r"/api/models/(.+)/commit/[^/]+", path):
                    repo, files = m.group(1), {}
                    if repo not in hub.repos:
                        return self._send(404, {"error": "Repository not found"})
                    for line in body.splitlines():
                        item = json.loads(line)
                        if item["key"] == "header":
                            hub.commits.append(item["value"])
                        elif item["key"] == "file":
                            files[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
                        elif item["key"] == "lfsFile":
                            data = hub._objects.get(item["value"]["oid"])
                            if data is None or len(data) != item["value"]["size"]:
                                return self._send(400, {"error": f"LFS object of {item['value']['path']} missing"})
                            files[item["value"]["path"]] = data
                        else:
                            return self._send(400, {"error": f"unsupported commit key {item['key']}"})
                    hub.repos[repo].update(files)
                    oid = hashlib.sha1(json.dumps(sorted(files)).encode()).hexdigest()
                    return self._send(
                        200,
                        {
                            "commitUrl": f"{hub.url}/{repo}/commit/{oid}",
                            "commitOid": oid,
                            "success": True,
                            "pullRequestUrl": None,
                        },
                    )
                self._send(404, {"error": f"not served here: POST {path}"})

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def sent(self, since: int = 0) -> list[tuple[str, str]]:
        """(revision, path) of each file sent (GET .../resolve/...), from request number ``since`` on."""
        return [
            tuple(r.split("/resolve/", 1)[1].split("?")[0].split("/", 1))
            for r in self.requests[since:]
            if r.startswith("GET ") and "/resolve/" in r
        ]

    def __enter__(self) -> LoopbackHub:
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


if __name__ == "__main__":
    with LoopbackHub(int(sys.argv[1]) if len(sys.argv) > 1 else 0) as hub:
        print(f"loopback Hub at {hub.url} (HF_ENDPOINT={hub.url} HF_HUB_DISABLE_XET=1)", flush=True)
        seen = 0
        try:
            while True:
                threading.Event().wait(0.5)
                for header in hub.commits[seen:]:
                    print(f"commit: {header.get('summary')}", flush=True)
                    for repo, files in hub.repos.items():
                        for path, data in sorted(files.items()):
                            print(
                                f"  {repo}/{path}: {len(data):,} bytes, sha256 {hashlib.sha256(data).hexdigest()}",
                                flush=True,
                            )
                seen = len(hub.commits)
        except KeyboardInterrupt:
            pass

#!/usr/bin/env python3
"""A fake Hugging Face Hub on 127.0.0.1 for nanoserve's tests: the API and resolve endpoints the Hub
serves, for repositories made from one local model directory.

    fake_hub.py --model DIR --port-file FILE --log FILE

Repositories:
    nanoserve/demo     the model directory as it is
    nanoserve/gated    the same, answering 401 unless "Authorization: Bearer secret-token" is sent
    nanoserve/corrupt  model.safetensors served with one byte flipped (its listed sha256 is the true one)
    nanoserve/flaky    the first download of model.safetensors breaks off halfway

Every request is appended to the log as "METHOD PATH RANGE".
"""
import argparse
import hashlib
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

COMMIT = "0123456789abcdef0123456789abcdef01234567"
REPOS = ("nanoserve/demo", "nanoserve/gated", "nanoserve/corrupt", "nanoserve/flaky")


def describe(directory):
    files = {}
    for name in sorted(os.listdir(directory)):
        with open(os.path.join(directory, name), "rb") as f:
            data = f.read()
        entry = {"rfilename": name, "size": len(data),
                 "blobId": hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()}
        if name.endswith(".safetensors") or name.endswith(".gguf"):
            entry["lfs"] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
        files[name] = (entry, data)
    return files


class Hub(BaseHTTPRequestHandler):
    files = {}
    log_path = ""
    flaky_done = False
    lock = threading.Lock()

    def log_message(self, *args):
        pass

    def record(self):
        with self.lock, open(self.log_path, "a") as log:
            log.write(f"{self.command} {self.path} {self.headers.get('Range', '-')}\n")

    def send(self, status, body=b"", headers=()):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self.record()
        parts = self.path.split("?")[0].strip("/").split("/")
        if parts[:2] == ["api", "models"] and len(parts) >= 6:
            repo, rest = "/".join(parts[2:4]), parts[4:]
            if not self.allowed(repo):
                return
            if rest[0] != "revision":
                return self.send(404)
            listing = {"id": repo, "sha": COMMIT, "siblings": [e for e, _ in self.files.values()]}
            return self.send(200, json.dumps(listing).encode(), [("Content-Type", "application/json")])
        if len(parts) >= 5 and parts[2] == "resolve":
            repo, name = "/".join(parts[:2]), "/".join(parts[4:])
            if not self.allowed(repo):
                return
            if name not in self.files:
                return self.send(404)
            return self.serve_file(repo, name)
        self.send(404)

    def allowed(self, repo):
        if repo not in REPOS:
            self.send(404, b'{"error": "Repository not found"}')
            return False
        if repo == "nanoserve/gated" and self.headers.get("Authorization") != "Bearer secret-token":
            self.send(401, b'{"error": "Access to model nanoserve/gated is restricted."}')
            return False
        return True

    def serve_file(self, repo, name):
        entry, data = self.files[name]
        if repo == "nanoserve/corrupt" and name == "model.safetensors":
            data = data[:-1] + bytes([data[-1] ^ 0xFF])
        etag = entry.get("lfs", {}).get("sha256", entry["blobId"])
        headers = [("ETag", f'"{etag}"'), ("X-Repo-Commit", COMMIT)]
        start = 0
        byte_range = self.headers.get("Range", "")
        if byte_range.startswith("bytes="):
            start = int(byte_range[6:].split("-")[0])
        if repo == "nanoserve/flaky" and name == "model.safetensors":
            with self.lock:
                first, Hub.flaky_done = not Hub.flaky_done, True
            if first:  # promise everything, send half, hang up
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data[: len(data) // 2])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(2)
                return
        if start:
            headers.append(("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}"))
            return self.send(206, data[start:], headers)
        self.send(200, data, headers)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--port-file", required=True)
    parser.add_argument("--log", required=True)
    args = parser.parse_args()
    Hub.files = describe(args.model)
    Hub.log_path = args.log
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hub)
    with open(args.port_file + ".tmp", "w") as f:
        f.write(str(server.server_address[1]))
    os.rename(args.port_file + ".tmp", args.port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""A Trainyard client for Python scripts, using only the standard library.

It speaks the REST routes under /api (SAGE Studio's contract; /openapi.json describes them):

    python3 examples/python_client.py submit data.jsonl --model Qwen/Qwen2.5-Coder-0.5B-Instruct --follow
    python3 examples/python_client.py list
    python3 examples/python_client.py follow TASK_ID
    python3 examples/python_client.py cancel TASK_ID
    python3 examples/python_client.py download TASK_ID --out model.tar.gz

The service is TRAINYARD_URL (default http://127.0.0.1:8080); in tokens mode give a token with
--token or TRAINYARD_TOKEN. Exit codes: 0 done (for follow: the task completed), 1 the task
failed or was cancelled, 2 the service refused the request (its reason on stderr), 3 it could
not be reached.

Import it to use the same calls from Python: Trainyard(url, token).create(...), .task(id), ...
"""

import argparse
import json
import os
import shutil
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from typing import Any, Dict, Iterator, List, Optional

ENDED = ("completed", "failed", "cancelled")


class TrainyardError(Exception):
    """The service refused a request: `status` is the HTTP status, the message its `detail`."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


class Unreachable(Exception):
    """The service could not be reached."""


class Trainyard:
    def __init__(self, url: str, token: Optional[str] = None, timeout: float = 60.0) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout

    # -- transport -------------------------------------------------------------------------

    def _request(self, method: str, path: str, body: Optional[bytes] = None, content_type: Optional[str] = None):
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(self.url + path, data=body, method=method, headers=headers)
        try:
            return urllib.request.urlopen(req, timeout=self.timeout)
        except urllib.error.HTTPError as e:
            raw = e.read().decode("utf-8", "replace")
            try:
                detail = json.loads(raw).get("detail", raw)
            except ValueError:
                detail = raw.strip() or e.reason
            raise TrainyardError(e.code, str(detail)) from None
        except urllib.error.URLError as e:
            raise Unreachable(f"cannot reach {self.url}: {e.reason}") from None

    def _json(self, method: str, path: str, payload: Any = None) -> Any:
        body = None if payload is None else json.dumps(payload).encode("utf-8")
        with self._request(method, path, body, "application/json" if body is not None else None) as res:
            return json.loads(res.read().decode("utf-8"))

    # -- the routes ------------------------------------------------------------------------

    def upload(self, path: str) -> Dict[str, str]:
        """Uploads a .json or .jsonl file; the answer's file_path is what create takes."""
        boundary = uuid.uuid4().hex
        name = os.path.basename(path).replace('"', "_")
        with open(path, "rb") as f:
            data = f.read()
        body = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode("utf-8") + data + f"\r\n--{boundary}--\r\n".encode("utf-8")
        with self._request("POST", "/api/finetune/upload-dataset", body, f"multipart/form-data; boundary={boundary}") as res:
            return json.loads(res.read().decode("utf-8"))

    def create(self, model_name: str, dataset_file: str, **settings: Any) -> Dict[str, Any]:
        """Creates a task (num_epochs, batch_size, learning_rate, ... as keyword arguments)."""
        return self._json("POST", "/api/finetune/create", {"model_name": model_name, "dataset_file": dataset_file, **settings})

    def tasks(self) -> List[Dict[str, Any]]:
        return self._json("GET", "/api/finetune/tasks")

    def task(self, task_id: str) -> Dict[str, Any]:
        return self._json("GET", f"/api/finetune/tasks/{urllib.parse.quote(task_id, safe='')}")

    def cancel(self, task_id: str) -> Dict[str, Any]:
        return self._json("POST", f"/api/finetune/tasks/{urllib.parse.quote(task_id, safe='')}/cancel")

    def delete(self, task_id: str) -> Dict[str, Any]:
        return self._json("DELETE", f"/api/finetune/tasks/{urllib.parse.quote(task_id, safe='')}")

    def download(self, task_id: str, out: str) -> int:
        """Streams the task's output folder (.tar.gz) to `out`; returns the bytes written."""
        with self._request("GET", f"/api/finetune/tasks/{urllib.parse.quote(task_id, safe='')}/download") as res:
            with open(out, "wb") as f:
                shutil.copyfileobj(res, f, 1 << 20)
                return f.tell()

    def follow(self, task_id: str, interval: float = 2.0) -> Iterator[Dict[str, Any]]:
        """Yields the task each time it changes, until it has ended."""
        last = None
        while True:
            t = self.task(task_id)
            seen = (t["status"], t["progress"], t["current_epoch"], t["loss"])
            if seen != last:
                last = seen
                yield t
            if t["status"] in ENDED:
                return
            time.sleep(interval)


# -- the command line ----------------------------------------------------------------------


def show(t: Dict[str, Any]) -> str:
    line = f"{t['task_id']} {t['status']} {t['progress']:.0f}% epoch {t['current_epoch']}/{t['total_epochs']} loss {t['loss']:.4f}"
    if t.get("error_message"):
        line += f" ({t['error_message']})"
    return line


def follow(client: Trainyard, task_id: str, interval: float) -> int:
    final = None
    for t in client.follow(task_id, interval):
        print(show(t), flush=True)
        final = t
    return 0 if final and final["status"] == "completed" else 1


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description="Trainyard client (standard library only)")
    p.add_argument("--url", default=os.environ.get("TRAINYARD_URL", "http://127.0.0.1:8080"))
    p.add_argument("--token", default=os.environ.get("TRAINYARD_TOKEN"))
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("submit", help="upload a local dataset (or name one on the server) and create a task")
    s.add_argument("dataset", help="a local .json/.jsonl file, or with --on-server a path the service accepts")
    s.add_argument("--on-server", action="store_true", help="the dataset is a path on the server (no upload)")
    s.add_argument("--model", required=True)
    s.add_argument("--epochs", type=int)
    s.add_argument("--batch-size", type=int)
    s.add_argument("--grad-accum", type=int)
    s.add_argument("--lr", type=float)
    s.add_argument("--max-length", type=int)
    s.add_argument("--no-8bit", action="store_true", help="load the model without 8-bit quantisation")
    s.add_argument("--follow", action="store_true", help="print progress until the task ends")
    s.add_argument("--interval", type=float, default=2.0)

    sub.add_parser("list", help="the tasks, newest first")
    f = sub.add_parser("follow", help="print a task's progress until it ends")
    f.add_argument("task_id")
    f.add_argument("--interval", type=float, default=2.0)
    c = sub.add_parser("cancel", help="cancel a waiting or running task")
    c.add_argument("task_id")
    d = sub.add_parser("download", help="save a completed task's output folder as .tar.gz")
    d.add_argument("task_id")
    d.add_argument("--out", help="file to write (default <task id>.tar.gz)")

    args = p.parse_args(argv)
    client = Trainyard(args.url, args.token)
    try:
        if args.command == "submit":
            dataset = args.dataset
            if not args.on_server:
                uploaded = client.upload(dataset)
                print(f"uploaded {uploaded['filename']} as {uploaded['file_path']}", flush=True)
                dataset = uploaded["file_path"]
            settings = {
                k: v
                for k, v in {
                    "num_epochs": args.epochs,
                    "batch_size": args.batch_size,
                    "gradient_accumulation_steps": args.grad_accum,
                    "learning_rate": args.lr,
                    "max_length": args.max_length,
                    "load_in_8bit": False if args.no_8bit else None,
                }.items()
                if v is not None
            }
            t = client.create(args.model, dataset, **settings)
            for w in t.get("warnings", []):
                print(f"warning: {w}", file=sys.stderr)
            print(f"task {t['task_id']} {t['status']}", flush=True)
            return follow(client, t["task_id"], args.interval) if args.follow else 0
        if args.command == "list":
            for t in client.tasks():
                print(show(t))
            return 0
        if args.command == "follow":
            return follow(client, args.task_id, args.interval)
        if args.command == "cancel":
            print(client.cancel(args.task_id)["message"])
            return 0
        if args.command == "download":
            out = args.out or f"{args.task_id}.tar.gz"
            n = client.download(args.task_id, out)
            print(f"saved {out} ({n} bytes)")
            return 0
    except TrainyardError as e:
        print(f"error {e.status}: {e.detail}", file=sys.stderr)
        return 2
    except Unreachable as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    return 2


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Load on `berth serve`: N concurrent clients for S seconds, each looping over one of
`ps` (GET /containers/json?all=1), `inspect` (GET /containers/ID/json), `logs -f`
(a follow that reads for a moment, then hangs up) and `run --rm` (create, attach,
start, wait). Prints one JSON object: requests, failures (with the first few), and the
service's open file descriptors and RSS before and after.

Usage: api-load.py --socket PATH --pid PID --image IMG [--clients 200] [--seconds 60]
"""

import argparse
import http.client
import json
import os
import socket
import threading
import time


class UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path, timeout=60):
        super().__init__("berth", timeout=timeout)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


def call(sock, method, path, body=None, expect=(200,)):
    c = UnixHTTP(sock)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        c.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
        r = c.getresponse()
        data = r.read()
        if r.status not in expect:
            raise RuntimeError(f"{method} {path}: {r.status} {data[:200]!r}")
        return data
    finally:
        c.close()


def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--socket", required=True)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--image", required=True)
    ap.add_argument("--clients", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=60)
    a = ap.parse_args()

    # A container that talks, for inspect and logs -f.
    talker = json.loads(call(a.socket, "POST", "/containers/create?name=load-talker", {
        "Image": a.image, "Cmd": ["sh", "-c", "while true; do echo tick; sleep 0.2; done"],
        "HostConfig": {"NetworkMode": "none"}}, expect=(201,)))["Id"]
    call(a.socket, "POST", f"/containers/{talker}/start", expect=(204,))
    time.sleep(1)
    before = {"fds": fds(a.pid), "rss_kib": rss_kib(a.pid)}

    def ps():
        call(a.socket, "GET", "/containers/json?all=1")

    def inspect():
        call(a.socket, "GET", f"/containers/{talker}/json")

    def streamed(method, path, what):
        """A request whose 200 response is read as a stream: (connection, response)."""
        c = UnixHTTP(a.socket)
        c.request(method, path)
        r = c.getresponse()
        if r.status != 200:
            c.close()
            raise RuntimeError(f"{what}: {r.status} {r.read()[:200]!r}")
        return c, r

    def follow():
        c, r = streamed("GET", f"/containers/{talker}/logs?follow=1&stdout=1&tail=1", "logs -f")
        try:
            if not r.read1(4096):
                raise RuntimeError("logs -f: nothing came")
        finally:
            c.close()

    def run_rm():
        cid = json.loads(call(a.socket, "POST", "/containers/create", {
            "Image": a.image, "Cmd": ["true"],
            "HostConfig": {"NetworkMode": "none", "AutoRemove": True}}, expect=(201,)))["Id"]
        # As the docker CLI: the wait is asked (its headers come back) before the start.
        w, r = streamed("POST", f"/containers/{cid}/wait?condition=removed", "wait")
        try:
            call(a.socket, "POST", f"/containers/{cid}/start", expect=(204,))
            out = json.loads(r.read())
        finally:
            w.close()
        if out.get("StatusCode") != 0:
            raise RuntimeError(f"run --rm: {out}")

    kinds = [ps, inspect, follow, run_rm]
    lock = threading.Lock()
    counts = {k.__name__: 0 for k in kinds}
    failures = []
    deadline = time.time() + a.seconds

    def client(i):
        work = kinds[i % len(kinds)]
        while time.time() < deadline:
            try:
                work()
                with lock:
                    counts[work.__name__] += 1
            except Exception as e:  # noqa: BLE001 - every failure is reported
                with lock:
                    failures.append(f"{work.__name__}: {e}")
                time.sleep(0.1)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(a.clients)]
    for t in threads:
        t.start()
    mid_rss = []
    while any(t.is_alive() for t in threads):
        time.sleep(1)
        mid_rss.append(rss_kib(a.pid))
    for t in threads:
        t.join()
    time.sleep(2)
    after = {"fds": fds(a.pid), "rss_kib": rss_kib(a.pid)}
    call(a.socket, "DELETE", f"/containers/{talker}?force=1", expect=(204,))
    print(json.dumps({
        "clients": a.clients, "seconds": a.seconds, "requests": counts,
        "failures": len(failures), "first_failures": failures[:5],
        "before": before, "after": after, "peak_rss_kib": max(mid_rss or [0]),
        # Flat or growing under steady load: the median RSS of the first and the last
        # tenth of the run (after the first 5 s, while the clients ramp up).
        "rss_early_kib": median_of(mid_rss[5:][:max(1, len(mid_rss) // 10)]),
        "rss_late_kib": median_of(mid_rss[-max(1, len(mid_rss) // 10):]),
    }))


def median_of(values):
    values = sorted(values)
    return values[len(values) // 2] if values else 0


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""The worst cases of issue 17, measured against a release scimguard in front of a fast
fake upstream with --rate 0. Standard library only; run through benches/worst_case.sh.

Each case prints one line `case: figure (target)`. The machine is shared and noisy:
these are figures of one run, not a test.
"""

import json
import os
import resource
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BINARY = sys.argv[1] if len(sys.argv) > 1 else "target/release/scimguard"
GROUP = "/t-1/scim/v2/Groups/9067729b3d-f987ac4d-a175-44f0-a528-6d23c5d2ec4d"


class Upstream(BaseHTTPRequestHandler):
    """Answers at once: 204 to PATCH, N bytes to GET /big?N, a small user otherwise."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_PATCH(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(204)
        self.send_header("content-length", "0")
        self.end_headers()

    def do_GET(self):
        if self.path.startswith("/big?"):
            size = int(self.path[5:])
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(size))
            self.end_headers()
            chunk = b"a" * 65536
            left = size
            while left > 0:
                self.wfile.write(chunk[: min(left, len(chunk))])
                left -= len(chunk)
            return
        body = b'{"id":"u-1","userName":"bjensen"}'
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def start_upstream():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server.server_address[1]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def start_proxy(upstream_port, *extra):
    port = free_port()
    proc = subprocess.Popen(
        [BINARY, "run", "--listen", f"127.0.0.1:{port}", "--upstream",
         f"http://127.0.0.1:{upstream_port}", "--rate", "0", *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "SCIMGUARD_LOG": "error"},
    )
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    raise SystemExit("scimguard did not start")


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def request(port, method, path, body=b"", timeout=60):
    """One request on a new connection; returns (status, body length, seconds)."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        head = (f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/scim+json\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
        s.sendall(head + body)
        got = bytearray()
        while True:
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            got += chunk
    head, _, rest = bytes(got).partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head else 0
    return status, len(rest), time.monotonic() - started


def patch_body(members):
    ops = [{"op": "add", "path": "members",
            "value": [{"value": f"906722b2be-{i:08x}-6e4e-4b2f-a94a-3ace8456a36c"}
                      for i in range(members)]}]
    return json.dumps({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                       "Operations": ops}).encode()


def case_linear(port, pid):
    costs = {}
    for members, repeat in [(1_000, 40), (10_000, 4)]:
        body = patch_body(members)
        request(port, "PATCH", GROUP, body)  # warm up
        cpu, wall = cpu_seconds(pid), time.monotonic()
        for _ in range(repeat):
            status, _, _ = request(port, "PATCH", GROUP, body)
            assert status == 204, status
        costs[members] = ((cpu_seconds(pid) - cpu) / repeat, (time.monotonic() - wall) / repeat)
    cpu_ratio = costs[10_000][0] / costs[1_000][0]
    wall_ratio = costs[10_000][1] / costs[1_000][1]
    print(f"10,000 vs 1,000-member PATCH: proxy CPU {costs[1_000][0] * 1e3:.1f} ms vs "
          f"{costs[10_000][0] * 1e3:.1f} ms = {cpu_ratio:.1f}x, wall {wall_ratio:.1f}x (target <= 15x)")


def case_head_of_line(port):
    body = patch_body(10_000)
    stop = threading.Event()

    def heavy():
        while not stop.is_set():
            request(port, "PATCH", GROUP, body)

    workers = [threading.Thread(target=heavy) for _ in range(8)]
    for w in workers:
        w.start()
    time.sleep(1)
    latencies = []
    end = time.monotonic() + 10
    while time.monotonic() < end:
        status, _, seconds = request(port, "GET", "/t-1/scim/v2/Users/u-1")
        assert status == 200, status
        latencies.append(seconds)
        time.sleep(0.01)
    stop.set()
    for w in workers:
        w.join()
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    print(f"small GET during 8 concurrent 10,000-member PATCHes: p50 {latencies[len(latencies) // 2] * 1e3:.1f} ms, "
          f"p99 {p99 * 1e3:.1f} ms, max {latencies[-1] * 1e3:.1f} ms over {len(latencies)} GETs (target p99 <= 100 ms)")


def case_idle_clients(port, clients=5_000):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    get = b"GET /t-1/scim/v2/Users/u-1 HTTP/1.1\r\nHost: x\r\n\r\n"
    socks = []
    for _ in range(clients):
        s = socket.create_connection(("127.0.0.1", port), timeout=30)
        s.sendall(get)
        socks.append(s)
    for s in socks:
        got = b""
        while b'"bjensen"}' not in got:
            chunk = s.recv(4096)
            assert chunk, "closed before answering"
            got += chunk
    time.sleep(20)
    open_after = 0
    for s in socks:
        s.setblocking(False)
        try:
            if s.recv(1) == b"":
                continue  # closed by the proxy
        except BlockingIOError:
            pass
        except OSError:
            continue
        open_after += 1
    status, _, seconds = request(port, "GET", "/t-1/scim/v2/Users/u-1")
    print(f"{clients} idle keep-alive clients: {open_after} still connected after 20 s idle; "
          f"a new client answered {status} in {seconds * 1e3:.0f} ms (target: all, < 1 s)")
    for s in socks:
        s.close()


def case_trickle(port):
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=90) as s:
        s.sendall(b"POST /t-1/scim/v2/Users HTTP/1.1\r\nHost: x\r\nContent-Type: application/scim+json\r\n"
                  b"Content-Length: 1000\r\n\r\n{")
        s.setblocking(False)
        got = b""
        while time.monotonic() - started < 90:
            try:
                chunk = s.recv(4096)
                if not chunk:
                    break
                got += chunk
                if b"\r\n\r\n" in got:
                    break
            except BlockingIOError:
                pass
            try:
                s.send(b" ")
            except OSError:
                break
            time.sleep(2)
    status = got.split(b" ", 2)[1].decode() if got else "none (closed)"
    print(f"a body trickling one byte every 2 s: answered {status} after "
          f"{time.monotonic() - started:.0f} s (target: 408 within 60 s)")


def case_large_answers(port, pid):
    time.sleep(1)
    before = rss_mib(pid)
    peak = [before]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], rss_mib(pid))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    results = []

    def big():
        results.append(request(port, "GET", "/big?10485760"))

    threads = [threading.Thread(target=big) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done.set()
    sampler.join()
    whole = sum(1 for status, length, _ in results if status == 200 and length == 10_485_760)
    time.sleep(5)
    after = rss_mib(pid)
    status, length, seconds = request(port, "GET", "/big?26214400")
    print(f"20 concurrent 10 MB answers: {whole}/20 whole; RSS {before:.0f} MiB before, peak "
          f"{peak[0]:.0f} MiB (+{peak[0] - before:.0f}), {after:.0f} MiB 5 s after (target: +64 MiB at most)")
    print(f"a 25 MB answer: {status}, {length} bytes in {seconds:.2f} s (target: 200, whole)")


def main():
    upstream = start_upstream()
    proxy, port = start_proxy(upstream, "--max-connections-per-ip", "0",
                              "--max-body-bytes", "4194304")
    try:
        case_linear(port, proxy.pid)
        case_head_of_line(port)
        case_large_answers(port, proxy.pid)
        case_idle_clients(port)
        case_trickle(port)
    finally:
        proxy.terminate()
        proxy.wait()


if __name__ == "__main__":
    main()

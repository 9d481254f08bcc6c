#!/usr/bin/env python3
"""The worst cases of issue 17, measured against a release scimguard in front of a fast
fake upstream with --rate 0. Standard library only; run through benches/worst_case.sh.

Each case prints one line `case: figure (target)`. The machine is shared and noisy:
these are figures of one run, not a test.

The fake upstream runs in a process of its own (`worst_case.py --fake-upstream`), one
thread on an epoll loop, so thousands of keep-alive connections from the proxy cost it
a few file descriptors and no threads, and its work never competes for this process's
interpreter lock with the clients being timed. The idle clients are non-blocking
sockets on a selector as well.
"""

import json
import os
import resource
import selectors
import socket
import subprocess
import sys
import threading
import time

GROUP = "/t-1/scim/v2/Groups/9067729b3d-f987ac4d-a175-44f0-a528-6d23c5d2ec4d"
USER = "/t-1/scim/v2/Users/u-1"
USER_BODY = b'{"id":"u-1","userName":"bjensen"}'
FILLER = b"a" * 65536


def raise_open_files():
    """The soft limit of open files up to the hard one: each idle client is a socket here,
    and each upstream connection of the proxy one in the fake upstream."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


# --- the fake upstream -------------------------------------------------------------


class Conn:
    """One connection to the fake upstream: bytes received, bytes and filler to send."""

    __slots__ = ("sock", "inbuf", "out", "filler")

    def __init__(self, sock):
        self.sock = sock
        self.inbuf = bytearray()
        self.out = bytearray()
        self.filler = 0


def chunked_length(data, start):
    """The end of a chunked body starting at `start` of `data`, or None if incomplete."""
    at = start
    while True:
        line_end = data.find(b"\r\n", at)
        if line_end < 0:
            return None
        size = int(bytes(data[at:line_end]).split(b";")[0], 16)
        at = line_end + 2
        if size == 0:
            trailer_end = data.find(b"\r\n\r\n", at - 2)
            return None if trailer_end < 0 else trailer_end + 4
        at += size + 2
        if at > len(data):
            return None


def answer(conn, method, target):
    """Queues the answer: 204 to PATCH, N bytes of JSON-ish filler to GET /big?N, a small
    user otherwise."""
    if method == b"PATCH":
        conn.out += b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n"
    elif target.startswith(b"/big?"):
        size = int(target[5:])
        conn.out += (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                     b"content-length: %d\r\n\r\n" % size)
        conn.filler += size
    else:
        conn.out += (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                     b"content-length: %d\r\n\r\n" % len(USER_BODY)) + USER_BODY


def serve_requests(conn):
    """Answers every whole request in the connection's input buffer."""
    data = conn.inbuf
    while True:
        head_end = data.find(b"\r\n\r\n")
        if head_end < 0:
            return
        lines = bytes(data[:head_end]).split(b"\r\n")
        method, target = lines[0].split(b" ")[:2]
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        if b"chunked" in headers.get(b"transfer-encoding", b"").lower():
            end = chunked_length(data, head_end + 4)
            if end is None:
                return
        else:
            end = head_end + 4 + int(headers.get(b"content-length", b"0"))
            if end > len(data):
                return
        del data[:end]
        answer(conn, method, target)


def fake_upstream():
    """Serves until stdin closes; prints its port first."""
    raise_open_files()
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8192)
    listener.setblocking(False)
    print(listener.getsockname()[1], flush=True)
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ, None)
    selector.register(sys.stdin, selectors.EVENT_READ, "stdin")

    def close(conn):
        selector.unregister(conn.sock)
        conn.sock.close()

    while True:
        for key, events in selector.select():
            if key.data is None:
                while True:
                    try:
                        sock, _ = listener.accept()
                    except BlockingIOError:
                        break
                    sock.setblocking(False)
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    selector.register(sock, selectors.EVENT_READ, Conn(sock))
                continue
            if key.data == "stdin":
                return
            conn = key.data
            if events & selectors.EVENT_READ:
                try:
                    got = conn.sock.recv(1 << 20)
                except (BlockingIOError, InterruptedError):
                    got = None
                except OSError:
                    got = b""
                if got == b"":
                    close(conn)
                    continue
                if got:
                    conn.inbuf += got
                    serve_requests(conn)
            try:
                while conn.out or conn.filler:
                    if conn.out:
                        sent = conn.sock.send(conn.out)
                        del conn.out[:sent]
                    else:
                        sent = conn.sock.send(memoryview(FILLER)[:min(conn.filler, len(FILLER))])
                        conn.filler -= sent
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                close(conn)
                continue
            want = selectors.EVENT_READ
            if conn.out or conn.filler:
                want |= selectors.EVENT_WRITE
            if key.events != want:
                selector.modify(conn.sock, want, conn)


def start_upstream():
    proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--fake-upstream"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    return proc, int(proc.stdout.readline())


# --- the proxy ----------------------------------------------------------------------


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def start_proxy(binary, upstream_port, *extra):
    port = free_port()
    proc = subprocess.Popen(
        [binary, "run", "--listen", f"127.0.0.1:{port}", "--upstream",
         f"http://127.0.0.1:{upstream_port}", "--rate", "0", *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "SCIMGUARD_LOG": "error"},
    )
    for _ in range(200):
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


# --- the cases ----------------------------------------------------------------------


def case_linear(port, pid):
    """Proxy CPU per request, from /proc (the fake upstream is another process)."""
    costs = {}
    for members, repeat in [(1_000, 600), (10_000, 60)]:
        body = patch_body(members)
        for _ in range(3):
            request(port, "PATCH", GROUP, body)  # warm up
        cpu, wall = cpu_seconds(pid), time.monotonic()
        for _ in range(repeat):
            status, _, _ = request(port, "PATCH", GROUP, body)
            assert status == 204, status
        costs[members] = ((cpu_seconds(pid) - cpu) / repeat, (time.monotonic() - wall) / repeat)
    cpu_ratio = costs[10_000][0] / costs[1_000][0]
    wall_ratio = costs[10_000][1] / costs[1_000][1]
    print(f"10,000 vs 1,000-member PATCH: proxy CPU {costs[1_000][0] * 1e3:.1f} ms vs "
          f"{costs[10_000][0] * 1e3:.1f} ms = {cpu_ratio:.1f}x, wall {wall_ratio:.1f}x "
          f"(target <= 15x)", flush=True)


def case_head_of_line(port):
    body = patch_body(10_000)
    stop = threading.Event()

    def heavy():
        while not stop.is_set():
            request(port, "PATCH", GROUP, body)

    workers = [threading.Thread(target=heavy, daemon=True) for _ in range(8)]
    for w in workers:
        w.start()
    time.sleep(1)
    latencies = []
    end = time.monotonic() + 10
    while time.monotonic() < end:
        status, _, seconds = request(port, "GET", USER)
        assert status == 200, status
        latencies.append(seconds)
        time.sleep(0.01)
    stop.set()
    for w in workers:
        w.join()
    latencies.sort()
    p99 = latencies[max(int(len(latencies) * 0.99) - 1, 0)]
    print(f"small GET during 8 concurrent 10,000-member PATCHes: p50 "
          f"{latencies[len(latencies) // 2] * 1e3:.1f} ms, p99 {p99 * 1e3:.1f} ms, max "
          f"{latencies[-1] * 1e3:.1f} ms over {len(latencies)} GETs (target p99 <= 100 ms)",
          flush=True)


def case_idle_clients(port, clients=5_000):
    """`clients` keep-alive connections, each answered once, then idle for 20 s."""
    get = f"GET {USER} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    selector = selectors.DefaultSelector()
    socks = []
    started = time.monotonic()
    for _ in range(clients):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        socks.append(s)
        selector.register(s, selectors.EVENT_WRITE, bytearray())
    answered = closed = 0
    deadline = time.monotonic() + 120
    while answered + closed < clients and time.monotonic() < deadline:
        for key, events in selector.select(timeout=1):
            s, got = key.fileobj, key.data
            if events & selectors.EVENT_WRITE:
                try:
                    s.send(get)  # a few bytes: one send takes them all
                    selector.modify(s, selectors.EVENT_READ, got)
                except (BlockingIOError, InterruptedError):
                    pass
                except OSError:
                    selector.unregister(s)
                    closed += 1
                continue
            try:
                chunk = s.recv(4096)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                chunk = b""
            if not chunk:
                selector.unregister(s)
                closed += 1
                continue
            got += chunk
            if got.endswith(USER_BODY):
                selector.unregister(s)
                answered += 1
    selector.close()
    setup = time.monotonic() - started
    time.sleep(20)
    open_after = 0
    for s in socks:
        try:
            if s.recv(1) == b"":
                continue  # closed by the proxy
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            continue
        open_after += 1
    status, _, seconds = request(port, "GET", USER)
    print(f"{clients} idle keep-alive clients: {answered} answered in {setup:.1f} s, "
          f"{open_after} still connected after 20 s idle; a new client answered {status} "
          f"in {seconds * 1e3:.0f} ms (target: all {clients}, < 1 s)", flush=True)
    for s in socks:
        s.close()


def case_trickle(port):
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=90) as s:
        s.sendall(b"POST /t-1/scim/v2/Users HTTP/1.1\r\nHost: x\r\n"
                  b"Content-Type: application/scim+json\r\nContent-Length: 1000\r\n\r\n{")
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
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                break
            try:
                s.send(b" ")
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                break
            time.sleep(2)
    status = got.split(b" ", 2)[1].decode() if got else "none (closed)"
    print(f"a body trickling one byte every 2 s: answered {status} after "
          f"{time.monotonic() - started:.0f} s (target: 408 within 60 s)", flush=True)


def case_large_answers(port, pid):
    request(port, "GET", USER)
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
          f"{peak[0]:.0f} MiB (+{peak[0] - before:.0f}), {after:.0f} MiB 5 s after "
          f"(target: +64 MiB at most)", flush=True)
    print(f"a 25 MB answer: {status}, {length} bytes in {seconds:.2f} s "
          f"(target: 200, {26_214_400} bytes)", flush=True)


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else "target/release/scimguard"
    raise_open_files()
    upstream, upstream_port = start_upstream()
    started = time.monotonic()
    # Each case has a proxy of its own: one case's memory or connections never weigh
    # on the next one's figures.
    cases = [
        lambda port, pid: case_linear(port, pid),
        lambda port, pid: case_head_of_line(port),
        lambda port, pid: case_large_answers(port, pid),
        lambda port, pid: case_idle_clients(port),
        lambda port, pid: case_trickle(port),
    ]
    try:
        for case in cases:
            proxy, port = start_proxy(binary, upstream_port, "--max-connections-per-ip", "0",
                                      "--max-body-bytes", "4194304")
            try:
                case(port, proxy.pid)
            finally:
                proxy.terminate()
                proxy.wait()
    finally:
        upstream.stdin.close()
        upstream.wait()
    print(f"(all cases in {time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    if sys.argv[1:] == ["--fake-upstream"]:
        fake_upstream()
    else:
        main()

#!/usr/bin/env python3
"""Good-login latency under attack (not a test): a real PAM login of
xbt-alice through the real helper and daemon, idle and during each flood,
side by side. Run through benches/frontdoor.sh (builds, runs as root).

Floods (each kept up while the logins are measured):
  idle-connections  1,100 connections from 50 addresses (127.0.3.x), a third
                    idle, a third with a header cut short, a third with a
                    body cut short; closed ones are opened again at once
  wrong-passwords   140 parallel wrong-password logins for xbt-bob from one
                    address (127.0.0.2)
  rotating          140 parallel wrong-password logins, a new user name and
                    a new address (1,000 in 127.0.4.0-127.0.7.255) each time
Alice logs in once before (a returning client), as in the system test.
Prints a Markdown table.
"""

import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

BIN = sys.argv[1] if len(sys.argv) > 1 else "target/release"
LOGINS = int(os.environ.get("BENCH_LOGINS", "20"))
ALICE = ("xbt-alice", "Alice-pw-1")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def connect_from(source, port, timeout=5.0):
    s = socket.socket()
    s.settimeout(timeout)
    s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    return s


def post(source, port, body, timeout=90.0):
    """One POST /plain/ with Connection: close; (status, seconds)."""
    started = time.monotonic()
    try:
        s = connect_from(source, port, timeout)
        s.sendall(
            (
                "POST /plain/ HTTP/1.1\r\nHost: localhost\r\n"
                "Content-Type: application/x-www-form-urlencoded\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n{body}"
            ).encode()
        )
        answer = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            answer += chunk
        s.close()
        status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else 0
    except OSError:
        status = 0
    return status, time.monotonic() - started


def login(port, user, password, source="127.0.0.1"):
    return post(source, port, f"user={user}&password={password}&task=listsessions")


def measure(port):
    times, failed = [], 0
    for _ in range(LOGINS):
        status, secs = login(port, *ALICE)
        if status == 200:
            times.append(secs * 1000)
        else:
            failed += 1
    return times, failed


class Flood:
    def __init__(self):
        self.stop = threading.Event()
        self.threads = []
        self.sent = 0
        self.lock = threading.Lock()

    def next(self):
        with self.lock:
            self.sent += 1
            return self.sent

    def start(self, n, target):
        for _ in range(n):
            t = threading.Thread(target=target, daemon=True)
            t.start()
            self.threads.append(t)

    def end(self):
        self.stop.set()


def idle_connections(port):
    flood = Flood()
    count = 1100
    per_thread = 55

    def hold():
        base = flood.next() * per_thread
        held = {}
        while not flood.stop.is_set():
            for i in range(base, base + per_thread):
                s = held.get(i)
                if s is not None:
                    try:
                        s.setblocking(False)
                        if s.recv(4096) == b"":
                            raise OSError
                        continue
                    except BlockingIOError:
                        continue
                    except OSError:
                        s.close()
                try:
                    s = connect_from(f"127.0.3.{i % 50 + 1}", port)
                    if i % 3 == 1:
                        s.sendall(b"POST /plain/ HTTP/1.1\r\nHost: x\r\nContent-Le")
                    elif i % 3 == 2:
                        s.sendall(b"POST /plain/ HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nuser=x")
                    held[i] = s
                except OSError:
                    held.pop(i, None)
            flood.stop.wait(0.05)
        for s in held.values():
            s.close()

    flood.start(count // per_thread, hold)
    return flood


def wrong_passwords(port, rotating):
    flood = Flood()

    def storm():
        while not flood.stop.is_set():
            n = flood.next()
            if rotating:
                source = f"127.0.{4 + n // 250 % 4}.{n % 250 + 1}"
                login(port, f"xfd-ghost-{n}", "Wrong-pw-9", source)
            else:
                login(port, "xbt-bob", f"Wrong-pw-{n}", "127.0.0.2")

    flood.start(140, storm)
    return flood


def main():
    work = tempfile.mkdtemp(prefix="x2gofd.")
    os.chmod(work, 0o755)
    helper_sock = os.path.join(work, "helper.sock")
    conf = os.path.join(work, "x2gobroker.conf")
    profiles = os.path.join(work, "profiles.conf")
    with open(conf, "w") as f:
        f.write(f"[global]\ncookie-directory = {work}/cookies\n")
    with open(profiles, "w") as f:
        f.write("[alice-desktop]\nname = Alice\nhost = srv1 (127.0.0.1:2222)\ncommand = XFCE\nacl-users-allow = xbt-alice\n")
    port = free_port()
    env = dict(os.environ)
    env.pop("X2GOBROKER_SYSLOG_SOCKET", None)
    helper = subprocess.Popen(
        [f"{BIN}/x2gobroker-authhelper", "--socket", helper_sock, "--socket-mode", "0666", "--foreground"],
        stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "helper.log"), "w"), env=env,
    )
    env.update(X2GOBROKER_AUTHSERVICE_SOCKET=helper_sock, X2GOBROKER_SESSIONPROFILES=profiles)
    # The unit's old descriptor limit, as in the attack.
    daemon = subprocess.Popen(
        ["prlimit", "--nofile=1024:1024", "--", f"{BIN}/x2gobroker-daemon", "-C", conf,
         "-b", f"127.0.0.1:{port}", "--control-socket", os.path.join(work, "control.sock")],
        stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "daemon.log"), "w"), env=env,
    )
    try:
        for _ in range(300):
            if os.path.exists(helper_sock):
                try:
                    socket.create_connection(("127.0.0.1", port), 1).close()
                    break
                except OSError:
                    pass
            time.sleep(0.1)
        status, _ = login(port, *ALICE)
        assert status == 200, f"first login: {status}"
        rows = []
        for name, start in [
            ("idle", None),
            ("1,100 idle / half-sent connections", idle_connections),
            ("140 parallel wrong passwords, one address", lambda p: wrong_passwords(p, False)),
            ("140 parallel wrong passwords, rotating users and addresses", lambda p: wrong_passwords(p, True)),
        ]:
            flood = start(port) if start else None
            if flood:
                time.sleep(3)  # let the flood reach full strength
            times, failed = measure(port)
            if flood:
                flood.end()
                time.sleep(3)  # the daemon sheds what was left
            rows.append((name, times, failed))
        idle = statistics.median(rows[0][1])
        print("| during | good logins | median ms | p90 ms | max ms | median − idle ms |")
        print("|---|---:|---:|---:|---:|---:|")
        for name, times, failed in rows:
            if not times:
                print(f"| {name} | 0 of {LOGINS} | – | – | – | – |")
                continue
            times.sort()
            med = statistics.median(times)
            p90 = times[min(len(times) - 1, int(len(times) * 0.9))]
            print(f"| {name} | {len(times)} of {LOGINS} | {med:.1f} | {p90:.1f} | {times[-1]:.1f} | {med - idle:+.1f} |")
    finally:
        daemon.kill()
        helper.kill()
        daemon.wait()
        helper.wait()


if __name__ == "__main__":
    main()

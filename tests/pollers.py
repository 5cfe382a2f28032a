"""Ordinary users polling the daemon, from a process of their own so that
what it measures is the daemon's answer time, not the measuring test's
threads (issue 26: fair shares). Each user, in a thread, asks for PATH
every EVERY seconds (a random start within the first period), a new
connection each time, as a browser tab left open does.

    python tests/pollers.py PORT SECONDS EVERY PATH < cookies

reads one session cookie a line and prints one JSON line: [[status,
seconds], ...] of every request. Used by test_hostile.py and bench.py."""
import http.client
import json
import random
import subprocess
import sys
import threading
import time


def poll(port, cookies, seconds, every, path):
    results, end = [], time.monotonic() + seconds

    def user(cookie):
        time.sleep(random.random() * every)
        while time.monotonic() < end:
            started = time.monotonic()
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
                conn.request("GET", path, headers={"Cookie": cookie})
                r = conn.getresponse()
                r.read()
                status = r.status
                conn.close()
            except OSError as e:
                status = repr(e)
            took = time.monotonic() - started
            results.append((status, took))
            time.sleep(max(0.0, every - took))
    threads = [threading.Thread(target=user, args=(c,), daemon=True) for c in cookies]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 150)
    return results


def run(port, cookies, seconds, every, path):
    """poll() in a process of its own: [(status, seconds)]."""
    out = subprocess.run([sys.executable, __file__, str(port), str(seconds), str(every), path],
                         input="\n".join(cookies) + "\n", capture_output=True, text=True,
                         timeout=seconds + 200, check=True).stdout
    return [tuple(r) for r in json.loads(out)]


def summary(results):
    """{"requests", "refused" (503), "failed" (any other non-200), "p50", "p99", "max"} (seconds)."""
    times = sorted(t for _, t in results)
    at = lambda p: times[min(len(times) - 1, int(p * len(times)))] if times else None  # noqa: E731
    return {"requests": len(results), "refused": sum(1 for s, _ in results if s == 503),
            "failed": sum(1 for s, _ in results if s not in (200, 503)),
            "p50": at(0.5), "p99": at(0.99), "max": times[-1] if times else None}


if __name__ == "__main__":
    port, seconds, every, path = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
    print(json.dumps(poll(port, [line.strip() for line in sys.stdin if line.strip()], seconds, every, path)))

"""Logins an attacker cannot bend, against a real root multi-user daemon
with real PAM users: the failed-login throttle and trusted proxies, one
failure time whatever the cause, bounded login slots, accounts that change
while logged in, accounts that are not people, and sessions kept in a
root-only store that survives a restart and is shared by two daemons."""
import base64
import contextlib
import grp
import hashlib
import http.client
import ipaddress
import json
import os
import pwd
import secrets
import subprocess
import threading
import time
import tracemalloc
import urllib.parse

import pytest
import webtest

import flightjobd
from support import ROOT, bystander

pytestmark = pytest.mark.root


@pytest.fixture
def pam(pam_service):
    """The project's PAM service file under a name of this test's own, so
    that no other checkout's copy of /etc/pam.d/flight-job is in play."""
    name = "flightjob-test-%s" % secrets.token_hex(4)
    with open(os.path.join(ROOT, "etc", "pam.d", "flight-job")) as src, open("/etc/pam.d/" + name, "w") as dst:
        dst.write(src.read())
    yield name
    os.unlink("/etc/pam.d/" + name)


@pytest.fixture
def daemon(make_daemon, runtime, pam):
    """daemon(**auth keys) -> a root multi-user daemon process behind a
    trusted proxy at 127.0.0.1 (so each test client names its own address
    in X-Forwarded-For)."""
    def make(server=None, **auth):
        return make_daemon(server=dict({"multi_user": True, "trusted_proxies": ["127.0.0.1"]}, **(server or {})),
                           worker=runtime, auth=dict({"pam_service": pam}, **auth),
                           storage={"state_dir": "~/.local/share/flight-job"}, templates={"site_dirs": []})
    return make


class Web:
    """One HTTP client of a daemon process: from the address it names in
    X-Forwarded-For, with its session cookie (or HTTP Basic)."""

    def __init__(self, d, addr="198.51.100.1", basic=None):
        self.d, self.addr, self.basic = d, addr, basic
        self.cookie = self.csrf = None

    def __call__(self, method, path, body=None, headers=None):
        """(status, JSON or text, headers, seconds taken)."""
        headers = dict(headers or {})
        if self.addr:
            headers["X-Forwarded-For"] = self.addr
        if self.cookie:
            headers["Cookie"] = "%s=%s" % (flightjobd.COOKIE, self.cookie)
            if method != "GET" and self.csrf:
                headers["X-CSRF-Token"] = self.csrf
        if self.basic:
            headers["Authorization"] = "Basic " + base64.b64encode(("%s:%s" % self.basic).encode()).decode()
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        conn = http.client.HTTPConnection("127.0.0.1", self.d.port, timeout=60)
        start = time.monotonic()
        try:
            conn.request(method, path, body=data, headers=headers)
            r = conn.getresponse()
            raw = r.read()
        finally:
            conn.close()
        took = time.monotonic() - start
        for k, v in r.getheaders():
            if k.lower() == "set-cookie" and v.startswith(flightjobd.COOKIE + "="):
                self.cookie = v.split(";")[0].split("=", 1)[1].strip('"') or None
        try:
            content = json.loads(raw)
        except ValueError:
            content = raw.decode("utf-8", "replace")
        return r.status, content, dict(r.getheaders()), took

    def login(self, user, password):
        status, body, _, took = self("POST", "/api/login", {"username": user, "password": password})
        if status == 200:
            self.csrf = body["csrf_token"]
        return status, took

    def status(self, method, path, body=None):
        return self(method, path, body)[0]


def wait_for(predicate, bound, step=0.25):
    """Seconds until predicate() held, or None if not within bound."""
    start = time.monotonic()
    while time.monotonic() - start < bound:
        if predicate():
            return time.monotonic() - start
        time.sleep(step)
    return None


# client addresses and trusted proxies


def test_client_address_reads_forwarded_for_only_from_trusted_proxies():
    nets = [ipaddress.ip_network(n) for n in ("127.0.0.1", "10.0.0.0/8", "2001:db8::/32")]

    def addr(peer, xff=None, proxies=nets):
        environ = {"REMOTE_ADDR": peer}
        if xff is not None:
            environ["HTTP_X_FORWARDED_FOR"] = xff
        return flightjobd.client_address(environ, proxies)
    assert addr("127.0.0.1", "203.0.113.9", proxies=[]) == "127.0.0.1"  # nobody trusted: the header means nothing
    assert addr("192.0.2.7", "203.0.113.9") == "192.0.2.7"  # from an untrusted peer, ignored
    assert addr("127.0.0.1", "203.0.113.9") == "203.0.113.9"
    assert addr("127.0.0.1", "6.6.6.6, 203.0.113.9") == "203.0.113.9"  # the client's own entries never count
    assert addr("127.0.0.1", "6.6.6.6, 198.51.100.7, 10.1.2.3") == "198.51.100.7"  # past every trusted hop
    assert addr("::ffff:127.0.0.1", "203.0.113.9") == "203.0.113.9"
    assert addr("2001:db8::1", "[2001:db8:1::5], 2001:db8::2") == "2001:db8:1::5"
    assert addr("127.0.0.1", "not-an-address") == "127.0.0.1"  # a garbled hop: the proxy itself
    assert addr("127.0.0.1") == "127.0.0.1" and addr("127.0.0.1", "") == "127.0.0.1"
    with pytest.raises(flightjobd.ConfigError) as e:
        flightjobd.check_config({"server": {"trusted_proxies": ["10.0.0.0/33"]}})
    assert "server.trusted_proxies" in str(e.value)


def test_a_forwarded_for_header_from_an_untrusted_peer_changes_nothing(multi_app, unix_users, pam):
    a, web = multi_app(auth={"throttle_free": 2, "throttle_delay": 60, "failure_delay": 0, "pam_service": pam})
    u = unix_users.create()
    for i in range(3):
        web.post_json("/api/login", {"username": u.name, "password": "bad"},
                      headers={"X-Forwarded-For": "203.0.113.%d" % i}, status=401)
    web.post_json("/api/login", {"username": u.name, "password": u.password},
                  headers={"X-Forwarded-For": "203.0.113.99"}, status=429)  # still 127.0.0.1 to us


# the throttle


def test_failures_from_one_address_never_lock_out_another(daemon, unix_users):
    d = daemon(failure_delay=0.2)
    alice = unix_users.create()
    attacker = Web(d, "203.0.113.5")
    seen = [attacker.login(alice.name, "guess%d" % i)[0] for i in range(8)]
    assert seen[:3] == [401, 401, 401] and seen[-1] == 429, seen  # the pair is held back
    assert attacker.login(alice.name, alice.password)[0] == 429  # even the right password, from there
    bad_basic = Web(d, "203.0.113.5", basic=(alice.name, alice.password))
    assert bad_basic.status("GET", "/api/session") == 429
    # from an address that did not fail, alice logs in at once, by form, API and Basic
    alice_web = Web(d, "198.51.100.20")
    status, took = alice_web.login(alice.name, alice.password)
    assert status == 200 and took < 1.5
    assert alice_web.status("GET", "/api/session") == 200
    assert Web(d, "198.51.100.21", basic=(alice.name, alice.password)).status("GET", "/api/session") == 200
    # the proxy's own address took no blame: waitress passed X-Forwarded-For through
    assert Web(d, None).login(alice.name, alice.password)[0] == 200
    # and no other forwarding header reaches a URL the daemon builds
    status, _, headers, _ = Web(d, "198.51.100.22")("GET", "/scripts", headers={
        "X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "gopher", "Forwarded": "host=evil.example"})
    assert status == 303 and "evil.example" not in headers["Location"] and "gopher" not in headers["Location"]


def test_a_spray_across_many_names_from_one_address_is_refused(daemon, unix_users):
    d = daemon(failure_delay=0)
    alice = unix_users.create()
    sprayer = Web(d, "203.0.113.50")
    seen = [sprayer.login("fjspray%02d" % i, "Winter2024!")[0] for i in range(50)]
    assert seen[:30] == [401] * 30 and seen[30:] == [429] * 20, seen
    assert sprayer.login(alice.name, alice.password)[0] == 429  # that address, for every name
    assert Web(d, "203.0.113.51").login(alice.name, alice.password)[0] == 200  # its neighbour is fine


HOLDER = """
import socket, sys, time
held = []
for i in range(int(sys.argv[2])):
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
    s.sendall(b"GET /api/session HTTP/1.1\\r\\n")  # half a request: never finished
    held.append(s)
print("held", flush=True)
time.sleep(120)
"""


def as_user(user, *argv):
    """The system Python running argv as the user (a local user's own process)."""
    return subprocess.Popen(["/usr/bin/python3", "-c"] + list(argv), user=user.uid, group=user.gid,
                            extra_groups=[], stdout=subprocess.PIPE, cwd="/")


@pytest.mark.parametrize("apart", [True, False], ids=["apart", "one-address"])
def test_tunnelled_users_are_counted_apart(daemon, unix_users, apart):
    """Issue 26 item 9: users who reach the daemon through an SSH tunnel all
    come from 127.0.0.1, one address for the connection cap and the login
    throttle: one local user holding 150 half-open connections (as
    themselves, as their sshd would) shut every tunnelled user out. The
    kernel says which local user owns each client socket, so each is
    counted apart (server.loopback_users); a site can turn that off, and
    then all of loopback is one address again."""
    d = daemon(server={"trusted_proxies": [], "loopback_users": apart}, failure_delay=0)
    mallory, alice = unix_users.create(), unix_users.create()
    holder = as_user(mallory, HOLDER, str(d.port), "150")
    try:
        assert holder.stdout.readline() == b"held\n"
        time.sleep(0.5)  # the loop has accepted them all (or closed those past the cap)
        web = Web(d, None)  # root's own connections: another local user
        try:
            status, took = web.login(alice.name, alice.password)
        except (ConnectionError, http.client.HTTPException) as e:
            status = repr(e)
        if not apart:
            assert status != 200, status  # past the cap: closed before a byte is read
            return
        assert status == 200 and web.status("GET", "/api/session") == 200, status
    finally:
        holder.kill()
        holder.wait()
    # the login throttle: mallory's failures from loopback hold back mallory's own connections only
    guesses = as_user(mallory, GUESSER, str(d.port), alice.name)
    seen = json.loads(guesses.communicate(timeout=120)[0])
    assert seen[:30] == [401] * 30 and seen[-1] == 429, seen
    assert Web(d, None).login(alice.name, alice.password)[0] == 200


GUESSER = """
import http.client, json, sys
seen = []
for i in range(32):
    conn = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=60)
    conn.request("POST", "/api/login", body=json.dumps({"username": "fjspray%02d" % i, "password": "x"}),
                 headers={"Content-Type": "application/json"})
    seen.append(conn.getresponse().status)
    conn.close()
print(json.dumps(seen))
"""


def test_the_waitress_internals_used_are_there():
    """flightjobd reaches past waitress's public adjustments in one place
    (its "Waitress internals" section). Each thing it uses, used here as
    the daemon does: this fails the day a waitress release changes one."""
    import socket
    from waitress import create_server
    from waitress.channel import HTTPChannel
    seen = []

    def app(environ, start_response):
        seen.append(flightjobd.waitress_channel(environ))
        start_response("200 OK", [("Content-Length", "2")])
        return [b"ok"]
    server = create_server(app, host="127.0.0.1", port=0, threads=1)
    assert server.channel_class is HTTPChannel and isinstance(server.active_channels, dict)
    flightjobd.bound_clients(server, {"connections_per_address": 1, "request_read_timeout": 5,
                                      "loopback_users": True}, [])
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", server.effective_port, timeout=10)
        conn.request("GET", "/")
        assert conn.getresponse().read() == b"ok"
        channel = seen[0]  # the request's connection, through its client_disconnected method
        assert isinstance(channel, server.channel_class) and isinstance(channel.socket, socket.socket)
        assert channel.server is server and callable(server.pull_trigger)  # close_connection_later
        assert channel.key == "loopback uid %d" % os.getuid() and channel.began  # handle_accept, received
        assert list(server.active_channels.values()) == [channel]
        second = socket.create_connection(("127.0.0.1", server.effective_port))  # past the cap of 1: closed
        second.settimeout(5)
        assert second.recv(1) == b""
        second.close()
        channel.request = object()  # a request still arriving, its first byte long ago: maintenance closes it
        channel.began = time.time() - 60
        server.maintenance(time.time())
        assert channel.will_close
    finally:
        server.close()


def test_blocks_grow_then_cap_and_records_expire(make_config):
    config = make_config(auth={"throttle_free": 3, "throttle_delay": 2, "throttle_cap": 10, "throttle_window": 900})
    t = flightjobd.Throttle(config)
    waits = []
    for _ in range(8):
        t.failed("alice", "203.0.113.5")
        waits.append(round(t.refusal("alice", "203.0.113.5")))
    assert waits == [0, 0, 0, 2, 4, 8, 10, 10]
    assert t.refusal("alice", "203.0.113.6") == 0 and t.refusal("bob", "203.0.113.5") == 0
    t.succeeded("alice", "203.0.113.5")  # a right password clears the pair
    assert t.refusal("alice", "203.0.113.5") == 0
    assert t.slowdown("alice") == 0
    for i in range(2):
        t.failed("alice", "192.0.2.%d" % i)
    assert t.slowdown("alice") == config["auth"]["throttle_user_delay"]  # 10 failures: slowed, never refused
    config["auth"]["throttle_window"] = config["auth"]["throttle_cap"] = 1
    time.sleep(1.1)
    t.expire()
    assert len(t) == 0


def test_a_name_under_attack_is_slowed_never_refused(multi_app, unix_users, pam):
    a, web = multi_app(auth={"throttle_user": 5, "throttle_user_delay": 1.0, "failure_delay": 0, "pam_service": pam})
    u = unix_users.create()
    for i in range(8):  # a botnet: each address tries twice
        bot = webtest.TestApp(a.bottle, extra_environ={"REMOTE_ADDR": "203.0.113.%d" % (i // 2)})
        bot.post_json("/api/login", {"username": u.name, "password": "bad%d" % i}, status=401)
    clean = webtest.TestApp(a.bottle, extra_environ={"REMOTE_ADDR": "198.51.100.9"})
    start = time.monotonic()
    clean.post_json("/api/login", {"username": u.name, "password": u.password}, status=200)
    assert time.monotonic() - start >= 1.0


def test_failed_login_records_are_bounded(multi_app):
    a, web = multi_app(server={"trusted_proxies": ["127.0.0.1"]}, auth={"failure_delay": 0})
    cap = a.config["auth"]["throttle_table"]
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i in range(100000):
        a.auth.failures.failed("user%d" % i, "10.%d.%d.%d" % (i >> 16, (i >> 8) & 255, i & 255))
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    print("100,000 failed logins: %d records, %.1f MB" % (len(a.auth.failures), grown / 2 ** 20))
    assert len(a.auth.failures) <= cap
    assert grown < 6 * 1024 * 1024, grown  # the README says ~4 MB (4.3 MB measured on Python 3.11)
    assert ("user", "user99999") in a.auth.failures.records  # the newest are kept
    assert ("user", "user0") not in a.auth.failures.records  # the oldest went first
    # through the login route too, with small numbers
    a.config["auth"]["throttle_table"] = 100
    for i in range(300):
        web.post_json("/api/login", {"username": "fjnobody%d" % i, "password": "x"},
                      headers={"X-Forwarded-For": "192.0.2.%d" % (i % 250)}, status=(401, 429))
    assert len(a.auth.failures) <= 100


# one failure time, bounded slots


def test_failed_logins_take_the_same_time_whatever_the_cause(daemon, unix_users):
    d = daemon(failure_delay=1.0)
    right, expired, locked, shell = (unix_users.create() for _ in range(4))
    subprocess.run(["chage", "-E", "0", expired.name], check=True)
    subprocess.run(["usermod", "-L", locked.name], check=True)
    subprocess.run(["usermod", "-s", "/usr/sbin/nologin", shell.name], check=True)
    low_user = unix_users.create(prefix="fjsys", uids=range(900, 1000))
    causes = {"unknown user": ("fjnosuch" + secrets.token_hex(3), "whatever"),
              "wrong password": (right.name, "wrong" + right.password),
              "expired, right password": (expired.name, expired.password),
              "expired, wrong password": (expired.name, "wrong"),
              "locked, right password": (locked.name, locked.password),
              "nologin shell, right password": (shell.name, shell.password),
              "uid under min_uid, right password": (low_user.name, low_user.password)}
    times = {c: [] for c in causes}
    for round_ in range(3):
        for cause, (name, password) in causes.items():
            status, took = Web(d, "198.51.100.%d" % round_).login(name, password)
            assert status == 401, (cause, status)
            times[cause].append(took)
    # a busy machine only adds time: each cause's fastest is its own cost
    fastest = {c: min(t) for c, t in times.items()}
    spread = max(fastest.values()) - min(fastest.values())
    print("failed-login times (fastest of 3):", {c: round(m, 3) for c, m in fastest.items()})
    assert min(fastest.values()) >= 1.0 and spread < 0.1, times
    logins = [Web(d, "198.51.100.9").login(right.name, right.password) for _ in range(3)]
    assert all(status == 200 for status, _ in logins) and min(took for _, took in logins) < 0.9, logins  # the floor is for failures only


def test_logins_in_progress_never_hold_more_than_their_slots(daemon, unix_users):
    d = daemon(login_slots=4, throttle_free=1000, throttle_address=100000)
    bob, carol = unix_users.create(), unix_users.create()
    bob_web = Web(d, "198.51.100.2")
    assert bob_web.login(bob.name, bob.password)[0] == 200
    carol_basic = Web(d, "198.51.100.3", basic=(carol.name, carol.password))
    assert carol_basic.status("GET", "/api/scripts") == 200  # her worker is up, her Basic check cached
    stop = time.monotonic() + 5
    statuses, lock = {}, threading.Lock()

    def hammer(i):
        n = 0
        while time.monotonic() < stop:
            status, body, _, _ = Web(d, "203.0.113.%d" % i)("POST", "/api/login", {
                "username": "fjflood%d-%d" % (i, n), "password": "x"})
            n += 1
            with lock:
                statuses[status] = statuses.get(status, 0) + 1
                if status == 503 and "Too many logins in progress" not in body["error"]["message"]:
                    statuses["wrong 503"] = body
    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    time.sleep(1)
    # bob and carol from a process of their own: the 40 threads here never delay them
    with bystander(d.port, [("GET", "/api/session", {"X-Forwarded-For": bob_web.addr, "Cookie": "%s=%s" % (
                                flightjobd.COOKIE, bob_web.cookie)}),
                            ("GET", "/api/scripts", {"X-Forwarded-For": carol_basic.addr, "Authorization": "Basic "
                                + base64.b64encode(("%s:%s" % carol_basic.basic).encode()).decode()})],
                   interval=0.2) as answers:
        time.sleep(max(0, stop - 0.5 - time.monotonic()))
    for t in threads:
        t.join()
    assert answers and all(status == 200 and took < 1.0 for path, status, took in answers), answers
    assert statuses.get(503, 0) > 40, statuses  # the others were answered at once
    # 4 slots of 2 s each for 5 s (and the last ones finishing): at most 4 * 3 failures got a slot
    assert 4 <= statuses.get(401, 0) <= 16, statuses
    assert set(statuses) <= {401, 503}, statuses


# accounts that change while logged in


@pytest.mark.parametrize("change", ["password", "lock", "expiry", "shell"])
def test_a_changed_account_ends_its_sessions_and_basic_checks(daemon, unix_users, change):
    d = daemon(recheck_interval=1, failure_delay=0.2, basic_cache=300)
    u, other = unix_users.create(), unix_users.create()
    web, others = Web(d, "198.51.100.30"), Web(d, "198.51.100.31")
    basic = Web(d, "198.51.100.32", basic=(u.name, u.password))
    assert web.login(u.name, u.password)[0] == 200 and others.login(other.name, other.password)[0] == 200
    assert basic.status("GET", "/api/session") == 200  # checked, now cached for 300 s
    new_password = "pw-" + secrets.token_urlsafe(9)
    argv = {"password": ["chpasswd"], "lock": ["usermod", "-L", u.name], "expiry": ["chage", "-E", "0", u.name],
            "shell": ["usermod", "-s", "/bin/false", u.name]}[change]
    subprocess.run(argv, input="%s:%s" % (u.name, new_password), text=True, check=True)
    bound = 1 + 1  # recheck_interval + the upkeep thread's tick
    # within the bound and a busy machine's margin (without the re-check: the session's whole life,
    # and 300 s for the cached Basic check)
    took = wait_for(lambda: web.status("GET", "/api/session") == 401, bound + 10)
    assert took is not None and took <= bound + 5, took
    assert basic.status("GET", "/api/session") == 401  # the old password no longer passes
    assert web.status("GET", "/api/scripts") == 401
    assert others.status("GET", "/api/session") == 200  # the re-check ended nobody else's session
    if change == "password":
        assert Web(d, "198.51.100.33", basic=(u.name, new_password)).status("GET", "/api/session") == 200


# accounts that are not people


def test_system_accounts_and_other_groups_are_refused_before_pam(multi_app, unix_users, monkeypatch, pam):
    calls = []
    real_pam = flightjobd.Auth._pam
    monkeypatch.setattr(flightjobd.Auth, "_pam", lambda self, user, pw: calls.append(user) or real_pam(self, user, pw))
    a, web = multi_app(auth={"failure_delay": 0, "pam_service": pam})
    nologin, false, person = unix_users.create(), unix_users.create(), unix_users.create()
    subprocess.run(["usermod", "-s", "/usr/sbin/nologin", nologin.name], check=True)
    subprocess.run(["usermod", "-s", "/bin/false", false.name], check=True)
    for u in (nologin, false):
        web.post_json("/api/login", {"username": u.name, "password": u.password}, status=401)
        web.get("/api/session", headers=u.basic(), status=401)
    try:
        slurm = pwd.getpwnam("slurm")  # Debian's slurm account: uid 64030, above min_uid
    except KeyError:
        slurm = None
    if slurm is not None:
        assert slurm.pw_uid >= 1000
        web.post_json("/api/login", {"username": "slurm", "password": "x"}, status=401)
    assert calls == []  # PAM was never asked
    web.post_json("/api/login", {"username": person.name, "password": person.password}, status=200)
    assert calls == [person.name]
    # auth.allow_groups: members only
    group = "fjg" + secrets.token_hex(3)
    subprocess.run(["groupadd", group], check=True)
    try:
        subprocess.run(["usermod", "-aG", group, person.name], check=True)
        a2, web2 = multi_app(auth={"allow_groups": [group], "failure_delay": 0, "pam_service": pam})
        web2.post_json("/api/login", {"username": person.name, "password": person.password}, status=200)
        web2.post_json("/api/login", {"username": nologin.name, "password": nologin.password}, status=401)
        outsider = unix_users.create()
        calls.clear()
        web2.post_json("/api/login", {"username": outsider.name, "password": outsider.password}, status=401)
        assert calls == []
        assert grp.getgrnam(group).gr_mem == [person.name]
    finally:
        subprocess.run(["groupdel", group], check=True)


# the session store


def session_files(directory):
    return sorted(n for n in os.listdir(directory) if not n.startswith("."))


def test_sessions_survive_a_restart_and_hold_nothing_to_log_in_with(daemon, unix_users, tmp_path):
    store = tmp_path / "store"
    d = daemon(session_dir=str(store))
    u, changed = unix_users.create(), unix_users.create()
    web, web2 = Web(d, "198.51.100.40"), Web(d, "198.51.100.41")
    assert web.login(u.name, u.password)[0] == 200 and web2.login(changed.name, changed.password)[0] == 200
    sid = web.cookie
    assert web.status("POST", "/api/scripts", {"template": "serial", "name": "before"}) == 201
    d.stop()
    subprocess.run(["chpasswd"], input="%s:%s" % (changed.name, "pw-" + secrets.token_urlsafe(9)),
                   text=True, check=True)
    d.start()
    status, body, _, _ = web("GET", "/api/session")
    assert status == 200 and body == {"user": u.name, "csrf_token": web.csrf}
    assert web.status("POST", "/api/scripts", {"template": "serial", "name": "after"}) == 201  # same CSRF token
    assert web2.status("GET", "/api/session") == 401  # its password changed while the daemon was down
    # root-only, named by a hash, nothing in clear a reader could log in with
    assert os.stat(store).st_mode & 0o777 == 0o700
    names = session_files(store)
    assert names == [hashlib.sha256(sid.encode()).hexdigest()]
    for name in names:
        path = store / name
        assert os.stat(path).st_mode & 0o777 == 0o600 and os.stat(path).st_uid == 0
        text = path.read_text()
        assert sid not in text and u.password not in text and json.loads(text)["user"] == u.name
    assert web.status("POST", "/api/logout") == 200
    assert session_files(store) == []
    web.cookie = sid
    assert web.status("GET", "/api/session") == 401


def test_two_daemons_sharing_a_session_dir_share_sessions(daemon, unix_users, tmp_path):
    store = str(tmp_path / "shared")
    d1, d2 = daemon(session_dir=store), daemon(session_dir=store)
    u = unix_users.create()
    on1 = Web(d1, "198.51.100.50")
    assert on1.login(u.name, u.password)[0] == 200
    on2 = Web(d2, "198.51.100.50")
    on2.cookie, on2.csrf = on1.cookie, on1.csrf
    assert on2("GET", "/api/session")[1]["user"] == u.name  # made on one, works on the other
    assert on2.status("POST", "/api/scripts", {"template": "serial"}) == 201
    assert on2.status("POST", "/api/logout") == 200  # ended on the other...
    assert on1.status("GET", "/api/session") == 401  # ...ends on the first at once
    # and the other way round
    assert on2.login(u.name, u.password)[0] == 200
    on1.cookie, on1.csrf = on2.cookie, on2.csrf
    assert on1.status("GET", "/api/session") == 200
    sid = on1.cookie
    assert on1.status("POST", "/api/logout") == 200
    on2.cookie = sid
    assert on2.status("GET", "/api/session") == 401


def test_session_store_writes_rarely_and_sweeps_what_ended(make_app, tmp_path):
    client = make_app(auth={"session_idle": 40})  # a use is written at most every 10 s
    app = client.app
    store = app.auth.store.dir
    [name] = session_files(store)
    path = os.path.join(store, name)
    before = os.stat(path)
    for _ in range(20):
        client.api("GET", "/api/session")
    after = os.stat(path)
    assert (after.st_ino, after.st_mtime) == (before.st_ino, before.st_mtime)  # no write per request
    os.utime(path, (time.time() - 11, time.time() - 11))
    client.api("GET", "/api/session")
    assert time.time() - os.stat(path).st_mtime < 2  # touched, not rewritten
    assert os.stat(path).st_ino == before.st_ino
    # the sweep: idle on every node, past session_max, broken, and a crash's temporary file
    idle = app.auth.create(app.daemon_user)
    old = app.auth.create(app.daemon_user)
    broken = app.auth.create(app.daemon_user)
    os.utime(app.auth.store.path(idle.id), (time.time() - 100, time.time() - 100))
    data = json.loads(open(app.auth.store.path(old.id)).read())
    data["created"] -= app.config["auth"]["session_max"] + 1
    flightjobd.atomic_write(app.auth.store.path(old.id), json.dumps(data))
    with open(app.auth.store.path(broken.id), "w") as f:
        f.write("{half")
    tmp = os.path.join(store, ".%s.abcd.tmp" % name)
    open(tmp, "w").close()
    os.utime(tmp, (time.time() - 120, time.time() - 120))
    app.auth.swept = 0
    app.auth.expire()
    assert session_files(store) == [name] and not os.path.exists(tmp)
    client.api("GET", "/api/session", status=200)
    for s in (idle, old, broken):
        assert app.auth.get(s.id) is None
    # expiry removes the entry at once when the session is used
    app.auth.sessions[client.web.cookies[flightjobd.COOKIE]].created -= app.config["auth"]["session_max"] + 1
    client.api("GET", "/api/session", status=401)
    assert session_files(store) == []


# redirects and request bodies

NEXT_ATTEMPTS = ["/%09/evil.example/phish", "/\t/evil.example/phish", "/\n/evil.example", "//evil.example/x",
                 "/\\evil.example", "\\\\evil.example", "https://evil.example/", "javascript:alert(1)",
                 "/%2F%2Fevil.example", " //evil.example", "/\r\nLocation: https://evil.example/"]


def form_login(web, user, next_url, **extra_environ):
    """Log in through the form, as a browser: (the login page, the answer)."""
    page = web.get("/login", {"next": next_url}, extra_environ=extra_environ, status=200)
    token = page.html.find("input", {"name": "login_csrf"})["value"]
    shown_next = page.html.find("input", {"name": "next"})["value"]
    answer = web.post("/login", {"username": user.name, "password": user.password, "next": next_url,
                                 "login_csrf": token}, extra_environ=extra_environ, status=303)
    return shown_next, answer


@pytest.mark.root
def test_every_redirect_is_a_path_we_built(multi_app, unix_users, pam):
    """After login the browser goes to a path on this site, rebuilt by us,
    whatever `next` says (a tab, a newline, a backslash, a scheme); the
    Location never names the Host the request gave."""
    user = unix_users.create()
    _, web = multi_app(auth={"pam_service": pam, "failure_delay": 0})
    evil_host = {"HTTP_HOST": "evil.example"}
    for attempt in NEXT_ATTEMPTS:
        shown, answer = form_login(web, user, attempt)
        location = answer.headers["Location"]
        parts = urllib.parse.urlsplit(location)
        assert parts.scheme == "" and parts.netloc == "" and location.startswith("/"), (attempt, location)
        assert not location.startswith("//") and "evil.example" not in parts.netloc, (attempt, location)
        assert not any(c in location for c in "\t\r\n\\ "), (attempt, location)
        assert urllib.parse.urlsplit(urllib.parse.urljoin("http://here.example/x", location)).netloc \
            == "here.example", (attempt, location)  # as a browser resolves it
        assert flightjobd.LOCAL_PATH_RE.match(shown), (attempt, shown)
        web.reset()
    # a path of our own, with its query, is kept; the login redirect of a page carries it there
    _, answer = form_login(web, user, "/jobs?state=RUNNING")
    assert answer.headers["Location"] == "/jobs?state=RUNNING"
    web.reset()
    assert web.get("/scripts?x=1", extra_environ=evil_host, status=303).headers["Location"] \
        == "/login?next=" + urllib.parse.quote("/scripts?x=1")
    # with server.base_url, absolute Locations under it, never under the Host given
    _, based = multi_app(auth={"pam_service": pam, "failure_delay": 0},
                         server={"multi_user": True, "base_url": "https://jobs.example.org/"})
    _, answer = form_login(based, user, "/%09/evil.example/phish", **{"wsgi.url_scheme": "https"})  # Secure cookies
    assert answer.headers["Location"] == "https://jobs.example.org/%09/evil.example/phish"  # a path here
    assert based.get("/jobs", extra_environ=evil_host, status=303).headers["Location"] \
        == "https://jobs.example.org/login?next=/jobs"


@pytest.mark.root
def test_json_routes_take_application_json_exactly(multi_app, unix_users, pam):
    """A body a browser may send cross-site without asking first
    (text/plain, even with 'json' in it) is refused before the password is
    looked at: no login CSRF. application/json, with a UTF-8 charset, works."""
    user = unix_users.create()
    _, web = multi_app(auth={"pam_service": pam, "failure_delay": 0})
    body = json.dumps({"username": user.name, "password": user.password}).encode()
    for kind in ("text/plain; charset=json", "text/plain", "application/jsonp", "text/json",
                 "application/x-www-form-urlencoded; a=application/json", "multipart/form-data; json",
                 "application/json; charset=latin-1", "application/json-patch+json"):
        r = web.post("/api/login", body, headers={"Content-Type": kind}, status=400)
        assert "Content-Type: application/json" in r.json["error"]["message"], kind
        assert "Set-Cookie" not in r.headers, kind
    for kind in ("application/json", "application/json; charset=utf-8", "Application/JSON; charset=UTF-8"):
        r = web.post("/api/login", body, headers={"Content-Type": kind}, status=200)
        web.post("/api/logout", headers={"X-CSRF-Token": r.json["csrf_token"]}, status=(200, 204))
    # a lone surrogate parses as JSON but is no text: a clear 400, never a 500
    r = web.post("/api/login", b'{"username": "\\ud800", "password": "x"}',
                 headers={"Content-Type": "application/json"}, status=400)
    assert "not valid JSON text" in r.json["error"]["message"]


def test_a_guesser_with_many_addresses_never_keeps_others_from_logging_in(daemon, unix_users):
    """A local user may connect from any 127.x.y.z and a remote one may hold
    a whole IPv6 /64: those count as one address. An address that failed
    gets one login at a time and never the last free slot, so a correct
    login from elsewhere always finds one."""
    assert flightjobd.address_key("127.0.3.4") == flightjobd.address_key("127.9.9.9") == "loopback"
    assert flightjobd.address_key("2001:db8::1") == flightjobd.address_key("2001:db8::ffff") == "2001:db8::/64"
    assert flightjobd.address_key("198.51.100.7") == "198.51.100.7"
    d = daemon(login_slots=4, failure_delay=2)
    carol = unix_users.create()
    stop = time.monotonic() + 6
    statuses, lock = {}, threading.Lock()

    def guess(i):
        n = 0
        while time.monotonic() < stop:
            conn = http.client.HTTPConnection("127.0.0.1", d.port, timeout=30,
                                              source_address=("127.0.%d.%d" % (i, n % 250 + 2), 0))
            try:  # straight to the daemon, not through the trusted proxy at 127.0.0.1
                conn.request("POST", "/api/login", json.dumps({"username": "fjnobody%d" % n, "password": "x"}),
                             {"Content-Type": "application/json"})
                status = conn.getresponse().status
            finally:
                conn.close()
            n += 1
            with lock:
                statuses[status] = statuses.get(status, 0) + 1
    threads = [threading.Thread(target=guess, args=(i,)) for i in range(1, 7)]
    for t in threads:
        t.start()
    time.sleep(1)
    # carol logs in again and again from a process of her own (the guessing threads never delay her)
    with bystander(d.port, [("POST", "/api/login", {"X-Forwarded-For": "198.51.100.10", "Content-Type": "application/json"},
                             json.dumps({"username": carol.name, "password": carol.password}))],
                   interval=0.3) as logins:
        time.sleep(max(0, stop - 0.5 - time.monotonic()))
    for t in threads:
        t.join()
    assert logins and all(status == 200 and took < 1.5 for _, status, took in logins), logins
    # one failing address: one login at a time, 2 s each, over 6 s
    assert statuses.get(401, 0) <= 5, statuses
    assert set(statuses) <= {401, 429}, statuses


def test_a_lock_ends_stored_sessions_no_process_holds_and_unlocking_brings_none_back(daemon, unix_users, tmp_path):
    """A session made before a restart (so in no process's memory) ends too
    when its account is locked; unlocking does not bring it back."""
    store = tmp_path / "store"
    d = daemon(session_dir=str(store), recheck_interval=1)
    u, other = unix_users.create(), unix_users.create()
    web, others = Web(d, "198.51.100.50"), Web(d, "198.51.100.51")
    assert web.login(u.name, u.password)[0] == 200 and others.login(other.name, other.password)[0] == 200
    d.stop()
    d.start()  # neither session is in the new process's memory; both are in the store
    subprocess.run(["usermod", "-L", u.name], check=True)
    assert wait_for(lambda: len(session_files(store)) == 1, 10) is not None, session_files(store)
    subprocess.run(["usermod", "-U", u.name], check=True)
    assert web.status("GET", "/api/session") == 401
    assert others.status("GET", "/api/session") == 200


# no edit is lost to an ended session

TYPED = 'echo "<b>&amp;</b>" \'quoted\'\n\tindented</textarea><script>alert(1)</script>\nlast line é\n'


def edit_form(web, sid):
    page = web.get("/scripts/%s?edit=content" % sid)
    form = [f for f in page.forms.values() if f.action == "/scripts/%s/edit" % sid][0]
    form["text"] = TYPED
    return form


def login_form(page):
    return [f for f in page.forms.values() if f.action == "/login"][0]


def test_a_form_posted_after_its_session_ended_is_kept_through_the_login(multi_app, unix_users):
    """The no-JavaScript path: the edit form posted without a session is
    answered with the login page carrying it (escaped); a failed login
    keeps it; the login shows it to be sent again with the new session's
    token, and nothing is saved until the user presses Send."""
    a, web = multi_app()
    u = unix_users.create()
    api = webtest.TestApp(a.bottle, extra_environ={"REMOTE_ADDR": "127.0.0.1"})
    old_csrf = web.post_json("/api/login", {"username": u.name, "password": u.password}).json["csrf_token"]
    sid = web.post_json("/api/scripts", {"template": "serial"}, headers={"X-CSRF-Token": old_csrf}).json["id"]
    before = api.get("/api/scripts/" + sid, headers=u.basic()).json
    form = edit_form(web, sid)
    web.post("/logout", {"csrf": old_csrf}, status=303)  # in another tab
    page = form.submit(status=401)
    assert "Your session had ended" in page.text and "<script>alert" not in page.text
    kept = login_form(page)
    assert (kept["field"].value, kept["text"].value, kept["etag"].value) == ("content", TYPED, before["etag"])
    assert "csrf" not in kept.fields
    kept["username"], kept["password"] = u.name, "wrong-" + u.password
    page = kept.submit(status=401)  # a typo: still kept
    kept = login_form(page)
    assert kept["text"].value == TYPED and "Your session had ended" in page.text
    kept["username"], kept["password"] = u.name, u.password
    page = kept.submit(status=200)
    assert api.get("/api/scripts/" + sid, headers=u.basic()).json == before  # not saved by the login
    resume = [f for f in page.forms.values() if f.action == "/scripts/%s/edit" % sid][0]
    new_csrf = web.get("/api/session").json["csrf_token"]
    assert resume["csrf"].value == new_csrf != old_csrf
    assert (resume["field"].value, resume["text"].value, resume["etag"].value) == ("content", TYPED, before["etag"])
    assert "<script>alert" not in page.text and "&lt;script&gt;alert(1)" in page.text  # shown, escaped
    resume.submit(status=303)
    assert api.get("/api/scripts/" + sid, headers=u.basic()).json["content"] == TYPED


def test_a_form_with_the_token_of_an_earlier_session_is_kept(multi_app, unix_users):
    """Logged out and in again in another tab: the old page's form carries
    a token no longer valid. Refused (403), but shown to be sent again with
    the token of the session now."""
    a, web = multi_app()
    u = unix_users.create()
    csrf = web.post_json("/api/login", {"username": u.name, "password": u.password}).json["csrf_token"]
    sid = web.post_json("/api/scripts", {"template": "serial"}, headers={"X-CSRF-Token": csrf}).json["id"]
    form = edit_form(web, sid)
    web.post("/logout", {"csrf": csrf}, status=303)
    new_csrf = web.post_json("/api/login", {"username": u.name, "password": u.password}).json["csrf_token"]
    page = form.submit(status=403)
    assert "CSRF" in page.text and web.get("/api/scripts/" + sid).json["content"] != TYPED
    resume = [f for f in page.forms.values() if f.action == "/scripts/%s/edit" % sid][0]
    assert resume["csrf"].value == new_csrf and resume["text"].value == TYPED
    resume.submit(status=303)
    assert web.get("/api/scripts/" + sid).json["content"] == TYPED
    # a form holding nothing but its token (a logout, a delete) is refused as before
    web.post("/scripts/%s/delete" % sid, {"csrf": csrf}, status=403)
    anon = webtest.TestApp(a.bottle, extra_environ={"REMOTE_ADDR": "127.0.0.1"})
    r = anon.post("/scripts/%s/delete" % sid, {"csrf": csrf}, status=303)
    assert r.location.endswith("/login?next=/scripts/%s/delete" % sid)


def test_a_kept_form_goes_only_to_a_path_of_this_site_and_only_when_sent(multi_app, unix_users):
    """A forged form kept through the login (a cross-site post carries no
    cookie) is shown, never sent by the login itself, and only ever to a
    path of this site; bounded as any form (server.max_body)."""
    a, _ = multi_app()
    u = unix_users.create()
    sent = None
    for next_url, action in (("/templates/serial/create", "/templates/serial/create"),
                             ("//evil.example/x", "/"), ("/\t/evil.example/x", "/%09/evil.example/x"),  # a path here
                             ("https://evil.example/", "/"), ("javascript:alert(1)", "/")):
        web = webtest.TestApp(a.bottle, extra_environ={"REMOTE_ADDR": "127.0.0.1"})
        kept = login_form(web.post("/templates/serial/create", {"name": "forged", "notes": "x"}, status=401))
        assert (kept["next"].value, kept["name"].value) == ("/templates/serial/create", "forged")
        kept["next"], kept["username"], kept["password"] = next_url, u.name, u.password
        page = kept.submit(status=200)
        resume = [f for f in page.forms.values() if "name" in f.fields][0]
        assert resume.action == action and resume["name"].value == "forged", next_url
        assert web.get("/api/scripts").json["scripts"] == []  # the login did not create it
        sent = sent if next_url != action else (web, resume)
    web, resume = sent
    resume.submit(status=303)  # the user pressed Send: now it is done
    assert [s["name"] for s in web.get("/api/scripts").json["scripts"]] == ["forged"]
    anon = webtest.TestApp(a.bottle, extra_environ={"REMOTE_ADDR": "127.0.0.1"})
    r = anon.post("/templates/serial/create", {"name": "x" * a.config["server"]["max_body"]}, status=303)
    assert "/login?next=" in r.location  # larger than any form may be: not kept, as it could not be done


CLOSER = """
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"POST /api/login HTTP/1.0\\r\\n\\r\\n")
if sys.argv[2] == "close":
    s.close()
print("sent", flush=True)
sys.stdin.read()
"""


def test_a_client_closed_before_its_accept_is_not_blamed_on_root(unix_users):
    """Red team: a local user who sent a request and closed the socket before
    the daemon accepted it left a TIME_WAIT socket, which sock_diag says is
    uid 0's: the connection was counted as root's ("loopback uid 0", its
    connection cap and login throttle). A socket with no inode has no
    owner to tell: None (counted as loopback's); an open one is its user's."""
    import socket
    mallory = unix_users.create()
    with contextlib.closing(socket.socket()) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(4)
        for how, owner in (("close", None), ("keep", mallory.uid)):
            client = subprocess.Popen(["/usr/bin/python3", "-c", CLOSER, str(server.getsockname()[1]), how],
                                      user=mallory.uid, group=mallory.gid, extra_groups=[], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, cwd="/")
            try:
                assert client.stdout.readline() == b"sent\n"
                conn, _ = server.accept()
                assert wait_for(lambda: [flightjobd.socket_owner(conn)] == [owner], 10) is not None, how
                conn.close()
            finally:
                client.kill()
                client.wait()

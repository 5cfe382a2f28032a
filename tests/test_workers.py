"""Per-user workers: the right uid, gid and groups, separate processes,
bounded failures."""
import grp
import os
import signal
import threading
import time

import pytest

import flightjobd
from support import wait_for, wait_gone

pytestmark = pytest.mark.root


def proc_ids(pid):
    """(uid, gid, sorted groups) of a process, from /proc; the real,
    effective, saved and filesystem ids must agree."""
    status = open("/proc/%d/status" % pid).read()
    line = lambda key: [int(v) for v in [x for x in status.splitlines() if x.startswith(key + ":")][0].split()[1:]]
    uids, gids = line("Uid"), line("Gid")
    assert len(set(uids)) == 1 and len(set(gids)) == 1, (uids, gids)
    return uids[0], gids[0], sorted(line("Groups"))


def logged_in(make, unix_users, groups=(), **sections):
    a, web = make(**sections)
    u = unix_users.create(groups=groups)
    token = web.post_json("/api/login", {"username": u.name, "password": u.password}).json["csrf_token"]
    return a, web, u, {"X-CSRF-Token": token}


def sleeping_template(user):
    """A user template whose rendering sleeps for its answer `nap` (seconds),
    leaving ~/napping when it starts: a request that takes time in the
    user's own worker."""
    d = os.path.join(user.home, ".config", "flight-job", "templates", "slow")
    os.makedirs(d)
    with open(os.path.join(d, "template.toml"), "w") as f:
        f.write('name = "Slow"\nsynopsis = "s"\ndescription = "d"\n'
                '[[question]]\nid = "nap"\ntext = "Nap"\ndescription = "d"\ntype = "integer"\ndefault = 0\n')
    with open(os.path.join(d, "script.sh"), "w") as f:
        f.write("% import os, time\n% nap and open(os.path.expanduser('~/napping'), 'w').close()\n"
                "% time.sleep(nap)\n#!/bin/bash\necho slept\n")
    for root, dirs, files in os.walk(os.path.join(user.home, ".config")):
        for name in dirs + files + [""]:
            os.chown(os.path.join(root, name), user.uid, user.gid)


def test_worker_runs_as_the_user(multi_app, unix_users):
    """The user's uid, primary gid and exactly their groups: their own and
    two supplementary ones, none of root's."""
    extra = [unix_users.group(), unix_users.group()]
    a, web, u, csrf = logged_in(multi_app, unix_users, groups=extra)
    expected = sorted([u.gid] + [grp.getgrnam(g).gr_gid for g in extra])
    assert len(set(expected)) == 3 and u.gid != 0
    me = a.pool.call(u.name, "whoami")
    assert (me["uid"], me["gid"], me["groups"]) == (u.uid, u.gid, expected)
    assert me["cwd"] == u.home and me["umask"] == 0o077 and me["home"] == u.home
    assert proc_ids(a.pool.pids()[u.name]) == (u.uid, u.gid, expected)
    # its environment as it is now (a forked worker's /proc/PID/environ shows the template's)
    assert me["environ"] == ["HOME", "LANG", "LOGNAME", "PATH", "SHELL", "USER"]


def test_files_written_by_the_worker_belong_to_the_user(multi_app, unix_users):
    a, web, u, csrf = logged_in(multi_app, unix_users)
    sid = web.post_json("/api/scripts", {"template": "serial"}, headers=csrf, status=201).json["id"]
    d = os.path.join(u.home, ".local", "share", "flight-job", "scripts", sid)
    assert len(os.listdir(d)) == 3  # meta.json and the files it names: the content and the notes
    for name in os.listdir(d):
        st = os.stat(os.path.join(d, name))
        assert (st.st_uid, st.st_gid) == (u.uid, u.gid)
        assert st.st_mode & 0o077 == 0  # umask 077


def test_two_users_have_separate_workers(multi_app, unix_users):
    a, web, u, csrf = logged_in(multi_app, unix_users)
    v = unix_users.create()
    web.get("/api/scripts")
    a.pool.call(v.name, "whoami")
    pids = a.pool.pids()
    assert pids[u.name] != pids[v.name]
    assert proc_ids(pids[v.name])[0] == v.uid and proc_ids(pids[u.name])[0] == u.uid


def test_killed_worker_gives_503_and_the_next_request_works(multi_app, unix_users):
    a, web, u, csrf = logged_in(multi_app, unix_users)
    sleeping_template(u)
    web.get("/api/scripts")
    pid = a.pool.pids()[u.name]
    result = {}

    def slow():  # a nap far longer than the test: only the kill ends it
        result["r"] = web.post_json("/api/scripts", {"template": "slow", "answers": {"nap": 300}},
                                    headers=csrf, expect_errors=True)
    t = threading.Thread(target=slow)
    t.start()
    napping = os.path.join(u.home, "napping")
    wait_for(lambda: os.path.exists(napping), 60, "the worker starting the request")
    os.kill(pid, signal.SIGKILL)
    t.join(60)
    assert not t.is_alive(), "the request outlived its killed worker"
    r = result["r"]
    assert r.status_int == 503 and "ended unexpectedly" in r.json["error"]["message"]
    # The next request, once the killed process is gone. (Sent in the instant
    # it is still dying, a request goes unanswered until request_timeout: the
    # worker's reader stops at end of output, before the process can be
    # reaped, so Worker.call still takes it for alive. A daemon race.)
    wait_gone([pid])
    assert web.get("/api/scripts").status_int == 200
    assert a.pool.pids()[u.name] != pid


def test_hung_worker_gives_503_in_bounded_time(multi_app, unix_users):
    a, web, u, csrf = logged_in(multi_app, unix_users, worker={"request_timeout": 2})
    sleeping_template(u)
    pid = (web.get("/api/scripts"), a.pool.pids()[u.name])[1]
    start = time.time()
    r = web.post_json("/api/scripts", {"template": "slow", "answers": {"nap": 300}}, headers=csrf, status=503)
    # the 2 s bound, then the stuck worker is ended (2 s more to go quietly,
    # then SIGKILL): seconds, where the nap is 300
    assert 2 <= time.time() - start < 60
    assert "did not answer" in r.json["error"]["message"]
    wait_gone([pid])
    assert web.get("/api/scripts").status_int == 200


def test_idle_worker_is_reaped(multi_app, unix_users):
    a, web, u, csrf = logged_in(multi_app, unix_users, worker={"idle_timeout": 3})
    used = time.time()
    web.get("/api/scripts")
    pid = a.pool.pids()[u.name]
    a.pool.reap()
    assert u.name in a.pool.pids()  # not idle yet (3 s of margin)

    def reaped():
        a.pool.reap()
        return u.name not in a.pool.pids()
    wait_for(reaped, 60, "the idle worker being reaped", 0.2)
    assert time.time() - used > 3  # and not before its idle time
    wait_gone([pid])
    web.get("/api/scripts", status=200)  # and it comes back on demand


def test_an_undeclared_operation_is_a_clear_error(client):
    me = client.app.daemon_user
    with pytest.raises(flightjobd.BadRequest, match="No such worker operation: no.such"):
        client.app.pool.call(me, "no.such")
    with pytest.raises(flightjobd.BadRequest, match="No such worker operation: _template"):
        client.app.pool.call(me, "_template", {"template_id": "serial"})  # a method, but not an operation
    assert client.app.pool.call(me, "whoami")["user"] == me  # the same worker answers on


class Held:
    """Requests in a WorkerPool's slots (no process: a slot only counts),
    each in a thread until released: (user, when its turn came or the Busy)."""

    def __init__(self, pool):
        self.pool, self.order, self.releases = pool, [], []

    def ask(self, user):
        release = threading.Event()

        def hold():
            started = time.monotonic()
            try:
                with self.pool._slot(user):
                    self.order.append((user, time.monotonic() - started))
                    release.wait(60)
            except flightjobd.Busy as e:
                self.order.append((user, e.message))
        threading.Thread(target=hold, daemon=True).start()
        self.releases.append(release)
        return release

    def waiting(self, n):
        wait_for(lambda: len(self.pool.waiting) == n, 10, "%d requests waiting their turn" % n, 0.01)


def pool_of(threads, turn_wait):
    return flightjobd.WorkerPool(flightjobd.Config({"server": {"multi_user": True, "threads": threads,
                                                               "reserved_threads": 1, "turn_wait": turn_wait},
                                                    "worker": {"idle_timeout": 1}}), False)


def test_turns_go_to_the_user_holding_fewest_and_a_waiting_worker_is_never_reaped():
    """Issue 26 item 3, the pool alone: all 3 slots held (a: 2, its own
    limit; b: 1), then c, a and b ask, in that order; each freed slot goes
    to the waiting user holding fewest, the first to come among equals,
    never refused meanwhile; a worker waiting its turn is not reaped."""
    pool = pool_of(4, 30)
    held = Held(pool)
    a1, _, b1 = held.ask("a"), held.ask("a"), held.ask("b")
    wait_for(lambda: len(held.order) == 3, 10, "the three slots taken", 0.01)
    pool.workers["c"] = flightjobd.Worker("c", pool.config, False)
    pool.workers["c"].last_used = 0  # idle for long
    held.ask("c")
    held.waiting(1)
    held.ask("a")  # a is at its own limit
    held.waiting(2)
    held.ask("b")
    held.waiting(3)
    pool.reap()
    assert "c" in pool.workers  # waiting its turn: kept
    b1.set()  # a slot free: c and b both hold none now, c came first
    wait_for(lambda: len(held.order) == 4, 10, "a turn", 0.01)
    a1.set()  # a slot free: b holds none, a one: b's turn although a asked first
    wait_for(lambda: len(held.order) == 5, 10, "a turn", 0.01)
    held.releases[-1].set()  # b's: a's turn at last
    wait_for(lambda: len(held.order) == 6, 10, "a turn", 0.01)
    assert [user for user, _ in held.order] == ["a", "a", "b", "c", "b", "a"], held.order
    assert all(isinstance(took, float) for _, took in held.order), held.order
    for release in held.releases:
        release.set()


def test_a_users_stuck_slots_count_only_against_that_user():
    """A user whose own slots are held past server.turn_wait (a stopped
    worker) is refused at once for more, and more than their limit waiting
    is refused at once; another user is served at once meanwhile."""
    pool = pool_of(16, 0.5)
    held = Held(pool)
    held.ask("a"), held.ask("a")
    wait_for(lambda: len(held.order) == 2, 10, "a's two slots taken", 0.01)
    held.ask("a"), held.ask("a"), held.ask("a")  # 2 wait for a's own turn, the third is refused at once
    wait_for(lambda: len(held.order) == 5, 10, "a's waiting requests refused", 0.01)
    assert "2 requests waiting" in held.order[2][1] and "in progress, the oldest" in held.order[4][1], held.order
    held.ask("a")  # its slots held past turn_wait: refused without waiting (not "as many requests as it can")
    held.ask("b")
    wait_for(lambda: len(held.order) == 7, 10, "the two answers", 0.01)
    mine = dict(held.order[5:])
    assert mine["a"].startswith("Busy: you already have 2 requests in progress") and isinstance(mine["b"], float)
    for release in held.releases:
        release.set()

"""Workers forked from the template process (worker.fork_server, the
default in multi-user mode): each is its user alone, holds nothing of the
HTTP process, and is replaced like a spawned one when it is killed,
stopped, or the fork server itself dies. Real root multi-user daemons and
real PAM users, as in test_hostile."""
import grp
import json
import os
import signal
import socket
import time

import pytest

import flightjobd
from support import children, wait_for
from test_hostile import TIMEOUT, Client, fds, served_meanwhile, stat_fields, user_template, worker_of
import test_hostile
from test_workers import proc_ids

pytestmark = pytest.mark.root

daemon = test_hostile.daemon  # the fixture: a root multi-user daemon, two users logged in


def fork_server(d):
    """The daemon's fork server's pid."""
    found = children(d.proc.pid, "--fork-server")
    assert len(found) == 1, found
    return found[0]


def parent(pid):
    return int(stat_fields(pid)[1])


def memory_holds(pid, needle):
    """Whether the process's memory holds needle anywhere it can be read
    (every mapping, through /proc/PID/mem, as root)."""
    with open("/proc/%d/maps" % pid) as maps, open("/proc/%d/mem" % pid, "rb", 0) as mem:
        for line in maps:
            span, perms = line.split()[:2]
            start, end = (int(x, 16) for x in span.split("-"))
            if perms[0] != "r" or line.rstrip().endswith(("[vvar]", "[vsyscall]", "[vvar_vclock]")):
                continue
            try:
                mem.seek(start)
                if needle in mem.read(end - start):
                    return True
            except (OSError, OverflowError, ValueError):
                continue
    return False


def environment_template(user):
    """A template of the user's whose script shows its worker's environment."""
    user_template(user, "env", "% import json, os\n#!/bin/bash\n# env: {{json.dumps(dict(os.environ), sort_keys=True)}}\n")


def exe(pid):
    return os.path.realpath("/proc/%d/exe" % pid)


def test_forked_worker_is_the_user_alone(daemon, unix_users, runtime):
    extra = [unix_users.group(), unix_users.group()]
    d, alice, bob = daemon()
    # a third user, in two supplementary groups, whose worker the fork server starts now
    u = unix_users.create(prefix="fjh", groups=extra)
    carol = Client(d, u)
    environment_template(u)
    content = carol.json("POST", "/api/scripts", {"template": "env"}, status=201)["content"]
    pid = worker_of(d, u)
    assert parent(pid) == fork_server(d)  # forked from the template, not spawned by the daemon
    # worker.python runs both (make test-unit PYTHON=python3.9 makes it 3.9's: support.WORKER_PYTHON)
    assert exe(pid) == exe(fork_server(d)) == os.path.realpath(runtime["python"])
    expected = sorted([u.gid] + [grp.getgrnam(g).gr_gid for g in extra])
    assert proc_ids(pid) == (u.uid, u.gid, expected)  # none of root's groups
    env = json.loads(content.split("# env: ", 1)[1].splitlines()[0])
    assert env == {"HOME": u.home, "USER": u.name, "LOGNAME": u.name, "PATH": "/usr/local/bin:/usr/bin:/bin",
                   "SHELL": "/bin/bash", "LANG": "C.UTF-8"}
    assert os.getsid(pid) == pid and stat_fields(pid)[4] == "0"  # its own session, no terminal
    mine = fds(pid)
    assert sorted(mine) == [0, 1, 2, 3] and all(v.startswith("pipe:") for v in mine.values()), mine
    roots = fds(d.proc.pid)
    assert set(mine.values()) <= set(roots.values())  # pipes to root, nothing of the fork server's
    assert not set(mine.values()) & {v for v in fds(fork_server(d)).values() if v.startswith(("pipe:", "socket:"))}
    assert os.readlink("/proc/%d/cwd" % pid) == u.home
    status = open("/proc/%d/status" % pid).read()
    assert "\nUmask:\t0077\n" in status


def test_worker_cannot_reach_the_http_process_memory(daemon):
    d, alice, bob = daemon()  # both logged in after the fork server started
    user_template(alice.user, "peek", (
        "% import os\n% got = []\n"
        "% for pid in (os.getppid(), int(os.environ.get('DAEMON', '0') or 0)):\n"
        "%   for what in ('mem', 'environ', 'maps'):\n"
        "%     try:\n"
        "%       open('/proc/%d/%s' % (pid, what), 'rb').read(64)\n"
        "%       got.append('%d/%s' % (pid, what))\n"
        "%     except OSError:\n"
        "%       pass\n"
        "%     end\n"
        "%   end\n"
        "% end\n"
        "#!/bin/bash\n# got: {{','.join(got) or 'nothing'}}\n"))
    with served_meanwhile(bob):
        content = alice.json("POST", "/api/scripts", {"template": "peek"}, status=201)["content"]
    assert "# got: nothing" in content  # the fork server's memory is root's: closed to the user
    secrets_ = [c.cookie.split("=", 1)[1].encode() for c in (alice, bob)] + [c.csrf.encode() for c in (alice, bob)]
    worker, server = worker_of(d, alice.user), fork_server(d)
    for secret in secrets_:
        assert memory_holds(d.proc.pid, secret), "the marker is not in the daemon's memory: the test shows nothing"
        assert not memory_holds(worker, secret)
        assert not memory_holds(server, secret)


def test_killed_or_stopped_forked_worker_is_replaced(daemon):
    d, alice, bob = daemon()
    with served_meanwhile(bob):
        first = worker_of(d, alice.user)
        os.kill(first, signal.SIGKILL)
        wait_for(lambda: worker_of(d, alice.user) != first, 10, "the killed worker to go")
        alice.json("GET", "/api/scripts")
        second = worker_of(d, alice.user)
        assert second not in (None, first) and parent(second) == fork_server(d)
        os.kill(second, signal.SIGSTOP)
        started = time.monotonic()
        status, seconds, body = alice.timed("GET", "/api/scripts")
        assert status == 503 and seconds < TIMEOUT + 2, (status, seconds, body)
        wait_for(lambda: worker_of(d, alice.user) != second, 10, "the stopped worker to be killed")
        alice.json("GET", "/api/scripts")
        third = worker_of(d, alice.user)
        assert third not in (None, first, second) and parent(third) == fork_server(d)
        assert time.monotonic() - started < TIMEOUT + 10


def test_fork_server_death_is_recovered(daemon):
    d, alice, bob = daemon()
    with served_meanwhile(bob):
        server, worker = fork_server(d), worker_of(d, alice.user)
        os.kill(server, signal.SIGKILL)
        wait_for(lambda: children(d.proc.pid, "--fork-server") != [server], 10, "the fork server to be reaped")
        alice.json("GET", "/api/scripts")  # the worker it forked lives on: root holds its pipes and pidfd
        os.kill(worker, signal.SIGKILL)
        wait_for(lambda: worker_of(d, alice.user) != worker, 10, "the killed worker to go")
        # as for any killed worker: a request that meets it dying is 503 "try
        # again" (root may not have seen the death yet), and the next one works
        status, _, data = alice.timed("GET", "/api/scripts")
        assert status == 200 or (status == 503 and "ended unexpectedly" in data["error"]["message"]), data
        alice.json("GET", "/api/scripts")
        fresh = worker_of(d, alice.user)
        assert fresh not in (None, worker) and parent(fresh) == fork_server(d) != server
    with open(d.log_path) as f:
        assert "the fork server ended" in f.read()


def test_spawned_workers_when_the_fork_server_is_off(daemon, runtime):
    d, alice, bob = daemon(worker={"fork_server": False})
    assert children(d.proc.pid, "--fork-server") == []
    pid = worker_of(d, alice.user)
    assert parent(pid) == d.proc.pid and proc_ids(pid)[0] == alice.user.uid
    assert exe(pid) == os.path.realpath(runtime["python"])


def test_fork_server_refuses_what_is_no_request(runtime):
    """Bounded: a message over FORK_REQUEST bytes, one that is not JSON, or
    one for root gets an error answer and no process; the server lives on."""
    forks = flightjobd.ForkServer(flightjobd.Config({"worker": runtime}))
    try:
        good = {"user": "nobody", "uid": 65534, "gid": 65534, "groups": [65534], "env": {}}
        for request in (b"x" * (flightjobd.FORK_REQUEST + 1), b"{not json",
                        json.dumps(dict(good, uid=0)).encode(), json.dumps(dict(good, groups=[0])).encode(),
                        json.dumps(dict(good, env={"A": 1})).encode()):
            forks.sock.settimeout(30)
            forks.sock.send(request)
            data, got, _, _ = socket.recv_fds(forks.sock, 4096, 4)
            assert got == [] and "error" in json.loads(data), data
        assert forks.proc.poll() is None
        proc = forks.fork("nobody", {"user": 65534, "group": 65534, "extra_groups": [65534]},
                          {"HOME": "/"}, time.monotonic() + 30)
        wait_for(lambda: proc_ids(proc.pid)[0] == 65534, 10, "the fork to become nobody")
        assert proc_ids(proc.pid) == (65534, 65534, [65534])
        proc.kill()
        proc.wait(10)
        assert proc.poll() is not None
    finally:
        forks.stop()

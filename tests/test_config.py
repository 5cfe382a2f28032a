"""Configuration: one schema, the shipped file covers it, bad input named."""
import os
import pwd
import re
import shutil
import subprocess
import sys

import pytest

import flightjobd
from support import ROOT, free_port, need


def shipped_keys():
    """(section, key, value text) for every commented key in etc/flight-job.toml."""
    found, section = [], None
    for line in open(os.path.join(ROOT, "etc", "flight-job.toml")):
        m = re.match(r"^\[(\w+)\]", line)
        if m:
            section = m.group(1)
        m = re.match(r"^#(\w+) = (.*)$", line)
        if m:
            found.append((section, m.group(1), m.group(2)))
    return found


def test_shipped_config_lists_every_key_at_its_default():
    shipped = shipped_keys()
    assert {(s, k) for s, k, _ in shipped} == {(s, k) for s in flightjobd.SCHEMA for k in flightjobd.SCHEMA[s]}
    # uncommented, the file parses and gives exactly the defaults
    text = "".join(("[%s]\n" % s if i == 0 or shipped[i - 1][0] != s else "") + "%s = %s\n" % (k, v)
                   for i, (s, k, v) in enumerate(shipped))
    values = flightjobd.check_config(flightjobd._toml().loads(text))
    defaults = flightjobd.Config()
    for s, k, _ in shipped:
        assert values[s][k] == defaults[s][k], (s, k)


def test_shipped_file_is_valid_as_is():
    config = flightjobd.load_config(os.path.join(ROOT, "etc", "flight-job.toml"), required=True)
    assert config["server"]["listen"] == "127.0.0.1:8080"


@pytest.mark.parametrize("text, words", [
    ("[server]\nlistn = \"127.0.0.1:1\"\n", ["server.listn", "unknown key"]),
    ("[sever]\nlisten = \"127.0.0.1:1\"\n", ["[sever]", "unknown section"]),
    ("[auth]\nmin_uid = \"many\"\n", ["auth.min_uid", "'many'"]),
    ("[scheduler]\ntype = \"pbs\"\n", ["scheduler.type", "'pbs'", "slurm"]),
    ("[server]\nlisten = \"nowhere\"\n", ["server.listen", "'nowhere'"]),
    ("[server\n", ["not valid TOML"]),
])
def test_bad_config_names_file_key_and_value(tmp_path, text, words):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(flightjobd.ConfigError) as e:
        flightjobd.load_config(str(path), required=True)
    assert str(path) in str(e.value)
    for w in words:
        assert w in str(e.value)


def test_check_config_command(tmp_path):
    good = tmp_path / "good.toml"
    good.write_text("[scheduler]\ntype = \"local\"\n")
    r = subprocess.run([sys.executable, os.path.join(ROOT, "flightjobd.py"), "--config", str(good),
                        "--check-config"], capture_output=True, text=True)
    assert r.returncode == 0 and "valid" in r.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text("[worker]\nidle_timeout = -3\n")
    r = subprocess.run([sys.executable, os.path.join(ROOT, "flightjobd.py"), "--config", str(bad),
                        "--check-config"], capture_output=True, text=True)
    assert r.returncode == 2
    assert "worker.idle_timeout" in r.stderr and "-3" in r.stderr and str(bad) in r.stderr


def test_version(tmp_path):
    r = subprocess.run([sys.executable, os.path.join(ROOT, "flightjobd.py"), "--version"],
                       capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == "flightjobd " + flightjobd.__version__


@pytest.mark.root
def test_multi_user_needs_root(runtime):
    """--multi-user as an ordinary user (nobody, through setpriv) refuses to
    start, saying why, before it serves anything."""
    need(os.geteuid() == 0 and shutil.which("setpriv"), "switching to nobody needs root and setpriv")
    nobody = pwd.getpwnam("nobody")
    as_nobody = ["setpriv", "--reuid=%d" % nobody.pw_uid, "--regid=%d" % nobody.pw_gid, "--clear-groups"]
    argv = [runtime["python"], runtime["program"], "--config", "/dev/null", "--listen", "127.0.0.1:%d" % free_port()]
    r = subprocess.run(as_nobody + argv + ["--multi-user"], capture_output=True, text=True, cwd="/", timeout=60)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "flightjobd: multi-user mode needs root (it starts workers as each user)" in r.stderr
    assert "Traceback" not in r.stderr
    # the same command otherwise fine: the refusal is about the user
    r = subprocess.run(as_nobody + argv + ["--multi-user", "--check-config"], capture_output=True, text=True,
                       cwd="/", timeout=60)
    assert r.returncode == 0, r.stderr


def test_command_line_overrides_config(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[server]\nlisten = \"127.0.0.1:1234\"\n")
    config = flightjobd.load_config(str(path), {"server": {"listen": "127.0.0.1:999"},
                                                "scheduler": {"type": "local"}})
    assert config["server"]["listen"] == "127.0.0.1:999"
    assert config["scheduler"]["type"] == "local"


@pytest.mark.parametrize("auth, server, words", [
    ({"proxy_header": "X-Remote-User", "proxy_logout_url": "/out"}, {}, ["needs server.trusted_proxies"]),
    ({"proxy_header": "X-Remote-User"}, {"trusted_proxies": ["10.1.0.5"]}, ["needs auth.proxy_logout_url"]),
    ({"proxy_header": "X-Remote-User", "proxy_logout_url": "/out"}, {"trusted_proxies": ["127.0.0.1"]},
     ["includes loopback", "auth.proxy_users"]),
    ({"proxy_header": "X-Remote-User", "proxy_logout_url": "/out"}, {"trusted_proxies": ["::1"]},
     ["includes loopback", "auth.proxy_users"]),
    ({"proxy_users": ["no-such-account-here"]}, {}, ["auth.proxy_users", "no-such-account-here"]),
])
def test_proxy_sign_in_needs_its_proxy_its_logout_and_on_loopback_its_account(auth, server, words):
    config = flightjobd.Config(flightjobd.check_config({"auth": auth, "server": server}))
    with pytest.raises(flightjobd.ConfigError) as e:
        flightjobd.check_bounds(config)
    for w in words:
        assert w in str(e.value)
    ok = flightjobd.Config(flightjobd.check_config({"auth": dict(auth, proxy_users=["root"], proxy_logout_url="/out"),
                                                    "server": dict(server, trusted_proxies=["127.0.0.1"])}))
    flightjobd.check_bounds(ok)  # with each of them given, it starts


def test_password_login_off_needs_the_proxy_and_where_it_is():
    """auth.password_login = false with no proxy sign-in: nobody could log in; with no server.base_url
    the login page could not say where to go. Each refused at start, naming the keys."""
    proxy = {"proxy_header": "X-Remote-User", "proxy_users": ["root"], "proxy_logout_url": "/out"}
    for auth, server, words in (({"password_login": False}, {}, ["auth.password_login", "auth.proxy_header"]),
                                (dict(proxy, password_login=False), {"trusted_proxies": ["127.0.0.1"]},
                                 ["auth.password_login", "server.base_url"])):
        with pytest.raises(flightjobd.ConfigError) as e:
            flightjobd.check_bounds(flightjobd.Config(flightjobd.check_config({"auth": auth, "server": server})))
        for w in words:
            assert w in str(e.value)
    flightjobd.check_bounds(flightjobd.Config(flightjobd.check_config(  # with both, it starts
        {"auth": dict(proxy, password_login=False),
         "server": {"trusted_proxies": ["127.0.0.1"], "base_url": "https://hpc.example.org/"}})))


@pytest.mark.parametrize("key, value", [
    ("proxy_header", "Cookie"), ("proxy_header", "X-Forwarded-For"), ("proxy_header", "X_Remote_User"),
    ("proxy_header", "X-Remote-User\r\nX: y"), ("proxy_logout_url", "//evil.example/"),
    ("proxy_logout_url", "javascript:alert(1)"), ("proxy_logout_url", "https://sso.example.org/log out"),
    ("proxy_logout_url", "/\\evil.example"),
])
def test_a_bad_proxy_header_or_logout_url_is_refused_at_start(key, value):
    with pytest.raises(flightjobd.ConfigError) as e:
        flightjobd.check_config({"auth": {key: value}})
    assert "auth." + key in str(e.value)

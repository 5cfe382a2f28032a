"""make install: the installed daemon runs with its vendored dependencies."""
import os
import subprocess
import sys

import pytest

from support import ROOT, Daemon, free_port, need, write_toml


@pytest.mark.jobs  # pip installs the vendored dependencies: not the fast tier
def test_make_install_gives_a_working_daemon(tmp_path):
    need(os.path.exists("/usr/bin/python3"), "make install targets /usr/bin/python3")
    dest = tmp_path / "dest"
    subprocess.run(["make", "-C", ROOT, "install", "DESTDIR=%s" % dest, "PREFIX=/usr/local",
                    "VENV=%s" % os.path.dirname(os.path.dirname(sys.executable))],
                   check=True, capture_output=True)
    lib = dest / "usr/local/lib/flight-job"
    for path in (lib / "flightjobd.py", lib / "templates/base.tpl", lib / "share/job-templates/serial/template.toml",
                 lib / "vendor/bottle.py", dest / "etc/flight-job/flight-job.toml", dest / "etc/pam.d/flight-job"):
        assert path.exists(), path
    unit = (dest / "lib/systemd/system/flightjobd.service").read_text()
    assert "WorkingDirectory=/usr/local/lib/flight-job\nExecStart=/usr/bin/python3 -m flightjobd --multi-user" in unit
    assert os.readlink(dest / "usr/local/sbin/flightjobd") == "../lib/flight-job/flightjobd.py"
    config = str(dest / "etc/flight-job/flight-job.toml")
    r = subprocess.run(["/usr/bin/python3", "-I", str(lib / "flightjobd.py"), "--config", config, "--check-config"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    port = free_port()
    override = tmp_path / "run.toml"
    write_toml(str(override), {"storage": {"state_dir": str(tmp_path / "state")}, "scheduler": {"type": "local"}})
    d = Daemon(str(override), str(tmp_path / "log"), port)
    d.argv, d.cwd = ["/usr/bin/python3", "-m", "flightjobd"], str(lib)  # as the unit runs it
    try:
        d.start()
        assert d.login_url and "/login?token=" in d.login_url
    finally:
        d.stop()

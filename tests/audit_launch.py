"""Test-only launcher: runs flightjobd.main() in this process under an audit
hook (sys.addaudithook) that writes one JSON line to LOGFILE for

- every audit event that names a path: open (builtins.open, io.open, os.open,
  io.open_code), os.listdir, os.scandir, os.chdir, os.mkdir, os.rmdir,
  os.remove, os.rename, os.link, os.symlink, os.chmod, os.chown,
  os.truncate, os.utime, the xattr calls, shutil.*, glob.glob, tempfile.*;
- every call of the stat family, which CPython does not audit: os.stat,
  os.lstat, os.access, os.readlink and os.statvfs are wrapped here (before
  anything is imported) to raise the event "test.stat"; os.path.exists,
  isdir, isfile, realpath and the like go through them;
- every process start: subprocess.Popen (with its argv and cwd), os.exec*,
  os.posix_spawn*, os.spawn*, os.system, os.fork, os.forkpty, pty.spawn.

Paths are written absolute (a relative one joined to the cwd of the moment),
as the text given; a call relative to a directory descriptor is marked.
Each record names its process (pid); the first of each process says how it
was started ("audit.start"). Only what a process does while its effective
uid is root is recorded: run as the fork server (`--fork-server`), the
hook stays in every child it forks, so a worker's child is recorded as root
until its setuid (after it closed every descriptor, the log is opened again
for each record, and closed, so the worker never holds it); a process that
starts as a user (a worker spawned the old way) runs unaudited.
tests/test_audit.py reads the log. Usage:

    python tests/audit_launch.py LOGFILE FLIGHTJOBD-ARGUMENTS...
"""
import json
import os
import sys

PATH_ARGS = {  # audit event -> indexes of its arguments that are paths
    "open": (0,), "os.listdir": (0,), "os.scandir": (0,), "os.chdir": (0,), "os.mkdir": (0,),
    "os.rmdir": (0,), "os.remove": (0,), "os.rename": (0, 1), "os.link": (0, 1), "os.symlink": (0, 1),
    "os.chmod": (0,), "os.chown": (0,), "os.truncate": (0,), "os.utime": (0,), "os.chflags": (0,),
    "os.listxattr": (0,), "os.getxattr": (0,), "os.setxattr": (0,), "os.removexattr": (0,),
    "shutil.copyfile": (0, 1), "shutil.copymode": (0, 1), "shutil.copystat": (0, 1),
    "shutil.copytree": (0, 1), "shutil.rmtree": (0,), "shutil.move": (0, 1), "shutil.chown": (0,),
    "shutil.make_archive": (0, 2), "shutil.unpack_archive": (0, 1), "glob.glob": (0,),
    "glob.glob/2": (0, 2), "tempfile.mkstemp": (0,), "tempfile.mkdtemp": (0,), "test.stat": (0,),
}
PROCESS_ARGV = {  # audit event -> index of its argv (None: the event has none)
    "subprocess.Popen": 1, "os.exec": 1, "os.posix_spawn": 1, "os.spawn": 2, "os.system": 0,
    "os.fork": None, "os.forkpty": None, "pty.spawn": 0,
}
STAT_FAMILY = ("stat", "lstat", "access", "readlink", "statvfs")


def text(value):
    if isinstance(value, (str, bytes)):
        return os.fsdecode(value)
    if hasattr(value, "__fspath__"):
        return os.fsdecode(value.__fspath__())
    return None  # a file descriptor, or nothing


def make_hook(log):
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    ident = os.fstat(fd)
    reopening = []

    def write(record):
        if os.geteuid() != 0 or reopening:
            return
        record["pid"] = os.getpid()
        line = (json.dumps(record) + "\n").encode("utf-8", "surrogateescape")
        try:
            now = os.fstat(fd)
            if (now.st_dev, now.st_ino) == (ident.st_dev, ident.st_ino):
                os.write(fd, line)
                return
        except OSError:
            pass
        reopening.append(1)  # a forked worker closed it: its os.open is not recorded again
        try:
            again = os.open(log, os.O_WRONLY | os.O_APPEND)
            try:
                os.write(again, line)
            finally:
                os.close(again)
        finally:
            reopening.pop()

    def hook(event, args):
        if event in PATH_ARGS:
            for i in PATH_ARGS[event]:
                path = text(args[i]) if i < len(args) else None
                if path is None:
                    continue
                relative_to_fd = event == "test.stat" and args[2] is not None
                if not os.path.isabs(path) and not relative_to_fd:
                    path = os.path.join(os.getcwd(), path)
                write({"event": event, "path": path, "dir_fd": relative_to_fd})
        elif event in PROCESS_ARGV:
            at = PROCESS_ARGV[event]
            argv = args[at] if at is not None else None
            argv = [text(a) for a in argv] if isinstance(argv, (list, tuple)) else text(argv)
            record = {"event": event, "argv": argv}
            if event == "subprocess.Popen":
                record["cwd"] = text(args[2])
            write(record)
    write({"event": "audit.start", "mode": sys.argv[2:]})
    return hook


def wrap_stat_family():
    """os.stat and its kin raise "test.stat" (path, function, dir_fd)."""
    for name in STAT_FAMILY:
        real = getattr(os, name)

        def wrapper(path, *args, _real=real, _name=name, **kw):
            sys.audit("test.stat", path, _name, kw.get("dir_fd"))
            return _real(path, *args, **kw)
        wrapper.__name__ = name
        for supports in (os.supports_dir_fd, os.supports_fd, os.supports_follow_symlinks,
                         os.supports_effective_ids):
            if real in supports:
                supports.add(wrapper)
        setattr(os, name, wrapper)


def main():
    if os.geteuid() == 0:
        wrap_stat_family()
        sys.addaudithook(make_hook(sys.argv[1]))
    # the checkout's flightjobd, unless the program that runs this (the
    # fork server's, see test_audit.audited_runtime) put its own first
    sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import flightjobd
    return flightjobd.main(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())

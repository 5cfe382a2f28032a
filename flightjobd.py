#!/usr/bin/env python3
"""flightjobd: a web job manager for HPC login nodes.

A user logs in with their cluster username and password (or through the
site's sign-in proxy: auth.proxy_header; auth.password_login = false makes
it the only way in), creates job scripts
from templates by answering questions, edits them, submits them to the
scheduler (Slurm, or the embedded `local` scheduler), watches their jobs,
cancels them and reads their results, in a browser or as JSON with curl.

Running it:

    flightjobd.py                       single-user mode on 127.0.0.1:8080
    flightjobd.py --multi-user          every user of the machine (root only)
    flightjobd.py --check-config        validate the configuration and exit

The configuration is TOML, by default /etc/flight-job/flight-job.toml (see
etc/flight-job.toml, which lists every key at its default).

Privilege model: the process that serves HTTP (root in multi-user mode) never
opens a path inside a user's home and never runs a scheduler command for a
user. Those run in the user's *worker*: this same file as the user (uid, gid,
supplementary groups, clean environment, cwd = home, umask 077), spoken to
over pipes with one JSON message per line. In multi-user mode workers are
forked from a *fork server* (`--fork-server`: this file started with nothing
but a socket, before any session or secret exists), which drops to the user
in the child; else each is started with `--worker`. The one exception to "no
scheduler command" is the shared status poll (StatusPoll, multi-user Slurm):
a worker of `scheduler.status_user` that runs squeue/sacct read-only, argv
only, with numeric job ids and checked user names; root checks its answer
field by field and hands each user's worker the statuses of that user's own
jobs (by Slurm's owner uid), which the worker records. It also makes the
one partition summary (sinfo, squeue, scontrol) submit pages show.

Layout in a user's home (`storage.state_dir`, default
~/.local/share/flight-job):

    scripts/ID/meta.json    name, template, answers, times, version, the
                            names of the script and notes files, the hash
                            of the text as last made from the answers
                            (rendered_sha256), and an
                            imported script's origin (its file; whether
                            it runs where it is)
    scripts/ID/script-vN-XXXXXXXX.sh, notes-vN-XXXXXXXX.md
                            the script and its notes (SCRIPT_FORMAT)
    jobs/ID/meta.json       state, scheduler id, times, answers, options
    jobs/ID/script.sh       the exact script that was submitted
    local/N/                the local scheduler's run of job N (spec.json, status.json,
                            markers: cancel, cancel-TASK, hold, time_limit)
    job-index.json          what the jobs list searches and sorts by, per
                            finished job (a cache: see INDEX_FILE)
    .lock                   flock taken for every read-modify-write

Every metadata file carries a format version; every write is atomic.

Finding your way: the file is cut into banner sections, primitives on top,
the request flow at the bottom; `grep -n '^# .* ####' flightjobd.py` lists
them. Each section uses only those above it.

    Imports
    Constants, Errors           states and their words; FlightJobError and kin
    Configuration               SCHEMA: every config key, its default and help
    Metrics                     what GET /metrics counts (root), its fixed labels
    Paths and files             the path gate, atomic_write, locked
    Templates and questions     template.toml, answers, render_script
    #SBATCH options             directives, submission options, a user's extra
                                options (sbatch's option table), output paths
    Slurm output -> status      squeue/sacct parsers, state tables, rollup
    Slurm output -> partitions, accounts, submits
                                sinfo/scontrol/sacctmgr/sbatch parsers
    Local job supervisor        the detached process that runs a local job
    Scheduler adapters: ...     the interface (Scheduler), Slurm, local (with
                                SCHEDULERS, make_scheduler)
    Store: ...                  the worker side, one part (a StorePart with its
                                own state) under each banner: templates,
                                scripts, files in the home, job records,
                                submission, status, control, list, results;
                                Store joins them
    Shared status poll: its process
                                StatusSource (scheduler.status_user's worker)
    Worker: ...                 its process (worker_main) and the fork server;
                                the root side: Worker and WorkerPool
    Shared status poll          StatusPoll (root)
    Authentication and sessions
                                PAM, throttling, sessions
    Waitress internals          the one place past waitress's public adjustments
    Web application             App, RoutePlugin, security headers, render
    Routes: ...                 the handlers, by page, in URL order: page_*
                                for pages, api_* for the JSON API
    Main                        command line, serve()

tests/test_structure.py keeps this map true: the sections in this order,
each using only names defined above it (its EXCEPTIONS say why where not),
no class over 450 lines, no function over 150, no section over 800.

Where to add things (and how many places each touches):
    a scheduler        3: a Scheduler subclass under a "Scheduler adapters:"
                       banner, declaring what it can do (SHARED_POLL,
                       QUEUES, MEMORY_WHAT, ACCOUNTING_LAG) and the methods
                       it answers; its row in SCHEDULERS (--scheduler's
                       choices follow); its name in scheduler.type's choices
                       (SCHEMA: config comes first)
    a route            1: a function page_NAME (a page) or api_NAME (JSON)
                       with @route(...) under its "Routes:" banner, or for an
                       API route that is one worker operation one api_call
                       line there; an /api/ route is also a row of the
                       README's API table
    a worker operation 1: a method with @operation("part.name") in its Store
                       part (or StatusSource), writes=True when it changes
                       the user's files; a route calls app.call(user, "part.name", ...)
    a job field        1: its row in JOB_FIELDS ("Store: job records"), which
                       gives the new record, the checks, the public view and,
                       with a sort column, the list's sort and search (plus
                       the template that shows it, and for a status field
                       the adapter that reads it)
    a config key       2: its row in SCHEMA ("Configuration") and its line,
                       at its default, in etc/flight-job.toml

Tests only: FLIGHTJOB_TEST_FAULT, set in a worker's environment through
scheduler.environment, stops the worker dead at one named step of a write, a
rename or a submit (FAULT_POINTS), at its N-th time, so tests can crash it exactly there. Never
set it in production.
"""

__version__ = "0.1.0"

# Imports ####################################################################

import argparse
import base64
import codecs
import collections
import concurrent.futures
import contextlib
import copy
import datetime
import difflib
import errno
import fcntl
import grp
import hashlib
import hmac
import html
import ipaddress
import itertools
import json
import logging
import operator
import os
import pwd
import queue
import re
import resource
import secrets
import selectors
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
if os.path.isdir(os.path.join(HERE, "vendor")):  # dependencies vendored by `make install`
    sys.path.insert(0, os.path.join(HERE, "vendor"))

import bottle  # noqa: E402

log = logging.getLogger("flightjobd")

# Constants ##################################################################

DEFAULT_CONFIG = "/etc/flight-job/flight-job.toml"
FORMAT = 1  # the format version written into every metadata file

STATES = ("PENDING", "RUNNING", "COMPLETED", "FAILED", "CANCELLED", "UNKNOWN")
UNFINISHED = ("PENDING", "RUNNING")
FINISHED = ("COMPLETED", "FAILED", "CANCELLED", "UNKNOWN")
# The words pages use (templates through App.render, app.js through the
# data-vocabulary attribute of base.tpl): each state's label, the scheduler's
# own states worth adding to it ("Running · suspended"), and what a page asks
# before it acts: (page title, button, question about the item).
STATE_LABELS = {"PENDING": "Pending", "RUNNING": "Running", "COMPLETED": "Completed",
                "FAILED": "Failed", "CANCELLED": "Cancelled", "UNKNOWN": "Unknown"}
ENDING = ("COMPLETING",)  # the scheduler's states of a job it is ending: "Ending" (not Running)
SHOWN_RAW_STATES = ("SUSPENDED", "CONFIGURING", "REQUEUED", "STOPPED", "TIMEOUT", "OUT_OF_MEMORY",
                    "NODE_FAIL", "BOOT_FAIL", "PREEMPTED", "DEADLINE", "REVOKED")
CONFIRM = {
    "cancel": ("Cancel job", "Cancel", "Cancel job %s? It stops at once and its results may be incomplete."),
    "remove": ("Remove job", "Remove", "Remove job %s from the list? Its result files are kept."),
    "delete": ("Delete script", "Delete", "Delete the script “%s”? Its jobs and their results stay."),
    "cancel_task": ("Cancel task", "Cancel task", "Cancel array task %s? It stops at once; the job's other "
                    "tasks go on."),
}
# The bulk actions' pages: action -> (title, button, what was done, what happens, whether it is the danger kind).
BULK_WORDS = {"cancel": ("Cancel jobs", "Cancel", "cancelled", "They stop at once and their results may be incomplete.",
                         True),
              "remove": ("Remove jobs", "Remove", "removed", "Their records leave the list; their result files are kept.",
                         True),
              "hold": ("Hold jobs", "Hold", "held", "They keep their place in the queue but do not start until "
                       "released.", False),
              "release": ("Release jobs", "Release", "released", "They may start as soon as the scheduler has room.",
                          False)}

QUESTION_TYPES = ("text", "multiline", "integer", "number", "select",
                  "multiselect", "boolean", "time", "email", "path")
QUESTION_KEYS = {"id", "text", "description", "type", "default", "options",
                 "required", "min", "max", "pattern", "pattern_error",
                 "ask_when", "options_from", "option"}
TEMPLATE_KEYS = {"name", "synopsis", "description", "priority", "tags",
                 "script", "question", "submission_question", "needs"}

# Errors #####################################################################


class FlightJobError(Exception):
    """A domain error: carries an HTTP status, a code and a plain message."""

    status = 500
    code = "internal"

    def __init__(self, message, fields=None):
        super().__init__(message)
        self.message = message
        self.fields = fields or {}

    def as_dict(self):
        return {"code": self.code, "message": self.message,
                "fields": self.fields}

    @classmethod
    def from_dict(cls, data):
        return cls(str(data.get("message", "error")), data.get("fields") or {})

    @classmethod
    def of_field(cls, field, message):
        """The error with message, shown beside the form's field too."""
        return cls(message, {field: message})


class BadRequest(FlightJobError):
    status, code = 400, "bad_request"


class Unauthorized(FlightJobError):
    status, code = 401, "unauthorized"


class Forbidden(FlightJobError):
    status, code = 403, "forbidden"


class SignInRefused(Forbidden):
    """The site's proxy sign-in refused: a header not from the proxy, or an account that may not log in."""
    code = "sign_in_refused"


class PasswordsOff(Forbidden):
    """A password sent while auth.password_login is false: the site's proxy is the only way in."""
    code = "password_login_off"


class NotFound(FlightJobError):
    status, code = 404, "not_found"


class Conflict(FlightJobError):
    status, code = 409, "conflict"


class PreconditionFailed(FlightJobError):
    """What was to be changed was changed elsewhere first; `current` is it
    now, so the user sees both."""

    status, code = 412, "stale"

    def __init__(self, message, fields=None, current=None):
        super().__init__(message, fields)
        self.current = current

    def as_dict(self):
        out = super().as_dict()
        if self.current is not None:
            out["current"] = self.current
        return out

    @classmethod
    def from_dict(cls, data):
        err = super().from_dict(data)
        err.current = data.get("current")
        return err


class Diverged(Conflict):
    """A change would replace text the user wrote themselves: `current` is
    the item now, `rendered` the text the change would give it, so they
    choose (409)."""

    code = "edited"

    def __init__(self, message, fields=None, current=None, rendered=None):
        super().__init__(message, fields)
        self.current, self.rendered = current, rendered

    def as_dict(self):
        return dict(super().as_dict(), current=self.current, rendered=self.rendered)

    @classmethod
    def from_dict(cls, data):
        err = super().from_dict(data)
        err.current, err.rendered = data.get("current"), data.get("rendered")
        return err


class TooLarge(FlightJobError):
    status, code = 413, "too_large"


class Invalid(FlightJobError):
    status, code = 422, "invalid"


class Throttled(FlightJobError):
    status, code = 429, "throttled"


class Unavailable(FlightJobError):
    status, code = 503, "unavailable"


class SchedulerError(Unavailable):
    """A scheduler command failed or timed out; never changes a job's state."""

    code = "scheduler"
    stdout = stderr = ""  # what the command printed
    returncode = None  # its exit status; None if it could not start or timed out

    def __init__(self, message, fields=None, *, stdout="", stderr="", returncode=None):
        super().__init__(message, fields)
        self.stdout, self.stderr, self.returncode = stdout, stderr, returncode


class SchedulerRefused(SchedulerError):
    """The scheduler answered and refused the request (its own message)."""

    status, code = 422, "refused"


ERRORS = {cls.code: cls for cls in (
    FlightJobError, BadRequest, Unauthorized, Forbidden, NotFound, Conflict,
    Diverged, PreconditionFailed, TooLarge, Invalid, Throttled, Unavailable,
    SchedulerError, SchedulerRefused)}


def error_from_dict(data):
    """Rebuild a domain error sent across the worker pipe."""
    return ERRORS.get(data.get("code"), FlightJobError).from_dict(data)


# Configuration ##############################################################


def _bool(value):
    if isinstance(value, bool):
        return value
    raise ValueError("expected true or false")


def _int(low=None, high=None):
    def convert(value):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError("expected a whole number")
        if low is not None and value < low:
            raise ValueError("must be at least %d" % low)
        if high is not None and value > high:
            raise ValueError("must be at most %d" % high)
        return value
    return convert


def _number(low=0):
    def convert(value):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < low:
            raise ValueError("expected a number of at least %s" % low)
        return float(value)
    return convert


def _networks(value):
    for net in _strings(value):
        ipaddress.ip_network(net, strict=False)  # ValueError names the bad one
    return value


def _str(value):
    if not isinstance(value, str):
        raise ValueError("expected a string")
    return value


def _choice(*choices):
    def convert(value):
        if value not in choices:
            raise ValueError("expected one of %s" % ", ".join(choices))
        return value
    return convert


def _strings(value):
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError("expected a list of strings")
    return value


def _env_table(value):
    if not isinstance(value, dict) or not all(
            isinstance(v, str) and re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", k)
            for k, v in value.items()):
        raise ValueError("expected a table of NAME = \"value\"")
    return value


# Headers the daemon reads for their own meaning: never the proxy's user header.
OWN_HEADERS = {"authorization", "cookie", "host", "content-type", "content-length", "transfer-encoding", "connection",
               "if-match", "x-csrf-token", "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto",
               "x-forwarded-port", "x-forwarded-by", "forwarded", "origin", "referer"}


def _header_name(value):
    if _str(value) and (not re.match(r"^[A-Za-z][A-Za-z0-9-]{0,63}$", value) or value.lower() in OWN_HEADERS):
        raise ValueError("expected a header name such as X-Remote-User (letters, digits, hyphens), "
                         "not one the daemon reads for itself")
    return value


def _url(value):
    """"", an http(s) URL with a host, or a path on this site: printable ASCII, no spaces."""
    if _str(value) and not (re.match(r"^[\x21-\x7e]{1,2000}$", value) and (
            re.match(r"^/(?![/\\])", value) or re.match(r"^https?://[^/?#\\]+(?:[/?#]|$)", value))):
        raise ValueError("expected https://host/path or a /path")
    return value


def _listen(value):
    host, sep, port = _str(value).rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("expected HOST:PORT")
    return value


# section -> key -> (default, converter, help). The shipped etc/flight-job.toml
# lists every key here at its default; a test keeps the two the same.
SCHEMA = {
    "server": {
        "listen": ("127.0.0.1:8080", _listen, "Address and port to serve HTTP on."),
        "multi_user": (False, _bool, "Serve every user of the machine (needs root); otherwise only the user running the daemon."),
        "base_url": ("", _str, "Public URL of the site, used in printed links; https:// makes cookies Secure."),
        "threads": (32, _int(1, 256), "Waitress threads serving requests."),
        "max_body": (1048576, _int(1024), "Largest JSON request body, in bytes (a page's form: 3 x this + 4 KiB, percent-encoded)."),
        "reserved_threads": (2, _int(0), "Multi-user mode: threads kept for requests needing no worker (the rest: worker slots)."),
        "connection_limit": (1000, _int(10), "Client connections held open at most; beyond, new ones wait in the listen backlog."),
        "channel_timeout": (30, _int(1), "Seconds an idle client connection (no data, no request in progress) stays open."),
        "cleanup_interval": (10, _int(1), "Seconds between two sweeps for connections idle past server.channel_timeout."),
        "backlog": (1024, _int(1), "Connections the kernel queues while the daemon is not accepting (listen backlog)."),
        "max_header_bytes": (65536, _int(4096), "Largest request line and headers, in bytes (431 beyond): what one connection may buffer."),
        "request_read_timeout": (30, _int(1), "Seconds a request may take to arrive whole from its first byte."),
        "connections_per_address": (100, _int(1), "Connections one address (loopback, an IPv6 /64: one) may hold; proxies excepted."),
        "loopback_users": (True, _bool, "Count a connection from loopback (an SSH tunnel) as the local user's whose socket it is."),
        "download_timeout": (600, _int(1), "Seconds a download may take; then its connection is closed (a slow reader's thread freed)."),
        "downloads_per_user": (2, _int(1), "Multi-user mode: one user's file downloads at once (more wait their turn)."),
        "turn_wait": (5.0, _number(0), "Multi-user mode: seconds a request waits for its turn when all its slots are taken (then 503)."),
        "trusted_proxies": ([], _networks, "Reverse proxies (addresses, CIDRs) whose X-Forwarded-For names the client."),
    },
    "auth": {
        "pam_service": ("flight-job", _str, "PAM service used to check passwords (etc/pam.d/flight-job)."),
        "min_uid": (1000, _int(1), "Multi-user mode refuses users with a lower uid (and root always)."),
        "session_idle": (3600, _int(10), "Seconds of inactivity after which a session ends."),
        "session_max": (43200, _int(10), "Seconds after login after which a session ends whatever happens."),
        "basic_cache": (60, _int(0), "Seconds a successful HTTP Basic check is remembered (a hash, never the password)."),
        "throttle_window": (900, _int(1), "Seconds after its last failure that a failed-login record is forgotten."),
        "secure_cookies": ("auto", _choice("auto", "always", "never"), "Mark cookies Secure: auto follows base_url's scheme."),
        "allow_groups": ([], _strings, "Multi-user mode: only members of these groups may log in; empty: every user from min_uid up."),
        "deny_shells": (["/usr/sbin/nologin", "/sbin/nologin", "/bin/false", "/usr/bin/false"], _strings,
                        "Multi-user mode refuses accounts with these shells (system accounts), before PAM."),
        "session_dir": ("", _str, "Root-only directory of session files; login nodes sharing it share sessions. Empty: see README."),
        "recheck_interval": (30, _int(1, 59), "Seconds between re-checks of logged-in accounts (new password, lock, expiry)."),
        "failure_delay": (2.0, _number(0), "Seconds every failed login takes, whatever the cause, so timing tells nothing."),
        "login_slots": (4, _int(1, 256), "Logins checked at once; when all are busy a login is answered 503 at once."),
        "throttle_free": (3, _int(0), "Failed logins for one user name from one address before that pair is refused for a while."),
        "throttle_delay": (2.0, _number(0), "Seconds the pair is refused after its next failure; doubled with each further one."),
        "throttle_cap": (300, _int(1), "Longest refusal of one user name from one address, in seconds."),
        "throttle_address": (30, _int(1), "Failed logins from one address (any user names) before it is refused for throttle_window."),
        "throttle_user": (10, _int(1), "Failed logins for one user name (any addresses) before its logins are slowed, never refused."),
        "throttle_user_delay": (3.0, _number(0), "Seconds each login for such a user name waits before its password is checked."),
        "throttle_table": (20000, _int(100), "Most failed-login records kept in memory; the oldest are forgotten first."),
        "proxy_header": ("", _header_name, "Header in which a proxy of server.trusted_proxies names the user it signed in "
                         "(e.g. X-Remote-User); empty: off. See the README's \"Sign-in through the site's proxy\"."),
        "proxy_users": ([], _strings, "Accounts whose connections from this machine (loopback or its own addresses) are "
                        "the trusted proxy's: its Unix user (e.g. www-data); a local user's are their own (no "
                        "X-Forwarded-For, no proxy_header). Needed for proxy_header with a proxy on this machine."),
        "proxy_logout_url": ("", _url, "Where logging out through the proxy leads: the proxy's own logout URL "
                             "(https://... or a /path); needed with proxy_header."),
        "password_login": (True, _bool, "Accept passwords (login form, /api/login, HTTP Basic); false: the site's proxy "
                           "(proxy_header) is the only way in, its multi-factor never skipped. Needs server.base_url."),
    },
    "worker": {
        "idle_timeout": (600, _int(1), "Seconds without requests after which a user's worker ends."),
        "request_timeout": (60, _int(1), "Seconds a request may take in a worker before the worker is ended and 503 answered."),
        "python": ("", _str, "Python interpreter for workers and local jobs; empty: the daemon's own."),
        "program": ("", _str, "The flightjobd.py that workers run; empty: the daemon's own file."),
        "path": ("/usr/local/bin:/usr/bin:/bin", _str, "PATH in a worker's environment (and so for scheduler commands and local jobs)."),
        "lang": ("C.UTF-8", _str, "LANG in a worker's environment."),
        "max_message": (8388608, _int(65536), "Largest answer a worker may send, in bytes, counted as it arrives (more: ended, 503)."),
        "max_memory_mb": (1024, _int(0), "Address space a worker (and the status poll's process) may use, in MiB "
                          "(RLIMIT_AS; more: that request fails, 503 saying so); 0: no bound. Not its commands' or jobs'."),
        "max_requests_per_user": (0, _int(0), "Multi-user mode: one user's requests in a worker at once (more wait); 0: threads/16, >= 2."),
        "fork_server": (True, _bool, "Multi-user mode: fork workers from a loaded template process (shared memory); false: new ones."),
    },
    "scheduler": {
        "type": ("auto", _choice("auto", "slurm", "local"), "auto: Slurm when its commands answer, else local."),
        "timeout": (20, _int(1), "Seconds a scheduler command may take before it counts as not answering."),
        "refresh_interval": (2, _int(0), "Seconds between two status refreshes of one user's jobs while they look "
                                         "(a job page shows a start or end within about two)."),
        "background_refresh": (60, _int(0), "Seconds between background refreshes of users with unfinished jobs; 0 turns it off."),
        "unknown_grace": (600, _int(0), "Seconds a job may be missing from the scheduler before it is shown as UNKNOWN."),
        "environment": ({}, _env_table, "Extra variables for scheduler commands, e.g. SLURM_CONF."),
        "job_environment": ("login", _choice("login", "none"), "What a job's environment is: login: the user's "
                            "login shell's (sbatch runs in it, with the login umask); none: sbatch --export=NONE."),
        "shared_poll": (True, _bool, "Multi-user Slurm: one status poll for all users' jobs, as status_user; "
                        "false: each user's worker polls."),
        "status_user": ("nobody", _str, "Account of the shared status poll; must see every user's jobs "
                        "(with PrivateData=jobs: SlurmUser, root or an operator)."),
        "probe_user": ("nobody", _str, "Unprivileged user that answers /api/health's scheduler check in multi-user mode."),
    },
    "storage": {
        "state_dir": ("~/.local/share/flight-job", _str, "Where a user's scripts and jobs live, in their home."),
        "user_templates": ("~/.config/flight-job/templates", _str, "A user's own job-script templates."),
        "max_script_bytes": (1048576, _int(1024), "Largest script or notes a user may save, in bytes."),
        "max_archive_bytes": (1073741824, _int(1), "Largest results download as one .zip: the files' sizes added up, in bytes."),
    },
    "templates": {
        "site_dirs": (["/etc/flight-job/templates"], _strings, "Site template directories, searched after the shipped ones."),
        "hide": ([], _strings, "Ids of shipped or site templates not offered here (a user's own template is never hidden)."),
        "order": ([], _strings, "Ids of templates listed first, in this order; the rest follow by priority and name."),
    },
    "metrics": {
        "allow": ([], _networks, "Addresses (CIDRs) that may read GET /metrics (Prometheus); empty: off, 404 for all."),
    },
}


class Config:
    """Settings: one attribute per section, each a dict of key -> value."""

    def __init__(self, values=None, path=None):
        self.path = path
        self.values = {s: {k: spec[0] for k, spec in keys.items()}
                       for s, keys in SCHEMA.items()}
        for section, keys in (values or {}).items():
            self.values[section].update(keys)

    def __getitem__(self, section):
        return self.values[section]

    def to_dict(self):
        return json.loads(json.dumps(self.values))


class ConfigError(Exception):
    pass


def _toml():
    try:
        import tomllib
    except ImportError:  # Python < 3.11
        import tomli as tomllib
    return tomllib


def check_config(data, source="<config>"):
    """Validate parsed TOML against SCHEMA; unknown keys and bad values fail."""
    values = {}
    for section, keys in data.items():
        if section not in SCHEMA:
            raise ConfigError("%s: unknown section [%s]" % (source, section))
        if not isinstance(keys, dict):
            raise ConfigError("%s: [%s] must be a table" % (source, section))
        for key, value in keys.items():
            if key not in SCHEMA[section]:
                raise ConfigError("%s: unknown key %s.%s" % (source, section, key))
            try:
                values.setdefault(section, {})[key] = SCHEMA[section][key][1](value)
            except ValueError as e:
                raise ConfigError("%s: bad value for %s.%s: %r (%s)"
                                  % (source, section, key, value, e))
    return values


def load_config(path, overrides=None, required=False):
    """Read the TOML file at path (missing is fine unless required)."""
    data = {}
    if path and (required or os.path.exists(path)):
        try:
            with open(path, "rb") as f:
                data = _toml().load(f)
        except OSError as e:
            raise ConfigError("%s: cannot read: %s" % (path, e.strerror))
        except ValueError as e:
            raise ConfigError("%s: not valid TOML: %s" % (path, e))
    values = check_config(data, path or "<config>")
    for section, keys in check_config(overrides or {}, "command line").items():
        values.setdefault(section, {}).update(keys)
    return Config(values, path)


# Metrics ####################################################################
# What GET /metrics tells a site's Prometheus (metrics.allow), counted in
# root. Every label value is one of the fixed sets below (a route's pattern,
# never its path; never a user, a job or a file): what a client or a hostile
# worker sends may move a count, never add a series.

HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
SCHEDULER_COMMANDS = ("sbatch", "squeue", "sacct", "scancel", "scontrol", "sinfo", "sacctmgr")
FAILURE_KINDS = ("timeout", "exit", "start")  # no answer in scheduler.timeout; a non-zero exit; could not run
ERROR_CODES = ("internal", "unavailable", "busy", "scheduler")  # what a 5xx answer was (FlightJobError.code)
LOGIN_OUTCOMES = ("success", "failure", "throttled", "busy", "password_off")
WORKER_ROLES = ("user", "status")  # a user's worker; the shared status poll's
WORKER_ENDS = ("stopped", "killed", "crashed")  # asked to (idle, shutdown); by root (misbehaved, timed out); by itself
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def _one_of(value, allowed):
    return value if value in allowed else "other"


def prometheus_library():
    """prometheus_client, imported only when metrics are on (root alone
    pays for it, and only then); ConfigError when it is missing."""
    try:
        import prometheus_client
        import prometheus_client.core  # noqa: F401 (GaugeMetricFamily: Metrics.collect)
    except ImportError:
        raise ConfigError("metrics.allow is set, but the prometheus_client library is not installed "
                          "(requirements.txt)")
    prometheus_client.disable_created_metrics()  # no *_created series: a counter's start is in process_*
    return prometheus_client


class Metrics:
    """The daemon's counts for /metrics in a registry of its own, through
    prometheus_client (thread-safe); with metrics.allow empty, none: the
    library is never imported and every method does nothing."""

    def __init__(self, config):
        self.allow = [ipaddress.ip_network(n, strict=False) for n in config["metrics"]["allow"]]
        self.registry, self.poll_good = None, None  # poll_good: the shared poll's last good round (monotonic)
        if not self.allow:
            return
        pc = prometheus_library()
        self.registry = r = pc.CollectorRegistry()
        pc.ProcessCollector(registry=r)  # process_*: root's memory, CPU, descriptors, start time
        self.family = pc.core.GaugeMetricFamily

        def counter(name, text, *labels, each=()):
            made = pc.Counter(name, text, labels, registry=r)
            for values in each:  # series shown at 0 before their first count
                made.labels(*values)
            return made
        self.requests = counter("flightjobd_http_requests", "HTTP requests answered, by method, route pattern "
                                "(unmatched: no route) and status class.", "method", "route", "status")
        self.latency = pc.Histogram("flightjobd_http_request_duration_seconds", "Seconds from a request's arrival "
                                    "to its answer (a download's streaming not included), by route pattern.",
                                    ("route",), buckets=LATENCY_BUCKETS, registry=r)
        self.errors = counter("flightjobd_http_errors", "5xx answers, by route pattern and what they were: internal "
                              "(a bug, its traceback logged), unavailable (a worker ended or timed out), busy (no free "
                              "slot), scheduler (it did not answer).", "route", "code")
        self.logins = counter("flightjobd_logins", "Password checks (login form, /api/login, HTTP Basic not "
                              "remembered) and sign-ins the proxy vouched for, by outcome (password_off: a "
                              "password refused unchecked, passwords being off).", "outcome", each=[(o,) for o in LOGIN_OUTCOMES])
        self.running = pc.Gauge("flightjobd_workers_running", "Worker processes running, by role (user: one per "
                                "logged-in user; status: the shared status poll's).", ("role",), registry=r)
        self.started = counter("flightjobd_workers_started", "Worker processes started, by role.", "role",
                               each=[(w,) for w in WORKER_ROLES])
        self.ended = counter("flightjobd_workers_ended", "Worker processes ended, by role and how: stopped (idle, "
                             "shutdown), killed (by root: misbehaved or timed out), crashed (by itself).",
                             "role", "how", each=[(w, h) for w in WORKER_ROLES for h in WORKER_ENDS])
        self.failures = counter("flightjobd_scheduler_failures", "Scheduler commands that failed, by command and "
                                "kind: timeout (no answer in scheduler.timeout), exit (a non-zero exit), start "
                                "(could not run).", "command", "kind")
        self.rounds = counter("flightjobd_status_poll_rounds", "Rounds of the shared status poll (multi-user Slurm), "
                              "by outcome.", "outcome", each=[("ok",), ("failed",)])
        for role in WORKER_ROLES:
            self.running.labels(role)
        r.register(self)  # collect(): the poll's age

    def collect(self):
        """What is read when scraped: the age of the shared poll's last good
        round (none before the first)."""
        if self.poll_good is not None:
            yield self.family("flightjobd_status_poll_last_success_age_seconds", "Seconds since the shared "
                              "status poll's last good round.", value=time.monotonic() - self.poll_good)

    def request(self, method, route, status, seconds, code=None):
        """One request answered: route is its pattern (None: no route)."""
        if self.registry is not None:
            route = route or "unmatched"
            self.requests.labels(_one_of(method, HTTP_METHODS), route, "%dxx" % (status // 100)).inc()
            self.latency.labels(route).observe(seconds)
            if status >= 500:
                self.errors.labels(route, _one_of(code, ERROR_CODES)).inc()

    def login(self, outcome):
        if self.registry is not None:
            self.logins.labels(_one_of(outcome, LOGIN_OUTCOMES)).inc()

    def worker(self, role, change):
        """A worker process of role "started", or ended (one of WORKER_ENDS)."""
        if self.registry is not None:
            role = _one_of(role, WORKER_ROLES)
            if change == "started":
                self.started.labels(role).inc()
                self.running.labels(role).inc()
            else:
                self.ended.labels(role, _one_of(change, WORKER_ENDS)).inc()
                self.running.labels(role).dec()

    def scheduler_failed(self, command, kind, n=1):
        if self.registry is not None:
            self.failures.labels(_one_of(command, SCHEDULER_COMMANDS), _one_of(kind, FAILURE_KINDS)).inc(n)

    def poll_round(self, ok):
        if self.registry is not None:
            self.rounds.labels("ok" if ok else "failed").inc()
            if ok:
                self.poll_good = time.monotonic()

    def allowed(self, ip):
        """Whether the client at ip (an ip_address, None for none) may read /metrics."""
        return self.registry is not None and ip is not None and any(ip in net for net in self.allow)

    def text(self):
        """(the exposition text, its Content-Type)."""
        import prometheus_client
        return prometheus_client.generate_latest(self.registry), prometheus_client.CONTENT_TYPE_LATEST


# Paths and files ############################################################

ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


def check_id(value, what="item"):
    """The one gate for user-supplied names: ids are [A-Za-z0-9_-], no dots,
    no slashes, at most 64 characters. Anything else is 404, as a missing
    item is, so probing says nothing."""
    if not isinstance(value, str) or not ID_RE.match(value):
        raise NotFound("No such %s." % what)
    return value


def check_relpath(path):
    """Gate a path inside a results directory or the home: relative, no
    '..', no NUL. Refused paths are 404; the worker also resolves symlinks
    (resolve_inside)."""
    if (not isinstance(path, str) or not path or "\0" in path
            or path.startswith("/") or len(path) > 4096):
        raise NotFound("No such file.")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        raise NotFound("No such file.")
    return "/".join(parts)


# A name on disk is any bytes but NUL and "/". Pages print it, URLs carry it
# and JSON sends it as text: name_text writes each byte that is no UTF-8 text
# or is a control character (C0, DEL, C1) as \xHH, and a backslash as \x5c
# where what follows would read as such an escape; name_path reads that text
# back into the name. Everything else is left as it is, so ordinary names
# are their own text and no text names two files.
_ESCAPED = r"(?:0[1-9a-f]|1[0-9a-f]|5c|7f|[89a-f][0-9a-f])"  # what \xHH stands for: never NUL nor "/"
_NO_TEXT_RE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]|\\(?=x%s)" % _ESCAPED)
_ESCAPE_RE = re.compile((r"\\x(%s)" % _ESCAPED).encode())


def _escaped(match):
    try:  # a byte that was no UTF-8 (os.fsdecode made it U+DC80-U+DCFF), a control character, "\\"
        return "".join("\\x%02x" % b for b in match.group().encode("utf-8", "surrogateescape"))
    except UnicodeEncodeError:  # any other lone surrogate (from JSON, not the file system): no bytes
        return "\ufffd"


def name_text(name):
    """A name or path from the file system as text (see above)."""
    return _NO_TEXT_RE.sub(_escaped, name)


def name_path(text):
    """The name or path name_text gave as text (UnicodeError: none can be)."""
    return os.fsdecode(_ESCAPE_RE.sub(lambda m: bytes([int(m.group(1), 16)]),
                                      text.encode("utf-8", "surrogateescape")))


def resolve_inside(root, path, outside):
    """The path gate's second half, in the worker (as the user): `path` as
    name_text wrote it ("" for root itself), through check_relpath, joined
    to root with every symlink resolved. A result outside root (a symlink
    out of it, to another user's file or /etc) is Forbidden(outside); a
    name no file can have is 404. Used for results directories and for
    the home (the import picker)."""
    root = os.path.realpath(root)
    try:
        full = os.path.realpath(os.path.join(root, name_path(check_relpath(path)))) if path else root
    except UnicodeError:  # a lone surrogate: no name is that
        raise NotFound("No such file.")
    if full != root and not full.startswith(root.rstrip("/") + "/"):
        raise Forbidden(outside)
    return full


def human_size(n):
    """'12.3 MiB' for a number of bytes."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return ("%d %s" if unit == "B" else "%.1f %s") % (n, unit)
        n /= 1024.0


COUNTED_FILES = 1000000  # the most entries past those counted (more: "at least")


def _remove_tree(path):
    shutil.rmtree(path, ignore_errors=True)


def give_back_memory():
    """Hand the C heap's free pages back to the system (glibc's malloc_trim;
    nothing elsewhere): what a one-off large piece of work allocated and
    freed would otherwise stay as the process's memory for good."""
    with contextlib.suppress(Exception):
        import ctypes
        ctypes.CDLL(None).malloc_trim(0)


def first_entries(path, limit, missing):
    """([(name, path)] of the first `limit` entries of directory path, how
    many more there are, up to COUNTED_FILES): NotFound(missing) when it is
    not there, Forbidden when it may not be read, NotFound for a file."""
    try:
        with os.scandir(path) as listing:
            taken = [(entry.name, entry.path) for entry in itertools.islice(listing, limit)]
            return taken, sum(1 for _ in itertools.islice(listing, COUNTED_FILES))
    except FileNotFoundError:
        raise NotFound(missing)
    except PermissionError:
        raise Forbidden("You may not read that directory.")
    except NotADirectoryError:
        raise NotFound("Not a directory.")


def job_umask(defs="/etc/login.defs"):
    """The umask a login gives (login.defs' UMASK, as pam_umask reads it; 022): a job's and its folders'."""
    with contextlib.suppress(OSError, ValueError):
        found = re.findall(rb"(?m)^[ \t]*UMASK[ \t]+(0?[0-7]{1,3})[ \t]*$", read_file(defs, MAX_SMALL_FILE))
        return int(found[-1], 8) if found else 0o022
    return 0o022


def folder_problem(path):
    """Why a job could not use the folder path, asked as the user (the
    worker); None when it can."""
    if not os.path.isdir(path):
        return "%s %s" % (name_text(path), "is not a folder" if os.path.lexists(path) else "does not exist")
    return None if os.access(path, os.W_OK | os.X_OK) else "%s is not yours to write in" % name_text(path)


def job_label(job):
    """A job on pages: "Job 42", or one the scheduler never took by its script."""
    sid = job.get("scheduler_id")
    return "Job %s" % sid if sid else "%s (not submitted)" % (job.get("script_name") or "A job")


# A refusal's words -> the option (and so the question) it is about, for the form's way back
REFUSAL_OPTIONS = (("memory", "mem"), ("time limit", "time"), ("partition", "partition"), ("account", "account"),
                   ("node count", "nodes"), ("cpu", "cpus-per-task"), ("qos", "qos"))


def program_exit(job):
    """A job's exit code when it is its program's own (not a signal's 0, a launch failure's, an OOM's)."""
    return job.get("exit_code") if job.get("raw_state") in ("COMPLETED", "FAILED") and not job.get("signal") \
        and job.get("reason") not in ("JobLaunchFailure", "OutOfMemory") else None


def launch_problems(job, made=None):
    """[(what, path, folder, why)]: the job's folders (working directory, outputs') that would make
    (or made) it fail at launch, asked as the user; not made (a submit makes it) nor one with a %-pattern."""
    places = [("run in", job.get("results_dir"), job.get("results_dir"))] + [
        ("write its %s to" % what, job.get(key), os.path.dirname(job.get(key) or "")) for what, key in (
            ("output", "stdout_path"), ("errors", "stderr_path"))]
    seen, out = {made, "", None}, []
    for what, path, folder in places:  # an output file it may write already (/dev/null) needs no folder of its own
        writable = path != folder and os.access(path or "", os.W_OK) and not os.path.isdir(path)
        problem = folder not in seen and "%" not in folder and not writable and folder_problem(folder)
        seen.add(folder)
        if problem:
            out.append((what, path, folder, "the folder " + problem))
    return out


def make_dirs(path, mode):  # path and the folders above it that are missing, each with mode
    if not os.path.isdir(path):
        make_dirs(os.path.dirname(path), mode)
        with contextlib.suppress(FileExistsError):
            os.mkdir(path, 0o700)
            os.chmod(path, mode)  # not the worker's umask


def new_id():
    """A URL-safe id that sorts by creation time."""
    now = time.time()
    return "%s%03d-%s" % (time.strftime("%Y%m%d-%H%M%S", time.gmtime(now)),
                          int(now * 1000) % 1000, secrets.token_hex(3))


def now_iso(ts=None):
    ts = time.time() if ts is None else ts
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ")


ISO_RE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})Z")


def parse_iso(text):
    """The time now_iso wrote, as seconds; None for none; ValueError for no
    such time. Read without strptime (~10 us, a record holds several),
    which is asked only for what takes more than ISO_RE (one-digit fields,
    a lowercase t or z), so both take exactly the same texts."""
    if not text:
        return None
    m = ISO_RE.fullmatch(text)
    if m is None:
        return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(
            tzinfo=datetime.timezone.utc).timestamp()
    return datetime.datetime(*map(int, m.groups()), tzinfo=datetime.timezone.utc).timestamp()


# Test-only fault points: the named steps where a crash is tested. Unset, as
# in production, fault() does nothing. FLIGHTJOB_TEST_FAULT="STEP[@N][:MARKER]"
# in a worker's environment makes the worker stop dead from the N-th time (default
# the first) it reaches STEP: it writes "STEP PID" to the file MARKER and
# stops itself (SIGSTOP), so a test sees it frozen at exactly that step,
# kills it and checks what a crash there leaves. The worker reads it once, at
# start; its environment is built clean (Worker.start), so the variable only
# reaches it when a config names it in scheduler.environment, as the tests do.
FAULT_ENV = "FLIGHTJOB_TEST_FAULT"
FAULT_POINTS = {
    "write.before_write": "atomic_write: the temp file made, nothing written to it",
    "write.after_write": "atomic_write: the data written, not fsynced",
    "write.after_fsync": "atomic_write: fsynced, not yet renamed over the file",
    "write.after_replace": "atomic_write: renamed into place, the directory not fsynced",
    "create.before_rename": "a new item's files written in .new-ID, not renamed into place",
    "create.after_rename": "a new item renamed into place, its parent not fsynced",
    "remove.after_rename": "an item renamed to .gone-*, not yet deleted",
    "submit.after_record": "a job's record written (being submitted), the scheduler not asked",
    "submit.before_answer": "the scheduler has the job, its answer (the id) not recorded",
    "submit.after_answer": "the scheduler's answer recorded, the reply not yet sent",
}
_fault_armed = []  # [step, marker, the times to pass it first] in a worker whose environment named one


def arm_fault(value):
    """Arm the fault point FLIGHTJOB_TEST_FAULT names (tests only). A name
    that is no fault point ends the worker at once: a typo must not let a
    crash test pass without its crash."""
    if not value:
        return
    where, _, marker = value.partition(":")
    step, nth = re.fullmatch(r"([^@]*)(?:@([1-9][0-9]{0,5}))?|(.*)", where).group(1, 2)
    if step not in FAULT_POINTS:
        raise SystemExit("flightjobd worker: %s=%r names no fault point (%s, @N after one: its N-th time)"
                         % (FAULT_ENV, value, ", ".join(FAULT_POINTS)))
    log.warning("TEST ONLY: %s is set: this worker stops dead at %s", FAULT_ENV, where)
    _fault_armed[:] = [step, marker, iter(range(int(nth or 1) - 1))]


def fault(step):
    """A named step of FAULT_POINTS: stop dead here if a test armed it (from its N-th time)."""
    if _fault_armed and _fault_armed[0] == step and next(_fault_armed[2], None) is None:
        if _fault_armed[1]:
            with open(_fault_armed[1], "w") as f:
                f.write("%s %d\n" % (step, os.getpid()))
        os.kill(os.getpid(), signal.SIGSTOP)


def atomic_write(path, data, mode=0o600):
    """Write bytes or text to path atomically: temp file in the same
    directory, fsync, os.replace, fsync the directory."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    directory = os.path.dirname(path)
    tmp = os.path.join(directory, ".%s.%s.tmp" % (os.path.basename(path),
                                                  secrets.token_hex(4)))
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            fault("write.before_write")
            f.write(data)
            f.flush()
            fault("write.after_write")
            os.fsync(f.fileno())
        fault("write.after_fsync")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fault("write.after_replace")
    fsync_dir(directory)


def fsync_dir(directory):
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json(path, data):
    atomic_write(path, json.dumps(data, indent=1, sort_keys=True) + "\n")


# The most read of a metadata or template file: far above any real one (a
# job record with 10,000 array tasks is about 2 MB), the size of the largest
# answer a worker may send (worker.max_message's default).
MAX_SMALL_FILE = 8 << 20


class UnusableFile(ValueError):
    """A file that is no regular file, or larger than the bound read."""

    def __init__(self, message, too_large=False):
        super().__init__(message)
        self.too_large = too_large


OPENAT2 = 437  # the syscall's number on every architecture; None: the walk (tests)


def open_beneath(root, full, flags=os.O_RDONLY | os.O_NONBLOCK):
    """A descriptor of `full` (resolve_inside's, under root) opened from root's following no link: openat2
    RESOLVE_BENEATH|NO_SYMLINKS|NO_MAGICLINKS (Linux 5.6), else a part at a time with O_NOFOLLOW; a part
    swapped for a link since it was resolved is an OSError (ELOOP, ENOTDIR); what was opened is checked."""
    import ctypes
    rel, top, fd = os.path.relpath(full, root), os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC), -1
    try:
        how = struct.pack("QQQ", flags | os.O_CLOEXEC | os.O_NOCTTY, 0, 0x08 | 0x04 | 0x02)
        fd = ctypes.CDLL(None, use_errno=True).syscall(OPENAT2, top, os.fsencode(rel), how, len(how)) if OPENAT2 else -1
        if fd < 0 and OPENAT2 and ctypes.get_errno() not in (errno.ENOSYS, errno.EPERM):  # EPERM: seccomp
            raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()), full)
        parts = rel.split("/") if fd < 0 else []
        for n, part in enumerate(parts):
            at, fd = fd, os.open(part, (flags if n == len(parts) - 1 else os.O_PATH | os.O_DIRECTORY)
                                 | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=top if fd < 0 else fd)
            if at >= 0:
                os.close(at)
        where = os.readlink("/proc/self/fd/%d" % fd)
        if where != root and not where.startswith(root.rstrip("/") + "/"):
            raise OSError(errno.EXDEV, "not under %s" % root, full)
        return fd
    except BaseException:
        if fd >= 0:
            os.close(fd)
        raise
    finally:
        os.close(top)


def read_file(path, limit, fd=None):
    """The bytes of the regular file at path (or of descriptor fd), never
    more than limit: opened without blocking and refused (UnusableFile) when
    it is no regular file (a FIFO would hold the reader until a writer
    comes, a device never ends) or is larger than limit bytes (a sparse file
    may be any size). OSError when it cannot be opened (missing, forbidden,
    a socket)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK) if fd is None else fd
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if st.st_mode & 0o170000 != 0o100000:
            raise UnusableFile("%s is not a regular file" % os.path.basename(path))
        size = min(st.st_size, limit)
        data = f.read(size + 1)  # not read(limit + 1): a buffer of `limit` bytes for each small file
        if len(data) > size:  # it has grown
            data += f.read(limit + 1 - len(data))
    if len(data) > limit:
        raise UnusableFile("%s is larger than %d bytes" % (os.path.basename(path), limit), too_large=True)
    return data


def read_json(path, limit=MAX_SMALL_FILE):
    """The JSON in the file at path (read_file: bounded, never blocking)."""
    return parse_json(read_file(path, limit).decode("utf-8"))


def parse_json(text):
    """json.loads, whose every failure is a ValueError: JSON nested past the
    recursion limit (RecursionError) in a file a user controls makes a
    broken item like any other bad JSON, never a 500."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("the JSON is nested too deeply")


@contextlib.contextmanager
def locked(path):
    """Hold an exclusive flock on path (created if missing) for the block."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def disk_error(e, writing=True):
    """Turn a failed write (writing=True) or read in the user's home into a
    clear error for the user: a full disk or quota (a write), a path that
    cannot be used (403: a retry will not help), else 503 saying whether it
    could not write or could not read. Only a write says nothing changed."""
    unchanged = " Nothing was changed." if writing else ""
    if writing and e.errno in (errno.ENOSPC, errno.EDQUOT):
        return Unavailable("Your home directory is full (or over quota): "
                           "nothing was changed. Free some space and try again.")
    if e.errno in (errno.EACCES, errno.EPERM, errno.EEXIST, errno.ENOTDIR, errno.ELOOP):
        # a retry will not help: not yours, or not a directory (a symlink elsewhere)
        return Forbidden("%s cannot be used: %s.%s"
                         % (e.filename or "A file in your home", e.strerror or e, unchanged))
    return Unavailable("Could not %s your home directory: %s.%s"
                       % ("write to" if writing else "read from", e.strerror or e, unchanged))


# Templates and questions ####################################################

TIME_RE = re.compile(r"^(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?$")
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
QUESTION_ID_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
TEMPLATE_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
# What a template may say it needs (template.toml's needs): name -> (the
# thing in words, the partition summary's count of it). It is offered only
# where a partition the user may use has some.
NEEDS = {"gpu": ("GPUs", "gpus_total")}
TIME_HELP = "use D-HH:MM:SS, HH:MM:SS or minutes"


def time_limit_seconds(text):
    """Seconds in a Slurm time limit, None for UNLIMITED; ValueError if bad.
    Forms: M, M:S, H:M:S, D-H, D-H:M, D-H:M:S."""
    text = text.strip()
    if text.upper() in ("UNLIMITED", "INFINITE"):
        return None
    m = TIME_RE.match(text)
    if not m:
        raise ValueError(TIME_HELP)
    days, a, b, c = m.groups()
    if days is None and c is None:  # M or M:S, the minutes unbounded
        hours, minutes, seconds = 0, int(a), int(b or 0)
        bad = seconds > 59
    else:  # H:M:S, the hours unbounded; D-H[:M[:S]]
        hours, minutes, seconds = int(a), int(b or 0), int(c or 0)
        bad = minutes > 59 or seconds > 59 or (days is not None and hours > 23)
    if bad:
        raise ValueError(TIME_HELP)
    return int(days or 0) * 86400 + hours * 3600 + minutes * 60 + seconds


def sbatch_quote(value):
    """Quote a value for an #SBATCH line the way sbatch reads it: inside
    double quotes, backslash escapes the next character."""
    value = str(value)
    return '"%s"' % value.replace("\\", "\\\\").replace('"', '\\"')


def _option_values(question):
    return [o["value"] for o in question.get("options", [])]


def convert_answer(question, raw, home):
    """Typed value of one answer, or ValueError with the reason in words.
    `raw` is what a form or JSON gave; None or "" means no answer."""
    kind = question["type"]
    empty = raw is None or raw == "" or raw == []
    if empty:
        if question.get("required"):
            raise ValueError("an answer is required")
        return {"integer": None, "number": None, "boolean": False,
                "multiselect": []}.get(kind, "")
    if kind == "boolean":
        if isinstance(raw, bool):
            return raw
        word = str(raw).strip().lower()
        if word in ("true", "on", "yes", "1"):
            return True
        if word in ("false", "off", "no", "0"):
            return False
        raise ValueError("answer yes or no")
    if kind == "multiselect":
        values = raw if isinstance(raw, list) else [raw]
        if not all(isinstance(v, str) for v in values):
            raise ValueError("choose from the list")
        allowed = _option_values(question)
        bad = [v for v in values if v not in allowed]
        if bad:
            raise ValueError("%r is not one of the choices" % bad[0])
        return [v for v in allowed if v in values]  # in the options' order
    if kind in ("integer", "number"):
        if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
            raise ValueError("enter a number")
        try:
            if kind == "integer":
                value = int(raw) if not isinstance(raw, float) else None
                if value is None or (isinstance(raw, str) and not re.match(r"^\s*[-+]?\d{1,18}\s*$", raw)):
                    raise ValueError
            else:
                value = float(raw)
                if value != value or value in (float("inf"), float("-inf")):
                    raise ValueError
        except (ValueError, OverflowError):
            raise ValueError("enter a whole number" if kind == "integer" else "enter a number")
        if "min" in question and value < question["min"]:
            raise ValueError("must be at least %s" % question["min"])
        if "max" in question and value > question["max"]:
            raise ValueError("must be at most %s" % question["max"])
        return value
    if not isinstance(raw, str):
        raise ValueError("enter text")
    if kind == "multiline":
        if len(raw) > 65536 or re.search(r"[\x00-\x08\x0b-\x1f\x7f]", raw.replace("\r\n", "\n")):
            raise ValueError("too long, or holds control characters")
        return raw.replace("\r\n", "\n")
    value = raw.strip()
    if len(value) > 1024 or CONTROL_RE.search(value):
        raise ValueError("must be one line of at most 1024 characters")
    if kind == "select":
        allowed = _option_values(question)
        if question.get("options_from"):
            if allowed and value not in allowed:
                names = [v for v in allowed if v]
                raise ValueError("%r is not one of the choices (%s)" % (value, ", ".join(names[:20]) + (
                    ", ..." if len(names) > 20 else "") if names else "none"))
            if not re.match(r"^[A-Za-z0-9_.,-]+$", value):
                raise ValueError("not a valid name")
        elif value not in allowed:
            raise ValueError("%r is not one of the choices" % value)
    elif kind == "time":
        time_limit_seconds(value)
    elif kind == "email" and not EMAIL_RE.match(value):
        raise ValueError("enter an email address such as name@example.org")
    elif kind == "path":
        if value == "~" or value.startswith("~/"):
            value = home + value[1:]
        elif not value.startswith("/"):
            value = os.path.join(home, value)
        value = os.path.normpath(value)
    if question.get("pattern") and not re.search(question["pattern"], value):
        raise ValueError(question.get("pattern_error") or "does not have the expected form")
    return value


def question_applies(question, values):
    """Whether a question is asked, given the answers before it (ask_when)."""
    cond = question.get("ask_when")
    if not cond:
        return True
    other = values.get(cond["question"])
    if "equals" in cond:
        return other == cond["equals"]
    choices = cond["one_of"]
    return any(v in choices for v in other) if isinstance(other, list) else other in choices


def check_answers(questions, answers, home):
    """Typed values for every question (defaults for those not asked), or
    Invalid with one message per failing question id."""
    if not isinstance(answers, dict):
        raise Invalid("Answers must be an object of question id to answer.")
    unknown = [k for k in answers if k not in {q["id"] for q in questions}]
    if unknown:
        raise Invalid("Unknown question %r." % unknown[0],
                      {unknown[0]: "not a question of this template"})
    values, errors = {}, {}
    for q in questions:
        asked = question_applies(q, values)
        raw = answers.get(q["id"], q["default"]) if asked else q["default"]
        try:
            values[q["id"]] = convert_answer(q, raw, home)
        except ValueError as e:
            if asked:
                errors[q["id"]] = "%s: %s" % (q["text"], e)
            values[q["id"]] = convert_answer(dict(q, required=False), None, home)
    if errors:
        raise Invalid(" ".join(errors.values()), errors)
    return values


class TemplateProblem(Exception):
    pass


def _check_question(q, seen, where):
    if not isinstance(q, dict):
        raise TemplateProblem("%s: each question must be a table" % where)
    qid = q.get("id")
    if not isinstance(qid, str) or not QUESTION_ID_RE.match(qid):
        raise TemplateProblem("%s: question id %r must be lowercase letters, digits, _" % (where, qid))
    where = "%s question %r" % (where, qid)
    if qid in seen:
        raise TemplateProblem("%s: the id is used twice" % where)
    extra = set(q) - QUESTION_KEYS
    if extra:
        raise TemplateProblem("%s: unknown field %s" % (where, sorted(extra)[0]))
    if q.get("type") not in QUESTION_TYPES:
        raise TemplateProblem("%s: unknown type %r" % (where, q.get("type")))
    for key in ("text", "description"):
        if not isinstance(q.get(key), str) or not q[key].strip():
            raise TemplateProblem("%s: %s is missing" % (where, key))
    if "default" not in q:
        raise TemplateProblem("%s: default is missing" % where)
    q = dict(q)
    if q["type"] in ("select", "multiselect"):
        opts = q.get("options", [])
        if not isinstance(opts, list) or (not opts and not q.get("options_from")):
            raise TemplateProblem("%s: options must be a non-empty list" % where)
        norm = []
        for o in opts:
            if isinstance(o, str):
                o = {"value": o, "label": o}
            if not isinstance(o, dict) or not isinstance(o.get("value"), str):
                raise TemplateProblem("%s: an option must be a string or {value, label}" % where)
            norm.append({"value": o["value"], "label": str(o.get("label", o["value"]))})
        q["options"] = norm
    if q.get("options_from") not in (None, "partitions", "accounts"):
        raise TemplateProblem("%s: options_from must be partitions or accounts" % where)
    if "pattern" in q:
        try:
            re.compile(q["pattern"])
        except (re.error, TypeError) as e:
            raise TemplateProblem("%s: bad pattern: %s" % (where, e))
    cond = q.get("ask_when")
    if cond is not None:
        if (not isinstance(cond, dict) or cond.get("question") not in seen
                or not (set(cond) == {"question", "equals"}
                        or (set(cond) == {"question", "one_of"} and isinstance(cond["one_of"], list)))):
            raise TemplateProblem("%s: ask_when must name an earlier question, with equals or one_of" % where)
    q["required"] = bool(q.get("required", False))
    try:
        convert_answer(dict(q, required=False, options_from=None), q["default"], "/home/x")
    except ValueError as e:
        raise TemplateProblem("%s: the default is not a valid answer: %s" % (where, e))
    seen.add(qid)
    return q


def load_template(directory, source):
    """Read and check one template directory; TemplateProblem if broken."""
    tid = os.path.basename(directory)
    if not TEMPLATE_ID_RE.match(tid):
        raise TemplateProblem("the directory name is not a valid template id")
    try:
        data = _toml().loads(read_file(os.path.join(directory, "template.toml"), MAX_SMALL_FILE).decode("utf-8"))
    except OSError as e:
        raise TemplateProblem("cannot read template.toml: %s" % e.strerror)
    except UnusableFile as e:  # a FIFO, a device, a sparse file of any size
        raise TemplateProblem(str(e))
    except (ValueError, RecursionError) as e:
        raise TemplateProblem("template.toml is not valid TOML: %s" % (e if isinstance(e, ValueError) else "nested too deeply"))
    extra = set(data) - TEMPLATE_KEYS
    if extra:
        raise TemplateProblem("template.toml: unknown field %s" % sorted(extra)[0])
    for key in ("name", "synopsis", "description"):
        if not isinstance(data.get(key), str) or not data[key].strip():
            raise TemplateProblem("template.toml: %s is missing" % key)
    needs = data.get("needs", [])
    if not isinstance(needs, list) or not all(n in NEEDS for n in needs):
        raise TemplateProblem("template.toml: needs must be a list of %s" % ", ".join(map(repr, NEEDS)))
    seen = set()
    questions = [_check_question(q, seen, "template.toml") for q in data.get("question", [])]
    submission = [_check_question(q, seen, "template.toml") for q in data.get("submission_question", [])]
    script_name = data.get("script", "script.sh")
    if not isinstance(script_name, str) or "/" in script_name or script_name.startswith("."):
        raise TemplateProblem("template.toml: script must be a file name")
    texts = {}
    for name in (script_name, "notes.md"):
        try:
            texts[name] = read_file(os.path.join(directory, name), MAX_SMALL_FILE).decode("utf-8")
        except FileNotFoundError:
            if name == script_name:
                raise TemplateProblem("cannot read %s: it is missing" % name)
            texts[name] = ""
        except UnusableFile as e:
            raise TemplateProblem(str(e))
        except (OSError, UnicodeDecodeError) as e:
            raise TemplateProblem("cannot read %s: %s" % (name, e))
    source_text, notes = texts[script_name], texts["notes.md"]
    template = {
        "id": tid, "name": data["name"], "synopsis": data["synopsis"],
        "description": data["description"], "source": source,
        "priority": data.get("priority", 100) if isinstance(data.get("priority", 100), int) else 100,
        "tags": [t for t in data.get("tags", []) if isinstance(t, str)], "needs": list(dict.fromkeys(needs)),
        "questions": questions, "submission_questions": submission,
        "script_source": source_text, "notes": notes,
    }
    try:  # a template must render with every default
        render_script(template, check_answers(questions, {}, "/home/user"))
    except (Invalid, TemplateProblem) as e:
        raise TemplateProblem("does not render with the defaults: %s" % e)
    return template


def render_script(template, values):
    """The script text for checked answers; TemplateProblem if it fails.
    Escaping is off: templates quote shell words with q() and directive
    values with sq()."""
    variables = dict(values, answers=values, q=shlex.quote, sq=sbatch_quote)
    try:
        return bottle.SimpleTemplate(template["script_source"],
                                     noescape=True).render(**variables)
    except Exception as e:  # a template is user code: report, never crash
        raise TemplateProblem("it needs more memory than your worker may use (worker.max_memory_mb)" if isinstance(
            e, MemoryError) else "%s: %s" % (type(e).__name__, e))


JOB_NAME_QUESTION = "job_name"  # a template's question of this id is the job's --job-name


def job_name_of(script_name):
    """A script's name made safe for --job-name: runs of anything but
    letters, digits, dot, dash and underscore become one dash (at most 64
    characters); "" when nothing is left."""
    return re.sub(r"[^A-Za-z0-9_.\-]+", "-", script_name).strip("-.")[:64].strip("-.")


def question_steps(questions, size=4):
    """The questions cut into steps of about `size` for a form asked step by
    step (app.js): a question asked only when another is answered
    (ask_when) stays in the step of the one it depends on."""
    groups, home = [], {}
    for q in questions:
        parent = (q.get("ask_when") or {}).get("question")
        if parent in home:
            home[parent].append(q)
            home[q["id"]] = home[parent]
        else:
            groups.append([q])
            home[q["id"]] = groups[-1]
    steps = []
    for group in groups:
        if not steps or len(steps[-1]) + len(group) > size:
            steps.append([])
        steps[-1].extend(group)
    return steps


def template_summary(t):
    return {k: t[k] for k in ("id", "name", "synopsis", "description",
                              "priority", "tags", "source", "needs")}


def missing_needs(template, partitions):
    """Why a template cannot run here, in words ("needs GPUs: this cluster
    has none"), or None: partitions (the partition summary's entries the
    user may use) lack what its needs name. None when they are not known."""
    if partitions is None:
        return None
    lacking = [NEEDS[n][0] for n in template.get("needs", ()) if not any(p.get(NEEDS[n][1]) for p in partitions)]
    return "needs %s: this cluster has none" % " and ".join(lacking) if lacking else None


# #SBATCH options ############################################################

# Every option of sbatch 22.05 (its slurm_opt.c), as the real sbatch takes
# each (tests/test_extra_options.py asks it): the name, /X its short
# letter, then "=" when it takes a value, "?" when it may (after "=" only),
# nothing for a flag. ALIASES: two names of one option.
SBATCH_OPTIONS = {m.group(1): (m.group(2), m.group(3)) for m in (re.match(r"([a-z-]+)(?:/(\w))?([=?]?)$", w) for w in (
    "account/A= acctg-freq= array/a= batch= bb= bbf= begin/b= chdir/D= cluster-constraint= cluster= clusters/M= "
    "comment= constraint/C= container= context= contiguous core-spec/S= cores-per-socket= cpu-freq= cpus-per-gpu= "
    "cpus-per-task/c= deadline= delay-boot= dependency/d= distribution/m= error/e= exclude/x= exclusive? export= "
    "export-file= extra-node-info/B= get-user-env? gid= gpu-bind= gpu-freq= gpus/G= gpus-per-node= gpus-per-socket= "
    "gpus-per-task= gres= gres-flags= help/h hint= hold/H ignore-pbs input/i= job-name/J= kill-on-invalid-dep= "
    "licenses/L= mail-type= mail-user= mcs-label= mem= mem-bind= mem-per-cpu= mem-per-gpu= mincpus= network= nice? "
    "no-kill/k? no-requeue nodefile/F= nodelist/w= nodes/N= ntasks/n= ntasks-per-core= ntasks-per-gpu= "
    "ntasks-per-node= ntasks-per-socket= ntasks-per-tres= open-mode= output/o= overcommit/O oversubscribe/s parsable "
    "partition/p= power= prefer= priority= profile= propagate? qos/q= quiet/Q reboot requeue reservation= signal= "
    "sockets-per-node= spread-job switches= tasks-per-node= test-only thread-spec= threads-per-core= time/t= "
    "time-min= tmp= uid= usage use-min-nodes verbose/v version/V wait/W wait-all-nodes= wckey= wrap=").split())}
ALIASES = {"cluster": "clusters", "tasks-per-node": "ntasks-per-node"}
SHORT_OPTIONS = {"-" + short: name for name, (short, _) in SBATCH_OPTIONS.items() if short}
# the options that never take the next word as their value: flags, and those whose value may follow "="
FLAG_OPTIONS = frozenset(name for name, (_, kind) in SBATCH_OPTIONS.items() if kind != "=")
C_SPACE = " \t\n\v\f\r"  # C's isspace()


def split_directive(text):
    """An #SBATCH line's words as sbatch splits them (get_argument in
    src/sbatch/opt.c, Slurm 22.05): ' and " group, a backslash takes the next
    character as it is (Slurm 23.11 and later also keep an escaped space,
    which 22.05 drops, ending the word), an unquoted # ends the line, and so
    does a word with nothing in it ('' alone)."""
    words, i = [], 0
    while True:
        while i < len(text) and text[i] in C_SPACE:
            i += 1
        word, quote, escaped = [], None, False
        while i < len(text) and (quote or text[i] not in C_SPACE):
            ch = text[i]
            if escaped:
                escaped = False
            elif ch == "\\" or ch == quote or not quote and ch in "\"'":
                escaped, quote, i = ch == "\\", quote if ch == "\\" else None if ch == quote else ch, i + 1
                continue
            elif not quote and ch == "#":
                break
            word.append(ch)
            i += 1
        if not word:
            return words
        words.append("".join(word))


def parse_options(args):
    """[(name, value)] from sbatch-style arguments, read as getopt_long reads
    them: --name=value, --name value, -Xvalue, -X value; a flag's value is True;
    a long name by the option it abbreviates (--jo is --job-name; one sbatch
    would not take is kept as written)."""
    out, i = [], 0
    while i < len(args):
        arg = args[i]
        name, eq, value = arg[2:].partition("=") if arg.startswith("--") else (SHORT_OPTIONS.get(arg[:2]), "", arg[2:])
        if arg.startswith("--"):
            with contextlib.suppress(ValueError):
                name = sbatch_option(name)
        if name and (eq or value or name in FLAG_OPTIONS):
            out.append((name, value if eq or value else True))
        elif name and i + 1 < len(args):
            out.append((name, args[i + 1]))
            i += 1
        i += 1
    return out


# Extra options, given at a submit beside the questions' (check_extra_options):
# those of sbatch's a user may add (they ask for resources, place or time the
# job, or label it, and Slurm checks each as it would from the command line)
EXTRA_ALLOWED = frozenset((
    "account acctg-freq array begin cluster-constraint comment constraint contiguous core-spec cores-per-socket "
    "cpu-freq cpus-per-gpu cpus-per-task deadline delay-boot dependency distribution exclude exclusive "
    "extra-node-info gpu-bind gpu-freq gpus gpus-per-node gpus-per-socket gpus-per-task gres gres-flags hint hold "
    "ignore-pbs job-name kill-on-invalid-dep licenses mail-type mail-user mcs-label mem mem-bind mem-per-cpu "
    "mem-per-gpu mincpus network nice no-kill no-requeue nodelist nodes ntasks ntasks-per-core ntasks-per-gpu "
    "ntasks-per-node ntasks-per-socket ntasks-per-tres open-mode overcommit oversubscribe partition power prefer "
    "priority profile propagate qos reboot requeue reservation signal sockets-per-node spread-job switches "
    "thread-spec threads-per-core time time-min tmp use-min-nodes wait-all-nodes wckey").split())
# ... and why each other is refused
_OUTPUTS = "where the job runs and its output goes is the script's and its job folder's (this page shows them)"
EXTRA_REFUSED = dict({
    "wrap": "it runs a command line of its own instead of the script",
    "container": "it runs the job in a container (an OCI bundle) instead of as the script",
    "get-user-env": "it runs a login shell on the node to make the job's environment",
    "export": "it changes the job's environment (the service's setting scheduler.job_environment decides it)",
    "export-file": "it reads the job's environment from a file",
    "nodefile": "it reads the nodes from a file: use --nodelist",
    "bb": "burst buffer requests stage files in and out (a site sets them in the script)",
    "bbf": "it reads a burst buffer file",
    "batch": "it constrains the batch step alone: use --constraint",
    "uid": "it submits as another user", "gid": "it submits as another group",
    "context": "it sets an SELinux context",
    "clusters": "the job goes to this service's cluster: a job is known by its cluster and id",
    "parsable": "flightjobd already gives it (it reads sbatch's answer)",
    "quiet": "it changes what sbatch says, which flightjobd reads", "verbose": "it changes what sbatch says, "
    "which flightjobd reads", "wait": "sbatch would not answer until the job ends",
    "test-only": "it submits no job", "help": "it submits no job", "usage": "it submits no job",
    "version": "it submits no job"}, **{name: _OUTPUTS for name in ("chdir", "output", "error", "input")})
EXTRA_FILES = ("nodelist", "exclude")  # a value with a "/" is a file of node names to sbatch: refused
EXTRA_MOST = (50, 8000)  # the most lines and characters of extra options


def sbatch_option(name):
    """The sbatch option a long option's name (after "--") is, as sbatch's
    getopt_long reads it: itself, or the one option it is the start of
    (two names of one option are one); ValueError saying why not."""
    if name in SBATCH_OPTIONS:
        return ALIASES.get(name, name)
    found = sorted({ALIASES.get(n, n) for n in SBATCH_OPTIONS if name and n.startswith(name)})
    if len(found) == 1:
        return found[0]
    if found:
        raise ValueError("--%s could be any of %s: write the option's whole name" % (
            name, ", ".join("--" + n for n in found[:8]) + (" ..." if len(found) > 8 else "")))
    raise ValueError("--%s is not an option of sbatch" % name if name else "an option's name is missing after --")


def _extra_option(words, asked):
    """One line's words -> the one option they are, "--name[=value]" with
    its whole name; ValueError saying what is wrong with it. asked: option
    name -> what sets it here (a question, "Start after")."""
    first, value = words[0], None
    if first.startswith("--"):
        given, eq, value = first[2:].partition("=")
        name = sbatch_option(given)
        value = value if eq else None
    elif first.startswith("-") and first[1:2].isalpha():
        name = ALIASES.get(SHORT_OPTIONS.get(first[:2]), SHORT_OPTIONS.get(first[:2]))
        if not name:
            raise ValueError("%s is not an option of sbatch" % first[:2])
        given, value = first[:2], first[2:] or None
    else:
        raise ValueError("%s is not an option: an option starts with - or --" % first)
    if name in EXTRA_REFUSED or name not in EXTRA_ALLOWED:
        raise ValueError("--%s is not allowed here: %s" % (name, EXTRA_REFUSED.get(name, "not one flightjobd passes on")))
    if name in asked:
        raise ValueError("--%s is set by %s: answer it there" % (name, asked[name]))
    kind, rest = SBATCH_OPTIONS[name][1], words[1:]
    if kind == "=" and value is None:
        if not rest:
            raise ValueError("--%s needs a value (--%s=VALUE)" % (name, name))
        value, rest = rest[0], rest[1:]
    if kind == "" and value is not None:
        raise ValueError("--%s takes no value" % name)
    if rest:
        raise ValueError("one option a line: %s is more than --%s" % (rest[0], name))
    if name in EXTRA_FILES and "/" in value:
        raise ValueError("--%s with a / reads a file of node names: write the names" % name)
    if re.search(r"[\x00-\x1f\x7f]", value or ""):
        raise ValueError("--%s has a control character in its value" % name)
    return "--%s" % name if value is None else "--%s=%s" % (name, value)


def check_extra_options(text, asked):
    """Extra sbatch options as typed, one a line (a list: its items are the
    lines), each line's words split as an #SBATCH line's (split_directive;
    a blank line or a comment says nothing) -> the options for sbatch's
    argv, each "--name[=value]" with its whole name. Refused, naming each
    line and its problem (Invalid on field extra_options): a word that is
    not one option of sbatch (see _extra_option; an abbreviation sbatch
    would take is taken), an option not in EXTRA_ALLOWED (EXTRA_REFUSED
    says why), one that asked (option name -> what) says what sets it, one
    given twice, more than EXTRA_MOST."""
    if isinstance(text, list) and all(isinstance(line, str) for line in text):
        text = "\n".join(text)
    if text is None:
        return []
    if not isinstance(text, str):
        raise Invalid("Extra options: give text, one option a line.", {"extra_options": "give text, one option a line"})
    lines, out, problems, seen = text.split("\n"), [], [], {}
    if len(lines) > EXTRA_MOST[0] or len(text) > EXTRA_MOST[1]:
        message = "at most %d lines and %d characters" % EXTRA_MOST
        raise Invalid("Extra options: " + message + ".", {"extra_options": message})
    for n, line in enumerate(lines, 1):
        words = split_directive(line)
        if not words:
            continue
        try:
            option = _extra_option(words, asked)
            name = option[2:].partition("=")[0]
            if name in seen:
                raise ValueError("--%s is given on line %d already" % (name, seen[name]))
            seen[name] = n
            out.append(option)
        except ValueError as e:
            problems.append("line %d (%s): %s." % (n, line.strip(C_SPACE)[:80], e))
    if problems:
        message = " ".join(p[0].upper() + p[1:] for p in problems)
        raise Invalid("Extra options: " + message, {"extra_options": message})
    return out


def extra_options_text(options):
    """Extra options as lines a user types (check_extra_options reads them back as they are)."""
    def word(w):
        return w if w and not re.search(r"[\s\"'\\#]", w) else '"%s"' % re.sub(r'(["\\])', r"\\\1", w)
    return "\n".join(word(o) for o in options or ())


def parse_directives(script):
    """The #SBATCH (or #SLURM) options of a script, read as sbatch reads them:
    lines that start with the word, from the top until the first line that is
    not blank or a comment, or a hetjob separator (the first component's)."""
    args = []
    for line in script.split("\n"):
        magic = next((w for w in ("#SBATCH", "#SLURM") if line.startswith(w)), None)
        if magic:
            words = split_directive(line[len(magic):])
            if words[:1] and words[0].lower() in ("hetjob", "packjob"):
                break
            args.extend(words)
        elif line.strip(C_SPACE)[:1] not in ("", "#"):
            break
    return parse_options(args)


def directive_defaults(questions, script, home):
    """The questions with the script's #SBATCH values as their defaults
    (an imported script's), where a question sets that option and the
    value is a valid answer to it; one that is not keeps the question's
    default, and the directive itself still applies when the job runs."""
    found = dict(parse_directives(script))
    out = []
    for q in questions:
        value = found.get(q.get("option"))
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                q = dict(q, default=convert_answer(dict(q, required=False), value, home), from_script=True)
        out.append(q)
    return out


def submission_options(questions, values):
    """sbatch command-line options from checked submission answers."""
    options = []
    for q in questions:
        value, name = values.get(q["id"]), q.get("option")
        if not name or value in (None, "", [], False):
            continue
        if value is True:
            options.append("--%s" % name)
        else:
            value = ",".join(value) if isinstance(value, list) else value
            options.append("--%s=%s" % (name, value))
    return options


def effective_options(script, options):
    """name -> value of the script's directives overridden by options."""
    merged = dict(parse_directives(script))
    merged.update(parse_options(options))
    return merged


def expand_pattern(pattern, job_id, name, user, task=None):
    """A Slurm output file name pattern with %j %x %u %A %a %N %n %s %t %%
    filled in as Slurm does for a batch script (its step "batch", node and
    task 0; %a of a job that is no array: 4294967294; %N: this node's name,
    a guess where the job ran elsewhere; %5j: numbers zero-padded, to at
    most 10 digits, as Slurm 22.05 names the file)."""
    table = {"j": str(job_id) if task is None else "%s_%s" % (job_id, task),
             "J": str(job_id), "x": name, "u": user, "A": str(job_id),
             "a": "4294967294" if task is None else str(task),
             "N": os.uname().nodename.split(".")[0], "n": "0", "s": "batch", "t": "0", "%": "%"}
    return re.sub(r"%(\d*)([jJxuAaNnst%])", lambda m: table[m.group(2)].zfill(  # Slurm pads numbers, to 10 at most
        min(10, int(m.group(1).lstrip("0")[:3] or 0)) if table[m.group(2)].isdigit() else 0), pattern)


def array_tasks(spec, most=100000):
    """Task ids of a Slurm array spec such as 1-10, 1,3,5, 0-15:4 or 1-100%10
    (ValueError past `most` apart); most=None: its ranges, not expanded."""
    ranges = []
    for part in str(spec).split("%")[0].split(","):
        m = re.match(r"^(\d{1,10})(?:-(\d{1,10})(?::(\d{1,10}))?)?$", part.strip())
        lo, hi, step = (int(m.group(1)), int(m.group(2) or m.group(1)), int(m.group(3) or 1)) if m else (1, 0, 0)
        if hi < lo or step < 1 or most is not None and hi - lo > most:
            raise ValueError("bad array range %r" % part)
        ranges.append(range(lo, hi + 1, step))
    return ranges if most is None else sorted(set(itertools.chain(*ranges)))


def job_outputs(script, options, job_id, user, home, tasks=None):
    """Where a job's output goes: its directory and stdout/stderr paths
    (for an array, the first task's), from directives and options."""
    opts = effective_options(script, options)
    workdir = opts.get("chdir") or home
    workdir = workdir if workdir.startswith("/") else os.path.join(home, workdir)
    name = opts.get("job-name") if isinstance(opts.get("job-name"), str) else "script.sh"
    first = tasks[0] if tasks else None
    out_pattern = opts.get("output") or ("slurm-%A_%a.out" if tasks else "slurm-%j.out")
    err_pattern = opts.get("error") or out_pattern

    def where(pattern):
        path = expand_pattern(pattern, job_id, name, user, first)
        return os.path.normpath(os.path.join(workdir, path))
    return {"results_dir": os.path.normpath(workdir), "stdout_path": where(out_pattern),
            "stderr_path": where(err_pattern), "job_name": name}


# Slurm output -> status #####################################################

_EMPTY = ("", "N/A", "Unknown", "None", "(null)", "n/a")

# The clock, replaceable in tests (decides whether a start time is "future").
_now = time.time
STATUS_TEXT = 1000  # the longest text of a status (longer: cut, its end "…")
MAX_TASKS = 1001  # the most array tasks a status lists (Slurm's default MaxArraySize); then one counts the rest


def parse_slurm_time(text):
    """Slurm's local "2026-11-25T15:33:04" -> "2026-11-25T15:33:04Z" (UTC).

    "N/A", "Unknown", "None", "" -> None."""
    text = (text or "").strip()
    if text in _EMPTY:
        return None
    try:
        local = time.strptime(text, "%Y-%m-%dT%H:%M:%S")
    except ValueError:
        return None
    epoch = time.mktime(local[:8] + (-1,))  # -1: let libc decide DST
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def parse_duration(text):
    """A Slurm duration -> seconds (int), or None.

    Reads what Slurm prints: "0:00" (M:SS), "1:00:00", "3-00:00:00",
    "00:00.004" (TotalCPU; fractions rounded).  A lone number is minutes,
    as in sbatch --time (the *Raw fields, plain seconds, are not read here).
    "UNLIMITED", "INVALID", "Partition_Limit", "N/A" -> None."""
    text = (text or "").strip()
    if not text[:1].isdigit():
        return None
    dashed = "-" in text
    days, _, text = text.partition("-") if dashed else ("0", "", text)
    parts = text.split(":")
    if dashed:  # D-H, D-H:M, D-H:M:S
        parts += ["0"] * (3 - len(parts))
    elif len(parts) < 3:  # minutes, or M:S
        parts = ["0", parts[0], "0"] if len(parts) == 1 else ["0"] + parts
    try:
        d, h, m, s = int(days), int(parts[0]), int(parts[1]), float(parts[2])
    except (ValueError, IndexError):
        return None
    return int(round(d * 86400 + h * 3600 + m * 60 + s))


def format_duration(seconds):
    """Seconds -> Slurm-style "H:MM:SS" or "D-HH:MM:SS"; None -> None."""
    if seconds is None:
        return None
    d, rest = divmod(int(seconds), 86400)
    h, rest = divmod(rest, 3600)
    m, s = divmod(rest, 60)
    return "%d-%02d:%02d:%02d" % (d, h, m, s) if d else "%d:%02d:%02d" % (h, m, s)


_MEM_UNITS = {"K": 1.0 / 1024, "M": 1.0, "G": 1024.0, "T": 1024.0 * 1024, "P": 1024.0 ** 3}


def parse_mem(text, default_unit="M"):
    """A Slurm memory size -> MB (float), or None.

    "256M" -> 256.0, "4648K" -> 4.539..., "1.50G" -> 1536.0, "0" -> 0.0.
    A trailing "n"/"c" (per node/CPU, older Slurm) is ignored.  Anything
    else (e.g. "16?" seen from sacct for a suspended job) -> None."""
    text = (text or "").strip()
    m = re.match(r"^([0-9]+(?:\.[0-9]+)?)([KMGTP]?)[nc]?$", text)
    return float(m.group(1)) * _MEM_UNITS[m.group(2) or default_unit] if m else None


def parse_req_mem(text, cpus, nodes):
    """sacct's ReqMem -> the job's whole request in MB, or None.  Slurm
    21.08 and later print the total ("600M" for -c 2 --mem-per-cpu=300);
    older ones a per-CPU ("300Mc") or per-node ("4000Mn") figure, which is
    multiplied out by AllocCPUS or NNodes (None when that is not known)."""
    text = (text or "").strip()
    mb = parse_mem(text)
    if mb is None or text[-1:] not in ("c", "n"):
        return mb
    times = cpus if text.endswith("c") else nodes
    return mb * times if isinstance(times, int) and times > 0 else None


def step_mem_mb(ave_rss, ntasks, max_rss):
    """A job step's memory, all its tasks together, in MB: AveRSS (the mean
    of the tasks' peaks) x NTasks, i.e. the sum of each task's peak; for a
    step of one task (or when NTasks is not given) its MaxRSS. None when
    sacct has no figure (JobAcctGatherType=none)."""
    ave = parse_mem(ave_rss, default_unit="K")
    return ave * ntasks if ave is not None and isinstance(ntasks, int) and ntasks > 0 else \
        parse_mem(max_rss, default_unit="K")


def parse_tres_mem(text):
    """"cpu=2,mem=600M,node=1,billing=2" -> 600.0 (MB), or None."""
    return parse_mem(_tres(text, "mem"))


def _tres(text, name):
    """"cpu=2,mem=600M,node=1" and "node" -> "1"; None when not there."""
    return next((value for key, _, value in (item.partition("=") for item in (text or "").split(","))
                 if key == name), None)


def slurm_time(seconds):
    """Seconds as squeue prints a time: "0:05", "12:03", "1:00:00",
    "2-00:00:00"; None -> None."""
    if seconds is None:
        return None
    return format_duration(seconds) if seconds >= 3600 else "%d:%02d" % divmod(int(seconds), 60)


# squeue --Format fields, each followed by "|".  tres-alloc gives the total
# memory (MinMemory may be per CPU), the nodes and CPUs (squeue's %D and %C)
# and, for a pending job, what it asks for.
SQUEUE_FIELDS = [
    "JobID", "ArrayJobID", "ArrayTaskID", "State", "Reason", "exit_code",
    "StartTime", "EndTime", "SubmitTime", "TimeUsed", "TimeLimit",
    "tres-alloc", "UserID", "Partition",
]
SQUEUE_FORMAT = ",".join(f + ":|" for f in SQUEUE_FIELDS)

# sacct --format fields (--parsable2: "|"-separated, no trailing "|").  On a
# step row MaxRSS is the largest task's peak and AveRSS the mean of its tasks'
# peaks, so AveRSS x NTasks is what its tasks used together (step_mem_mb).
SACCT_FIELDS = [
    "JobID", "JobIDRaw", "State", "ExitCode", "Reason", "Start", "End",
    "Submit", "ElapsedRaw", "TotalCPU", "MaxRSS", "ReqMem", "Timelimit",
    "UID", "Partition", "AllocCPUS", "NNodes", "NTasks", "AveRSS",
]
SACCT_FORMAT = ",".join(SACCT_FIELDS)

SINFO_FORMAT = "%N|%P|%a|%l|%c|%m"


def _records(text, fields, trailing):
    """Each "|"-delimited line of text as a dict of fields; blank lines and
    lines that do not fit are skipped. trailing: squeue -O ends every field
    with "|"."""
    for line in (text or "").splitlines():
        parts = line.split("|")
        if trailing and parts and parts[-1] == "":
            parts = parts[:-1]
        if line.strip() and len(parts) == len(fields):
            yield dict(zip(fields, parts))


def _int_or_none(text):
    try:
        return int(text)
    except (TypeError, ValueError):
        return None


def _task_ids(task):
    """An array task field as single task ids: "3" -> ["3"], a pending
    range "2-4" or "[2-4%1]" -> ["2", "3", "4"] (the first MAX_TASKS, then
    "[+N]" standing for the N others), none -> [None]; ValueError if bad."""
    if task in _EMPTY or task is None or task.isdigit():
        return [None if task in _EMPTY else task]
    ranges = array_tasks(task.strip("[]"), most=None)
    ids = [str(t) for t in itertools.islice(itertools.chain(*ranges), MAX_TASKS)]
    return ids + ["[+%d]" % (sum(map(len, ranges)) - MAX_TASKS)] * (sum(map(len, ranges)) > MAX_TASKS)


def _wait_status(text):
    """squeue's exit_code, a raw wait status -> (exit code, signal), read as
    sacct reads it (WIFSIGNALED first): 15 -> (0, 15); 768 -> (3, 0); a
    launch failure's Slurm error lands in the signal's bits (4021 -> (0, 53))."""
    status = _int_or_none(text)
    return (None, None) if status is None else (0, status & 0x7F) if status & 0x7F else (status >> 8 & 0xFF, 0)


def _exit_signal(text):
    """sacct's "3:0" -> (3, 0)."""
    code, _, sig = (text or "").partition(":")
    try:
        return int(code), int(sig or 0)
    except ValueError:
        return None, None


def _split_state(text):
    """"CANCELLED by 1001" -> ("CANCELLED", 1001); "RUNNING" -> ("RUNNING", None)."""
    words = (text or "").split() or [""]
    return words[0].rstrip("+"), _int_or_none(words[2]) if len(words) >= 3 and words[1] == "by" else None


def _text_or_none(text):
    return None if text in _EMPTY else text


# Row key -> (field, reader) of what squeue and sacct rows read field by
# field; the parsers add id, parent, task, raw_state, exit_code and signal
# (and sacct cancelled_by and max_rss_mb, from its step rows).
SQUEUE_ROW = {"raw_id": ("JobID", str), "reason": ("Reason", _text_or_none),
              "submitted_at": ("SubmitTime", parse_slurm_time), "start": ("StartTime", parse_slurm_time),
              "end": ("EndTime", parse_slurm_time), "elapsed_s": ("TimeUsed", parse_duration),
              "time_limit_s": ("TimeLimit", parse_duration), "requested_mem_mb": ("tres-alloc", parse_tres_mem),
              "uid": ("UserID", _int_or_none), "partition": ("Partition", str),
              "nodes": ("tres-alloc", lambda t: _int_or_none(_tres(t, "node"))),
              "cpus": ("tres-alloc", lambda t: _int_or_none(_tres(t, "cpu")))}
SACCT_ROW = {"raw_id": ("JobIDRaw", str), "reason": ("Reason", _text_or_none),
             "submitted_at": ("Submit", parse_slurm_time), "start": ("Start", parse_slurm_time),
             "end": ("End", parse_slurm_time), "elapsed_s": ("ElapsedRaw", _int_or_none),
             "cpu_time_s": ("TotalCPU", parse_duration), "time_limit_s": ("Timelimit", parse_duration),
             "uid": ("UID", _int_or_none), "partition": ("Partition", str), "alloc_cpus": ("AllocCPUS", _int_or_none),
             "nodes": ("NNodes", _int_or_none)}


def _rows(record, reading, parent, task):
    """The row(s) of one record: one per task id in its task field (one for
    a plain job), each with its id, parent and task; none for a record
    that cannot be read (logged: one job's row never fails the others)."""
    try:
        row = {key: read(record[field]) for key, (field, read) in reading.items()}
        return [dict(row, id=parent + "_" + t if t else parent, parent=parent, task=t) for t in _task_ids(task)]
    except (ValueError, ArithmeticError) as e:
        log.warning("job %s left out: its row cannot be read (%s)", parent[:40], str(e)[:200])
        return []


def parse_squeue(text):
    """squeue --noheader --array --Format=SQUEUE_FORMAT output -> list of rows.

    Each row: {"id": "5" or "4_1", "parent": "5" or "4", "task": None or "1",
    "raw_id", "raw_state", "reason", "exit_code", "signal", "submitted_at",
    "start", "end", "elapsed_s", "time_limit_s", "requested_mem_mb", "uid",
    "partition", "nodes", "cpus"}.  start/end are UTC ISO strings or None; their meaning
    depends on the state (expected times for pending/running jobs)."""
    rows = []
    for f in _records(text, SQUEUE_FIELDS, trailing=True):
        # Without --array a pending array's remaining tasks are one line with
        # a range ("2-4"); _rows expands it so callers always see single tasks.
        for row in _rows(f, SQUEUE_ROW, f["ArrayJobID"] or f["JobID"], f["ArrayTaskID"]):
            row["raw_state"], _ = _split_state(f["State"])
            row["exit_code"], row["signal"] = _wait_status(f["exit_code"])
            rows.append(row)
    return rows


def parse_sacct(text):
    """sacct --noheader --parsable2 --format=SACCT_FORMAT output -> list of jobs.

    One entry per job or array task: {"id": "5" or "4_1", "parent", "task",
    "raw_id", "raw_state", "cancelled_by" (uid or None), "reason",
    "exit_code", "signal", "submitted_at", "start", "end", "elapsed_s",
    "cpu_time_s", "max_rss_mb" (the largest task's peak, over all steps),
    "mem_used_mb" and "mem_tasks" (the step whose tasks together used the
    most: the sum of its tasks' peaks, see step_mem_mb, and its task
    count), "requested_mem_mb" (the whole request), "alloc_cpus",
    "time_limit_s", "uid", "partition", "nodes", "steps_done"}.  Step rows (5.batch,
    5.extern, 5.0) are folded into their job: steps_done is None while it
    has none, else whether all of them have ended."""
    jobs = {}
    order = []
    for f in _records(text, SACCT_FIELDS, trailing=False):
        job_part, _, step = f["JobID"].partition(".")
        if step:
            job = jobs.get(job_part)
            if job is None:
                continue
            rss = parse_mem(f["MaxRSS"], default_unit="K")
            if rss is not None and (job["max_rss_mb"] is None or rss > job["max_rss_mb"]):
                job["max_rss_mb"] = rss
            ntasks = _int_or_none(f["NTasks"])
            used = step_mem_mb(f["AveRSS"], ntasks, f["MaxRSS"])
            if used is not None and (job["mem_used_mb"] is None or used > job["mem_used_mb"]):
                job["mem_used_mb"], job["mem_tasks"] = used, ntasks if ntasks and ntasks > 0 else 1
            step_state, _ = _split_state(f["State"])
            step_done = STATE_MAP.get(step_state) in FINAL_STATES
            job["steps_done"] = step_done if job["steps_done"] is None else (job["steps_done"] and step_done)
            continue
        parent, _, task = job_part.partition("_")
        # a pending array's remaining tasks come as one "4_[2-4]" line
        rows = _rows(f, SACCT_ROW, parent, task or None)
        for row in rows:
            row["raw_state"], row["cancelled_by"] = _split_state(f["State"])
            row["exit_code"], row["signal"] = _exit_signal(f["ExitCode"])
            row["requested_mem_mb"] = parse_req_mem(f["ReqMem"], row["alloc_cpus"], _int_or_none(f["NNodes"]))
            row["max_rss_mb"] = row["mem_used_mb"] = row["mem_tasks"] = None
            row["steps_done"] = None  # no step row yet
            if row["id"] not in jobs:
                order.append(row["id"])
            jobs[row["id"]] = row
        # step rows are keyed by the text before "." -- also for ranges
        if len(rows) > 1:
            jobs[job_part] = rows[0]
    return [jobs[j] for j in order]


# Slurm job state -> flightjobd state.  Requeued/held jobs wait again, so they
# are PENDING; anything holding resources is RUNNING (the page shows raw_state
# for SUSPENDED, COMPLETING, CONFIGURING...).
STATE_MAP = {raw: state for state, raws in (
    ("PENDING", "PENDING REQUEUED REQUEUE_HOLD REQUEUE_FED SPECIAL_EXIT RESV_DEL_HOLD"),
    ("RUNNING", "CONFIGURING RUNNING SUSPENDED COMPLETING STOPPED RESIZING SIGNALING STAGE_OUT UPDATE_DB"),
    ("COMPLETED", "COMPLETED"), ("CANCELLED", "CANCELLED"),
    ("FAILED", "FAILED OUT_OF_MEMORY TIMEOUT NODE_FAIL BOOT_FAIL PREEMPTED DEADLINE REVOKED")) for raw in raws.split()}

FINAL_STATES = ("COMPLETED", "FAILED", "CANCELLED")

# Final Slurm states that carry their own cause: raw state -> (reason, words).
FAILURE_CAUSES = {
    "OUT_OF_MEMORY": ("OutOfMemory", "ran out of memory"), "TIMEOUT": ("TimeLimit", "ran out of time"),
    "NODE_FAIL": ("NodeFail", "its node failed"), "BOOT_FAIL": ("BootFail", "the node failed to boot"),
    "PREEMPTED": ("Preempted", "preempted by another job"), "DEADLINE": ("DeadLine", "missed its deadline"),
    "REVOKED": ("Revoked", "revoked (moved to another cluster)")}

LAUNCH_FAILURE = "the scheduler could not start it (a launch failure)"
HELD_REASONS = ("JobHeldUser",)  # a pending job's reasons that say it is held (the public view's "held")
NEVER_REASONS = ("DependencyNeverSatisfied",)  # ... that it will never run ("never_runs")
# Slurm reason codes in plain words (pending reasons and a few end reasons).
REASON_TEXT = {
    "None": None, "Resources": "waiting for resources", "Priority": "waiting for higher-priority jobs",
    "Dependency": "waiting for the jobs it depends on",
    "DependencyNeverSatisfied": "will never run: a job it depends on failed", "JobHeldUser": "held by the user",
    "JobHeldAdmin": "held by an administrator", "BeginTime": "waiting for its start time",
    "ReqNodeNotAvail": "the requested nodes are not available",
    "PartitionTimeLimit": "the time limit is more than the partition allows",
    "PartitionNodeLimit": "more nodes than the partition allows",
    "PartitionConfig": "the partition cannot satisfy the request", "PartitionDown": "the partition is down",
    "PartitionInactive": "the partition is inactive", "NodeDown": "a required node is down",
    "BadConstraints": "the cluster cannot satisfy the requested resources",
    "QOSMaxJobsPerUserLimit": "the user already has the most jobs allowed",
    "QOSMaxSubmitJobPerUserLimit": "the user has submitted the most jobs allowed",
    "QOSMaxCpuPerUserLimit": "the user is using the most CPUs allowed",
    "QOSResourceLimit": "a quality-of-service limit was reached", "QOSGrpCpuLimit": "a group CPU limit was reached",
    "AssocGrpCpuLimit": "the account's CPU limit was reached",
    "AssocGrpMemLimit": "the account's memory limit was reached",
    "AssocGrpJobsLimit": "the account's job limit was reached",
    "AssocMaxJobsLimit": "the most jobs allowed for the account are running",
    "AssocGrpCPUMinutesLimit": "the account's CPU time allocation is used up",
    "InvalidAccount": "the account is not valid", "InvalidQOS": "the quality of service is not valid",
    "Reservation": "waiting for its reservation", "Licenses": "waiting for licenses",
    "JobLaunchFailure": LAUNCH_FAILURE, "launch failed requeued held": "launch failed; requeued and held",
    "NonZeroExitCode": "non-zero exit code", "TimeLimit": "ran out of time", "OutOfMemory": "ran out of memory",
    "SystemFailure": "system failure", "Cleaning": "waiting for the previous run to clean up",
    "Prolog": "running the prolog", "NodeFail": "node failure",
}


def _signal_name(sig):
    try:
        return signal.Signals(sig).name
    except ValueError:
        return "signal %d" % sig


def _over_memory(sig, max_rss_mb, mem_mb):
    """OverMemoryKill (no cgroups) ends a job FAILED by SIGKILL; the sampled
    RSS above the request is the only sign it was the memory limit."""
    return sig == 9 and max_rss_mb is not None and bool(mem_mb) and max_rss_mb > mem_mb


def _explain_failure(raw_state, reason, exit_code, sig, max_rss_mb, mem_mb):
    """-> (reason, reason_text) for a job that ended FAILED (or similar). A "signal" past the standard
    ones is a launch failure's Slurm error (4021 reads 0:53); squeue says JobLaunchFailure of an OOM kill too."""
    if raw_state in FAILURE_CAUSES:
        return FAILURE_CAUSES[raw_state]
    if _over_memory(sig, max_rss_mb, mem_mb):
        return "OutOfMemory", "ran out of memory"
    if (sig or 0) > 31 or reason == "JobLaunchFailure" and not sig and not exit_code:
        return "JobLaunchFailure", LAUNCH_FAILURE
    if exit_code:
        return "NonZeroExitCode", "exit code %d" % exit_code
    if sig:
        return "Signal", "killed by signal %d (%s)" % (sig, _signal_name(sig))
    if reason and reason not in ("NonZeroExitCode", "JobLaunchFailure"):
        return reason, REASON_TEXT.get(reason) or reason
    return reason or "Failed", "failed"


RUNNING_WORDS = {"SUSPENDED": "suspended", "COMPLETING": "waiting for the final figures",  # ENDING's
                 "CONFIGURING": "starting (nodes are being prepared)"}


def _status(row, owner=None):
    """One parsed squeue or sacct row -> a status dict. owner: the job's
    owner's uid when known better than the row's (see SlurmScheduler.status)."""
    raw = row["raw_state"]
    state = STATE_MAP.get(raw)
    if state is None:  # a state newer than this code: do not call it final
        state = "RUNNING" if row["start"] else "PENDING"
    final = state in FINAL_STATES
    reason, reason_text = row["reason"], REASON_TEXT.get(row["reason"], row["reason"])
    exit_code = row["exit_code"] if final else None
    sig = (row["signal"] or None) if final else None

    if state == "COMPLETED":
        reason, reason_text = None, None
    elif state == "FAILED":
        reason, reason_text = _explain_failure(
            raw, row["reason"], row["exit_code"], row["signal"],
            row.get("max_rss_mb"), row["requested_mem_mb"])
    elif state == "CANCELLED":
        by = row.get("cancelled_by")
        reason, reason_text = "Cancelled", "cancelled" if by is None else "cancelled by the user" if by == (
            row["uid"] if owner is None else owner) else "cancelled by an administrator"
    elif state == "PENDING" and reason is None:  # just submitted: the scheduler has not looked yet
        reason_text = "waiting to be scheduled"
    elif state == "RUNNING":
        reason_text = RUNNING_WORDS.get(raw, reason_text)
        reason = reason if reason_text else None

    started = row["start"] if state != "PENDING" else None
    if state == "CANCELLED" and started and started == row["end"] and not row["elapsed_s"]:
        started = None  # squeue gives a job cancelled while pending start = end = the moment of cancelling
    estimated = row["start"] if state == "PENDING" and row["start"] and parse_iso(row["start"]) > _now() else None
    ended = row["end"] if final else None
    elapsed = row["elapsed_s"] if started else None
    cpus = row.get("alloc_cpus") or None

    return dict({k: row.get(k) for k in ("cpu_time_s", "max_rss_mb", "mem_used_mb", "mem_tasks", "requested_mem_mb")},
                state=state, raw_state=raw, reason=reason, reason_text=reason_text, exit_code=exit_code, signal=sig,
                started_at=started, estimated_start_at=estimated, ended_at=ended, elapsed_s=elapsed,
                alloc_cpus=cpus if started else None, time_limit=format_duration(row["time_limit_s"]),
                # where and on what, as squeue says: asked for while pending, held once running
                partition=row["partition"] or None, nodes=row.get("nodes") or None,
                cpus=row.get("cpus") or cpus,
                # what the job held: its CPUs for its run time (efficiency's divisor)
                cpu_alloc_s=elapsed * cpus if final and started and elapsed is not None and cpus else None)


def _task_num(task_id):
    try:
        return int(task_id.rsplit("_", 1)[1])
    except (IndexError, ValueError):
        return 1 << 62  # "ID_[+N]", standing for N tasks not listed: last


def rollup(tasks):
    """[(task_id, status), ...] of one array job -> the parent's status."""
    tasks = sorted(tasks, key=lambda t: _task_num(t[0]))
    states = [s["state"] for _, s in tasks]
    first = tasks[0][1]
    out = dict(first)

    def pick(state):
        return [(tid, s) for tid, s in tasks if s["state"] == state]

    # the first state any task is in, in this order, and its first task's raw state and reason
    state = next((st for st in ("RUNNING", "PENDING", "FAILED", "CANCELLED") if st in states), "COMPLETED")
    s = pick(state)[0][1] if state != "COMPLETED" else dict(raw_state="COMPLETED", reason=None, reason_text=None)
    out.update(state=state, raw_state=s["raw_state"], reason=s["reason"], reason_text=s["reason_text"])
    failed, cancelled = pick("FAILED"), pick("CANCELLED")
    if state == "RUNNING":
        out["reason_text"] = "%d of %d tasks running" % (len(pick("RUNNING")), len(tasks))
    elif state == "FAILED":  # at most 100 named, then the text cut to its bound
        words = ["task %s: %s" % (t, x["reason_text"]) for t, x in failed[:100]]
        out["reason_text"] = _cut("; ".join(words + ["%d more failed" % (len(failed) - 100)] * (len(failed) > 100)
                                            + ["%d cancelled" % len(cancelled)] * bool(cancelled)))

    final = out["state"] in FINAL_STATES
    starts = [s["started_at"] for _, s in tasks if s["started_at"]]
    ends = [s["ended_at"] for _, s in tasks if s["ended_at"]]
    estimates = [s["estimated_start_at"] for _, s in tasks if s["estimated_start_at"]]
    codes = [s["exit_code"] for _, s in tasks if s["exit_code"] is not None]
    sigs = [s["signal"] for _, s in tasks if s["signal"]]
    cpu = [s["cpu_time_s"] for _, s in tasks if s["cpu_time_s"] is not None]
    rss = [s["max_rss_mb"] for _, s in tasks if s["max_rss_mb"] is not None]
    out["started_at"] = min(starts) if starts else None
    out["estimated_start_at"] = min(estimates) if (estimates and not starts) else None
    out["ended_at"] = max(ends) if (final and ends) else None
    if out["started_at"] and out["ended_at"]:
        out["elapsed_s"] = parse_iso(out["ended_at"]) - parse_iso(out["started_at"])
    elif out["started_at"]:
        out["elapsed_s"] = max(s["elapsed_s"] or 0 for _, s in tasks)
    else:
        out["elapsed_s"] = None
    out["exit_code"] = max(codes) if (final and codes) else None
    out["signal"] = sigs[0] if (final and sigs) else None
    out["cpu_time_s"] = sum(cpu) if cpu else None
    out["max_rss_mb"] = max(rss) if rss else None
    # each task has its own CPUs and memory: held CPU time adds up, memory
    # is the largest task's (its CPU count, the largest, for the advice)
    held = [s["cpu_alloc_s"] for _, s in tasks if s.get("cpu_alloc_s") is not None]
    out["cpu_alloc_s"] = sum(held) if final and held and len(held) == len(cpu) else None
    cpus = [s["alloc_cpus"] for _, s in tasks if s.get("alloc_cpus")]
    out["alloc_cpus"] = max(cpus) if cpus else None
    used = [s for _, s in tasks if s.get("mem_used_mb") is not None]
    most = max(used, key=lambda s: s["mem_used_mb"]) if used else {}
    out["mem_used_mb"], out["mem_tasks"] = most.get("mem_used_mb"), most.get("mem_tasks")
    out["tasks"] = [{"id": tid, "state": s["state"], "raw_state": s["raw_state"], "exit_code": s["exit_code"],
                     "reason_text": s["reason_text"]} for tid, s in tasks]
    return out


def _cut(text, most=STATUS_TEXT):
    return text[:most - 1] + "…" if isinstance(text, str) and len(text) > most else text


def _fitted(status, most=MAX_TASKS):
    """A status with its texts and its tasks' cut to STATUS_TEXT, and at
    most `most` tasks listed, then one entry "ID_[+N]" for the N others."""
    out = {k: _cut(v) for k, v in status.items()}
    tasks, rest = [dict(t, reason_text=_cut(t.get("reason_text"))) for t in status.get("tasks") or []], []
    if len(tasks) > most + 1 or len(tasks) == most + 1 and "[+" not in tasks[-1]["id"]:
        tasks, rest = tasks[:most], tasks[most:]
        more = sum(int(t["id"].rpartition("[+")[2].rstrip("]")) if "[+" in t["id"] else 1 for t in rest)
        tasks.append(dict(rest[0], id="%s_[+%d]" % (rest[0]["id"].rpartition("_")[0], more), exit_code=None,
                          reason_text="%d more tasks, not listed here" % more))
    return dict(out, tasks=tasks) if "tasks" in status else out


# Slurm output -> partitions, accounts, submits ##############################


def parse_sinfo(text):
    """sinfo --noheader --Node --format=SINFO_FORMAT -> partitions list.

    memory_mb is the largest node's memory (the most one job can ask for on
    one node); cpus and nodes are totals."""
    parts, seen = {}, set()  # name -> partition, in sinfo's order; (partition, node) counted
    for line in (text or "").splitlines():
        f = line.strip().split("|")
        if len(f) != 6:
            continue
        node, name, avail, limit, cpus, mem = f
        p = parts.setdefault(name.rstrip("*"), {"name": name.rstrip("*"), "default": name.endswith("*"), "nodes": 0,
                                                "max_time": format_duration(parse_duration(limit)), "cpus": 0,
                                                "memory_mb": 0, "state": avail})
        if (p["name"], node) not in seen:
            seen.add((p["name"], node))
            p["nodes"] += 1
            p["cpus"] += int(cpus.rstrip("+") or 0)
            p["memory_mb"] = max(p["memory_mb"], int(mem.rstrip("+") or 0))
    return list(parts.values())


# What a submit page shows of each partition (the shared poll's summary):
# sinfo per node and partition, squeue's pending jobs, scontrol's access rules.
SINFO_FREE_FIELDS = ["NodeList", "Partition", "Available", "StateCompact", "CPUsState", "Gres", "GresUsed"]
SINFO_FREE_FORMAT = ",".join(f + ":0|" for f in SINFO_FREE_FIELDS)  # ":0": no padding
PARTITION_RE = re.compile(r"^[A-Za-z0-9_.+-]{1,64}$")
MAX_PARTITIONS = 200  # the most partitions a summary holds
MAX_RULE_NAMES = 200  # the most names one access rule of one partition holds
ACCESS_RULES = {"allow_groups": "AllowGroups", "allow_accounts": "AllowAccounts",
                "deny_accounts": "DenyAccounts", "allow_qos": "AllowQos", "deny_qos": "DenyQos"}
_GPU_RE = re.compile(r"(?:^|,)gpu(?::[^:(,]+)?:([0-9]{1,6})")


def _gpus(gres):
    """GPUs in sinfo's Gres or GresUsed: "gpu:a40:4(S:0-1),shard:8" -> 4,
    "gpu:a40:1(IDX:0)" -> 1, "gpu:2" -> 2, "(null)" -> 0."""
    return sum(int(n) for n in _GPU_RE.findall(gres or ""))


def _cpus_state(text):
    """sinfo's CPUsState "allocated/idle/other/total" -> (idle, total), or None."""
    parts = (text or "").split("/")
    if len(parts) != 4 or not all(p.isdigit() and len(p) <= 9 for p in parts):
        return None
    return int(parts[1]), int(parts[3])


def parse_sinfo_free(text):
    """sinfo --noheader --Node --Format=SINFO_FREE_FORMAT -> [{"name",
    "default", "state", "cpus_free", "cpus_total", "nodes_free" (idle
    nodes), "nodes_total", "gpus_free", "gpus_total"}] per partition, in
    sinfo's order. A partition that is not up has nothing free; a node
    that is not idle or mixed (allocated, drained, down) no free GPUs."""
    parts, seen = {}, set()  # name -> partition, in sinfo's order; (partition, node) counted
    for f in _records(text, SINFO_FREE_FIELDS, trailing=True):
        name, cpus, node = f["Partition"].strip(), _cpus_state(f["CPUsState"]), f["NodeList"].strip()
        if not PARTITION_RE.match(name.rstrip("*")) or cpus is None or (name.rstrip("*"), node) in seen or (
                name.rstrip("*") not in parts and len(parts) >= MAX_PARTITIONS):
            continue
        seen.add((name.rstrip("*"), node))
        p = parts.setdefault(name.rstrip("*"), dict(dict.fromkeys(("cpus_free", "cpus_total", "nodes_free", "nodes_total",
                                                                   "gpus_free", "gpus_total"), 0),
                                                    name=name.rstrip("*"), default=name.endswith("*"),
                                                    state=f["Available"].strip()[:20]))
        state, gpus = f["StateCompact"].strip().rstrip("$@^-#!%*~"), _gpus(f["Gres"])
        p["nodes_total"] += 1
        p["cpus_total"] += cpus[1]
        p["gpus_total"] += gpus
        if p["state"] == "up":
            p["nodes_free"] += state == "idle"
            p["cpus_free"] += cpus[0]
            if state in ("idle", "mix", "mixed"):
                p["gpus_free"] += max(0, gpus - _gpus(f["GresUsed"]))
    return list(parts.values())


def parse_pending_partitions(text):
    """squeue --noheader --states=PENDING --Format=Partition:0| -> {partition:
    jobs waiting}; a job waiting for any of several partitions ("debug,long")
    counts for each."""
    waiting = {}
    for line in (text or "").splitlines():
        for name in line.strip().rstrip("|").split(","):
            if PARTITION_RE.match(name):
                waiting[name] = waiting.get(name, 0) + 1
    return waiting


def _rule(value):
    """An access rule's value -> None (no rule: "ALL", or not given) or the names."""
    return None if value in (None, "", "ALL", "(null)") else [n for n in value.split(",") if n][:MAX_RULE_NAMES]


def _mem_mb(value):
    """A memory default of scontrol's, in MB: "256" -> 256, "UNLIMITED" -> 0
    (none: the whole node's), anything else (not given) -> None."""
    value = (value or "").strip()
    return 0 if value == "UNLIMITED" else int(value) if value.isdigit() and len(value) <= 9 else None


def parse_scontrol_partitions(text):
    """scontrol show partition --oneliner -> {name: {"allow_groups",
    "allow_accounts", "deny_accounts", "allow_qos", "deny_qos": None (no
    rule) or [names], "root_only": bool, "exclusive": OverSubscribe=EXCLUSIVE,
    "def_mem_per_cpu", "def_mem_per_node": the partition's own memory
    default in MB (0: none, a job gets the node's memory) or None (both
    None: it sets none, the cluster's applies; scontrol prints
    "DefMemPerNode=UNLIMITED" for that)}}."""
    out = {}
    for line in (text or "").splitlines():
        fields = dict(word.partition("=")[::2] for word in line.split() if "=" in word)
        name = fields.get("PartitionName", "")
        if PARTITION_RE.match(name) and len(out) < MAX_PARTITIONS:
            out[name] = {key: _rule(fields.get(word)) for key, word in ACCESS_RULES.items()}
            per_node = _mem_mb(fields.get("DefMemPerNode"))
            out[name].update(root_only=fields.get("RootOnly", "NO") == "YES",
                             exclusive=fields.get("OverSubscribe", "NO") == "EXCLUSIVE",
                             def_mem_per_cpu=_mem_mb(fields.get("DefMemPerCPU")), def_mem_per_node=per_node or None)
    return out


def mem_words(mb):
    """600.0 -> "600 MiB", 18432.0 -> "18 GiB", 1536.0 -> "1.5 GiB"."""
    return "%d MiB" % round(mb) if mb < 1024 else ("%.1f GiB" % (mb / 1024.0)).replace(".0 GiB", " GiB")


def job_default_words(p, conf):
    """What Slurm gives a job on partition p (a partition summary entry,
    with its largest node's memory_mb) beyond what it asks, in words, given
    the cluster's config (parse_scontrol of show config): {"exclusive":
    its nodes whole (OverSubscribe=EXCLUSIVE), "memory": all of a node's
    memory to a job asking none (memory a consumable resource, and no
    DefMemPerCPU/DefMemPerNode of the partition's or, where it sets none,
    the cluster's)}, each words or None."""
    out = {"exclusive": None, "memory": None}
    if p.get("exclusive"):
        out["exclusive"] = ("Partition %s gives each job whole nodes (OverSubscribe=EXCLUSIVE): all of a "
                            "node's cores and memory, however few it asks for" % p["name"])
    per_cpu, per_node = p.get("def_mem_per_cpu"), p.get("def_mem_per_node")
    if per_cpu is None and per_node is None:
        per_cpu, per_node = _mem_mb(conf.get("DefMemPerCPU")), _mem_mb(conf.get("DefMemPerNode"))
    if "MEMORY" in conf.get("SelectTypeParameters", "").upper() and not per_cpu and not per_node:
        out["memory"] = "No memory asked: this cluster gives the job all of the node's memory%s" % (
            " (%s)" % mem_words(p["memory_mb"]) if p.get("memory_mb") else "")
    return out


def parse_partition_summary(sinfo_text, squeue_text, scontrol_text):
    """The three commands' output -> the partitions a submit page shows: each
    of parse_sinfo_free's, with "waiting" (pending jobs, or None when not
    known) and its access rules (parse_scontrol_partitions; no rule when
    scontrol does not list it)."""
    waiting = parse_pending_partitions(squeue_text) if squeue_text is not None else None
    rules = parse_scontrol_partitions(scontrol_text)
    none = dict({key: None for key in ACCESS_RULES}, root_only=False, exclusive=False, def_mem_per_cpu=None,
                def_mem_per_node=None)
    return [dict(p, waiting=None if waiting is None else waiting.get(p["name"], 0),
                 **rules.get(p["name"], none)) for p in parse_sinfo_free(sinfo_text)]


def partition_usable(p, uid, groups, assoc):
    """Whether a user may submit to partition p (a partition_summary entry):
    uid, the names of their groups, assoc {"accounts": [...], "qos": [...]}
    from Slurm's associations (None when not known, e.g. no accounting:
    then accounts and QOS rules are left to Slurm)."""
    if p.get("root_only") and uid != 0:
        return False
    if p.get("allow_groups") is not None and not set(groups) & set(p["allow_groups"]):
        return False
    for kind, allow, deny in (("accounts", "allow_accounts", "deny_accounts"), ("qos", "allow_qos", "deny_qos")):
        mine = (assoc or {}).get(kind)
        if not mine:
            continue
        usable = [n for n in mine if (p.get(allow) is None or n in p[allow]) and n not in (p.get(deny) or ())]
        if not usable:
            return False
    return True


def parse_assoc(text):
    """sacctmgr --noheader --parsable2 show assoc user=NAME format=account,qos
    -> {"accounts": [...], "qos": [...]} (each name once)."""
    accounts, qos = [], []
    for line in (text or "").splitlines()[:1000]:
        account, _, names = line.strip().partition("|")
        if account and account not in accounts:
            accounts.append(account)
        qos.extend(n for n in names.split(",") if n and n not in qos)
    return {"accounts": accounts, "qos": qos}


# fields of scontrol show job that may hold spaces: each is last on its line
SCONTROL_WHOLE = re.compile(r"(?:^|\s)(JobName|Command|WorkDir|Comment|StdErr|StdIn|StdOut)=")


def parse_scontrol(text):
    """`scontrol show config` or `show job ID` (its first record: a het job's
    first component) -> {"Key": "value"}: config's "Key = value" lines, a
    job's "Key=value" words, its names and paths whole to their line's end."""
    conf = {}
    for line in (text or "").splitlines():
        key, sep, value = line.partition("=")
        whole = SCONTROL_WHOLE.search(line)
        if not line.strip() and conf:
            break
        if sep and key.endswith(" "):
            conf[key.strip()] = value.strip()
            continue
        conf.update(w.partition("=")[::2] for w in line[:whole.start(1) if whole else None].split() if "=" in w)
        if whole:
            conf[whole.group(1)] = line[whole.end():]
    return conf


CLUSTER_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")  # a Slurm cluster's name, as flightjobd takes it


def parse_sbatch(text):
    """sbatch --parsable output "123" or "123;cluster" -> "123", "123@cluster"."""
    for line in (text or "").splitlines():
        job_id, _, cluster = line.strip().partition(";")
        if re.match(r"^[0-9]+$", job_id):
            return job_id + ("@" + cluster if CLUSTER_RE.match(cluster) else "")
    raise ValueError("no job id in sbatch output: %r" % (text,))


def sbatch_error_message(stderr, command="sbatch"):
    """sbatch's (or command's) stderr -> its own words, without
    "sbatch: error: " prefixes (scontrol's: also "slurm_update error: ").

    "sbatch: error: Memory specification can not be satisfied\\n
     sbatch: error: Batch job submission failed: Requested node ..."
    -> "Memory specification can not be satisfied; Batch job submission
        failed: Requested node configuration is not available"."""
    lines = []
    for line in (stderr or "").splitlines():
        line = line.strip()
        for prefix in (command + ": error: ", command + ": fatal: ", "slurm_update error: ", command + ": "):
            if line.startswith(prefix):
                line = line[len(prefix):]
                break
        if line and line not in lines:
            lines.append(line)
    return "; ".join(lines)


# stderr phrases meaning the controller (not the request) is the problem.
CONTACT_ERRORS = ("Unable to contact slurm controller", "Socket timed out", "Connection refused",
                  "Zero Bytes were transmitted", "Communication connection failure", "Munge", "munge",
                  "Protocol authentication error", "Slurm backup controller in standby mode")


def _is_contact_error(stderr):
    return any(p in (stderr or "") for p in CONTACT_ERRORS)


# Local job supervisor #######################################################

def _alive(pid, jobdir):
    """Whether pid is still the supervisor of jobdir (pids get reused)."""
    try:
        with open("/proc/%d/cmdline" % int(pid), "rb") as f:
            return jobdir.encode() in f.read()
    except (OSError, TypeError, ValueError):
        return False


# Dependency types a submission may choose ("start after one of my jobs"),
# as Slurm's --dependency=TYPE:JOB names them: (the choice in words, what
# the job waits for, why it never will).
DEPENDENCY_TYPES = {
    "afterok": ("after it succeeds", "succeed", "that job did not succeed"),
    "afterany": ("after it ends in any way", "finish", "that job is gone"),
    "afternotok": ("after it fails", "fail", "that job did not fail"),
}
DEPENDENCY_RE = re.compile(r"^(afterok|afterany|afternotok):([0-9]{1,10})$")


def local_status(jobdir):
    """A local job's status.json as its supervisor last wrote it (None
    before it has), an unfinished one whose supervisor is gone FAILED."""
    try:
        status = read_json(os.path.join(jobdir, "status.json"))
    except (OSError, ValueError):
        return None
    if status.get("state") in UNFINISHED and not _alive(status.get("supervisor"), jobdir):
        status.update(state="FAILED", raw_state="NODE_FAIL", reason="SupervisorDied",
                      reason_text="the job's supervising process ended unexpectedly",
                      ended_at=status.get("ended_at") or now_iso())
    return status


def dependency_met(kind, state):
    """Whether a dependency of kind on a job now in state is met: True,
    False (never will be) or None (not yet)."""
    if state in UNFINISHED:
        return None
    return {"afterok": state == "COMPLETED", "afterany": True,
            "afternotok": state in ("FAILED", "CANCELLED")}[kind]


def local_waiting(jobdir, spec):
    """Why a local job that has not started waits, as (reason, reason_text),
    or None when it may start: held by the user (a "hold" marker), or its
    dependency (spec["dependency"]: on another local job) not met yet or
    never to be."""
    if os.path.exists(os.path.join(jobdir, "hold")):
        return "JobHeldUser", REASON_TEXT["JobHeldUser"]
    dep = spec.get("dependency")
    if dep:
        otherdir = os.path.join(os.path.dirname(jobdir), dep["id"])
        other = local_status(otherdir)
        if other is None:  # not started yet, or gone
            other = {"state": "PENDING" if os.path.exists(os.path.join(otherdir, "spec.json")) else "UNKNOWN"}
        met = dependency_met(dep["type"], other["state"])
        if met is False:
            return "DependencyNeverSatisfied", REASON_TEXT["DependencyNeverSatisfied"]
        if met is None:
            return "Dependency", REASON_TEXT["Dependency"]
    return None


def local_time_limit(jobdir, spec):
    """A local job's time limit in seconds (None: none): the one set while
    it was pending ("time_limit" file), else the one it was submitted with."""
    try:
        with open(os.path.join(jobdir, "time_limit")) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return spec["time_limit"]


def local_job_main(jobdir):
    """The supervisor of one local job: waits while the job is held or its
    dependency is not met (for ever if it never will be, as Slurm does,
    until it is cancelled), then runs each task of the job in its own
    process group with the job's time limit, and records the outcome in
    status.json. Started detached by LocalScheduler.submit. While the job
    waits, status.json is changed under the job's .lock only (the
    scheduler's hold and release change it too)."""
    spec = read_json(os.path.join(jobdir, "spec.json"))
    status_path = os.path.join(jobdir, "status.json")
    tasks = ["%s_%s" % (spec["id"], t) for t in spec["tasks"] or []]
    status = {"format": FORMAT, "state": "PENDING", "raw_state": "PENDING", "reason": "None",
              "reason_text": "", "supervisor": os.getpid(), "started_at": None,
              "exit_code": None, "ended_at": None,
              "time_limit": format_duration(local_time_limit(jobdir, spec)),
              "tasks": [{"id": t, "state": "PENDING", "raw_state": "PENDING", "exit_code": None,
                         "reason_text": ""} for t in tasks]}
    cancelled = lambda: os.path.exists(os.path.join(jobdir, "cancel"))  # noqa: E731
    signal.signal(signal.SIGTERM, lambda *a: None)  # a cancel is for the job, not us
    while True:
        with locked(os.path.join(jobdir, ".lock")):
            if cancelled():
                status.update(state="CANCELLED", raw_state="CANCELLED", reason="CancelledByUser",
                              reason_text="cancelled before it started", started_at=None,
                              ended_at=now_iso(), tasks=[dict(t, state="CANCELLED", raw_state="CANCELLED")
                                                         for t in status["tasks"]])
                write_json(status_path, status)
                return 0
            waiting = local_waiting(jobdir, spec)
            limit = local_time_limit(jobdir, spec)
            status["time_limit"] = format_duration(limit)
            if waiting is None:
                status.update(state="RUNNING", raw_state="RUNNING", reason="None", reason_text="",
                              started_at=now_iso())
                write_json(status_path, status)
                break
            status["reason"], status["reason_text"] = waiting
            write_json(status_path, status)
        time.sleep(0.5)
    began = time.time()
    deadline = began + limit if limit is not None else None
    env = dict(os.environ, SLURM_JOB_ID=spec["id"], SLURM_JOBID=spec["id"],
               SLURM_SUBMIT_DIR=spec["cwd"], SLURM_CPUS_PER_TASK=str(spec["cpus"]),
               SLURM_NTASKS="1", SLURM_JOB_NUM_NODES="1", SLURM_NNODES="1",
               SLURM_JOB_NODELIST=os.uname().nodename.split(".")[0],
               SLURM_JOB_PARTITION="local")
    outcome = ("COMPLETED", "COMPLETED", "", 0)
    for i, (task, out) in enumerate(zip(spec["tasks"] or [None], spec["outputs"])):
        env["SLURM_JOB_NAME"] = out["job_name"]
        stop = cancelled
        if task is not None:
            env.update(SLURM_ARRAY_JOB_ID=spec["id"], SLURM_ARRAY_TASK_ID=str(task))
            marker = os.path.join(jobdir, "cancel-%s" % task)  # this task alone (LocalScheduler.cancel)
            stop = lambda: cancelled() or os.path.exists(marker)  # noqa: E731
            status["tasks"][i].update(state="RUNNING", raw_state="RUNNING")
        if task is not None and stop():
            result = ("CANCELLED", "CANCELLED", "cancelled by the user", None)
        else:
            result = _run_local_task(jobdir, out, env, deadline, status, status_path, stop)
        if task is not None:
            status["tasks"][i].update(state=result[0], raw_state=result[1], exit_code=result[3],
                                      reason_text=result[2])
        if result[0] != "COMPLETED" and outcome[0] == "COMPLETED":
            outcome = result if task is None else (
                result[0], result[1], "task %s: %s" % (task, result[2]), result[3])
        if result[1] == "TIMEOUT" or cancelled():
            for t in status["tasks"][i + 1:]:
                t.update(state="CANCELLED", raw_state="CANCELLED", reason_text="not run")
            break
    state, raw, text, code = outcome
    status.update(_local_usage(spec, began))
    status.update(state=state, raw_state=raw, reason_text=text, exit_code=code,
                  ended_at=now_iso(), pgid=None,
                  reason={"COMPLETED": "None", "TIMEOUT": "TimeLimit", "CANCELLED": "CancelledByUser",
                          "FAILED": "NonZeroExitCode"}.get(raw, raw))
    write_json(status_path, status)
    return 0


def _local_usage(spec, began):
    """What a local job used, for its efficiency: the CPU time of every
    process of its tasks that was waited for (getrusage of the supervisor's
    children), held CPUs for its run time, and the largest single
    process's peak memory (all the local scheduler can measure)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    elapsed = max(0.0, time.time() - began)
    peak = usage.ru_maxrss / 1024.0  # KiB on Linux
    return {"elapsed_s": int(round(elapsed)), "cpu_time_s": round(usage.ru_utime + usage.ru_stime, 2),
            "alloc_cpus": spec["cpus"], "cpu_alloc_s": round(elapsed * spec["cpus"], 2), "max_rss_mb": peak,
            "mem_used_mb": peak, "mem_tasks": 1,
            "time_limit": format_duration(spec["time_limit"]) if spec["time_limit"] else None}


def _run_local_task(jobdir, out, env, deadline, status, status_path, cancelled):
    """Run one task; (state, raw_state, reason_text, exit_code)."""
    try:
        os.makedirs(os.path.dirname(out["stdout_path"]), exist_ok=True)
        stdout = open(out["stdout_path"], "ab")
        stderr = stdout if out["stderr_path"] == out["stdout_path"] else open(out["stderr_path"], "ab")
        proc = subprocess.Popen(["/bin/bash", os.path.join(jobdir, "script.sh")],
                                stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
                                cwd=out["results_dir"], env=env, start_new_session=True)
    except OSError as e:
        return ("FAILED", "FAILED", "could not start: %s" % (e.strerror or e), None)
    status["pgid"] = proc.pid
    write_json(status_path, status)
    timed_out = False
    while proc.poll() is None:
        if deadline is not None and time.time() >= deadline and not timed_out:
            timed_out = True
            _stop_group(proc)
        elif cancelled():
            _stop_group(proc)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(0.2)
    _stop_group(proc, grace=0)  # leftovers of the task's process group
    stdout.close()
    if stderr is not stdout:
        stderr.close()
    code = proc.returncode
    if timed_out:
        return ("FAILED", "TIMEOUT", "ran out of time", None)
    if cancelled():
        return ("CANCELLED", "CANCELLED", "cancelled by the user", None)
    if code == 0:
        return ("COMPLETED", "COMPLETED", "", 0)
    if code < 0:  # as Slurm's: no exit code of the program's
        return ("FAILED", "FAILED", "killed by signal %d (%s)" % (-code, _signal_name(-code)), None)
    return ("FAILED", "FAILED", "exit code %d" % code, code)


def _stop_group(proc, grace=5):
    """SIGTERM a task's process group, then SIGKILL after grace seconds."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
    end = time.time() + grace
    while grace and proc.poll() is None and time.time() < end:
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


# Scheduler adapters: the interface ##########################################

class SchedulerNoAnswer(SchedulerError):
    """A scheduler command whose effect is not known: it timed out, its
    answer was lost on the way, or its output could not be read. A submit
    that ends so may have made a job (see JobStatus._settle_submits)."""


def unbound_memory(mb=None):
    """Bound this process's address space (RLIMIT_AS) to mb MiB (a worker),
    or with none lift it (a worker's child: a scheduler command, which
    would pass it on to the job, or a local job)."""
    hard = resource.getrlimit(resource.RLIMIT_AS)[1]
    resource.setrlimit(resource.RLIMIT_AS, (min(mb << 20, hard % (1 << 64)) if mb else hard, hard))


def run(argv, timeout, env=None, cwd=None, **umask):
    """The one way a scheduler command runs: an argv list, never a shell, in
    its own session so a hung command and its children can be killed.
    Returns stdout; raises SchedulerError on a non-zero exit (carrying the
    command's stdout, stderr and exit status) or a command that cannot
    start, SchedulerNoAnswer on a time-out (with what it printed before)."""
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=env, cwd=cwd, start_new_session=True, preexec_fn=unbound_memory, **umask)
    except OSError as e:
        raise SchedulerError("Cannot run %s: %s" % (argv[0], e.strerror or e))
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(OSError):
            os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise SchedulerNoAnswer("The scheduler did not answer: %s timed out after %s seconds."
                                % (os.path.basename(argv[0]), timeout),
                                stdout=out.decode("utf-8", "replace"), stderr=err.decode("utf-8", "replace"))
    out, err = out.decode("utf-8", "replace"), err.decode("utf-8", "replace")
    if proc.returncode != 0:
        # stdout too: what it printed before failing (sbatch: perhaps a job id)
        raise SchedulerError("%s failed: %s" % (os.path.basename(argv[0]),
                                                err.strip() or "exit code %d" % proc.returncode),
                             stdout=out, stderr=err, returncode=proc.returncode)
    return out


def login_environment(base, timeout=10, limit=1 << 20):
    """The environment the user's login shell (bash for one that takes no
    -lc) sets up from base, its profile read (PATH, modules, conda...): its
    `env -0`, run as the user (the worker), in at most timeout seconds and
    limit bytes; None when it cannot be had."""
    shell = pwd.getpwuid(os.getuid()).pw_shell
    shell = shell if os.path.basename(shell) in ("bash", "sh", "dash", "zsh", "ksh") else "/bin/bash"
    with contextlib.suppress(SchedulerError):
        data = run([shell, "-lc", "env -0 | head -c %d" % (limit + 1)], timeout, env=base, cwd=base.get("HOME"))
        return dict(item.split("=", 1) for item in data.split("\0") if "=" in item) if len(data) <= limit else None
    return None


def unreadable(command, out):
    """The error for a scheduler command's output that cannot be read."""
    return SchedulerNoAnswer("%s answered with output flightjobd cannot read: %r"
                             % (os.path.basename(command), out.strip()[:80]), stdout=out)


def parse_squeue_commands(text):
    """squeue --noheader --Format=ArrayJobID:|,Command:| -> [(job id, command)]
    (for a batch job, the script's path as sbatch was given it)."""
    rows = []
    for line in (text or "").splitlines():
        job_id, sep, command = line.partition("|")
        if sep and command.endswith("|") and re.match(r"^[0-9]+$", job_id):
            rows.append((job_id, command[:-1]))
    return rows


# A scheduler's job id (a job record's scheduler_id): "5", an array task "4_1".
# Slurm's are 32-bit (4294967294 at most), task ids below MaxArraySize.
SCHEDULER_ID_RE = re.compile(r"^[0-9]{1,10}(?:_[0-9]{1,7})?$")
# A job as Scheduler.each and the shared poll take it (JobRecords._ref): its
# id, and "@" and its cluster for one on another cluster than the daemon's.
JOB_REF_RE = re.compile(r"^[0-9]{1,10}(?:_[0-9]{1,7})?(?:@[A-Za-z0-9_.-]{1,64})?$")


class Scheduler:
    """What flightjobd needs of a scheduler. An adapter subclasses this and
    is named in SCHEDULERS; one instance serves one user's worker (status
    alone may also serve a poll of every user's jobs). A method that asks
    the scheduler raises SchedulerError when it does not answer,
    SchedulerRefused when it answers no; none of them changes a job record
    (that is the Store's work)."""

    name = None  # its SCHEDULERS key, shown on pages and kept in job records
    last_info = (0.0, None)  # (time.monotonic(), answer) of the last info()
    PLACE = "on cluster %s"  # where a job of it ran, in words, given its record's cluster
    TELLS_OUTPUTS = False  # describe() tells where a job's output goes (else job_outputs works it out)
    # What it can do, declared (never found by comparing names):
    SHARED_POLL = False  # one read-only account can follow every user's jobs (poll, hidden_jobs)
    QUEUES = True  # a job may wait for others' (submit pages say what is free, not what is idle)
    MEMORY_WHAT = None  # what its memory figure of a job is, when not its accounting's largest step
    ACCOUNTS = False  # a job is charged to an account (and QOS) of the user's associations
    ACCOUNTING_LAG = 0  # seconds after a job's end that its detail may still come (detail_pending)

    def __init__(self, timeout=20.0):
        self.timeout = timeout  # seconds one scheduler command may take
        self.counters = {}  # calls made, by command: refresh answers and the bench report them
        self.failures = {}  # (command, kind: FAILURE_KINDS) -> calls that failed: told to root (worker_main)

    @classmethod
    def detect(cls, config):
        """Whether scheduler.type "auto" may pick this scheduler here."""
        return False

    def home(self):
        """The name of the cluster (or machine) its commands reach, kept in
        job records as "cluster": asked of the scheduler, never configured."""
        raise NotImplementedError

    def clusters(self):
        """The clusters this scheduler serves, its home first."""
        return [self.home()]

    def on(self, cluster):
        """This scheduler with its commands aimed at cluster (one of
        clusters(); None: home)."""
        return self

    def each(self, refs):
        """[(this scheduler aimed at a cluster, {scheduler id: ref})] for job
        refs ("5", "5@cluster": see JobRecords._ref), grouped by cluster."""
        groups = {}
        for ref in refs:
            job_id, _, cluster = str(ref).partition("@")
            groups.setdefault(cluster or None, {})[job_id] = ref
        return [(self.on(cluster), ids) for cluster, ids in groups.items()]

    @classmethod
    def from_config(cls, config, user, state_dir):
        """The scheduler for user's worker; state_dir is the user's state directory."""
        raise NotImplementedError

    def available(self):
        """Whether the scheduler answers now (the health check)."""
        raise NotImplementedError

    def info(self):
        """What submission questions offer: {"partitions": [{"name", "default",
        "max_time", "nodes", "cpus", "memory_mb", "state"}]} (accounts: the
        user's own, associations()), kept in last_info for reuse a while."""
        answer = self.read_info()
        self.last_info = (time.monotonic(), answer)
        return answer

    def read_info(self):
        """info()'s answer, asked of the scheduler."""
        raise NotImplementedError

    def partition_summary(self):
        """What a submit page shows of each partition: parse_partition_summary()'s
        entries (free and total CPUs, nodes and GPUs, jobs waiting, access
        rules), or None when this scheduler cannot tell."""
        return None

    def associations(self):
        """{"accounts": [...], "qos": [...]} the user may submit with, or
        None when the scheduler has no such thing."""
        return None

    def associations_why(self):
        """Why associations() cannot tell (it answers None), in words, or
        None when it can."""
        return None

    def job_defaults(self, partition):
        """What a job asking no memory is given on partition (a
        partition_summary() entry with its node's memory_mb) when that is a
        whole node or all its memory: {"memory": words or None,
        "exclusive": words or None}; None when it cannot tell."""
        return None

    def command(self, script_path, options):
        """The argv a submit of script_path with options runs, as pages show it."""
        raise NotImplementedError

    def ignored_options(self, script, options):
        """The directives and options this scheduler does not honour, each in
        words, for the summary before a submit: none by default."""
        return []

    def submit(self, script_path, options, cwd):
        """Submit the script with sbatch-style options from cwd; its job id (a string)."""
        raise NotImplementedError

    def status(self, job_ids):
        """{job id: status} for the job ids the scheduler still knows, with
        one round of scheduler calls for any number of ids: a user's
        unfinished jobs, or every user's (a shared status poll). An id it
        does not know, or that cannot be one of its job ids, is left out:
        the caller decides when a job is lost. A status is job record
        fields: state (one of UNFINISHED or FINAL_STATES), raw_state,
        reason, reason_text, exit_code, started_at, ended_at, ... and, for
        an array job, tasks [{id, state, raw_state, exit_code, reason_text}]."""
        raise NotImplementedError

    def cancel(self, job_id):
        """Cancel a job, or one task of an array job ("4_1"); one that has
        already finished is not an error."""
        raise NotImplementedError

    def hold(self, job_id):
        """Keep a pending job from starting until it is released;
        SchedulerRefused when it is no longer pending."""
        raise NotImplementedError

    def release(self, job_id):
        """Let a held job start again; SchedulerRefused as for hold."""
        raise NotImplementedError

    def set_time_limit(self, job_id, seconds):
        """Change a pending job's time limit (seconds; None: unlimited).
        As Slurm allows its users: lowered only, SchedulerRefused with the
        scheduler's words otherwise."""
        raise NotImplementedError

    def describe(self, job_ids):
        """{job id: {"name", "workdir", "stdout", "stderr", "command"}} of
        this user's jobs submitted outside flightjobd (shown on its pages),
        as far as the scheduler tells; {} when it cannot."""
        return {}

    def find_submitted(self, scripts):
        """{script path: job id} for the scheduler's jobs of this user whose
        batch script is one of scripts (paths given to submit), to find the
        job of a submit whose outcome is not known. One that cannot look
        finds none."""
        return {}

    def poll(self, followed):
        """SHARED_POLL only: one round of every followed user's statuses
        (followed {uid: [job refs: JobRecords._ref]}) -> (statuses {id: status}, owners {id:
        uid}, outside {uid: {job id: status}} of each user's unfinished jobs
        not followed, undecided {id: why}); SchedulerError when it fails."""
        raise NotImplementedError

    def hidden_jobs(self):
        """SHARED_POLL only: None when this account sees every user's jobs,
        else why not (asked afresh)."""
        raise NotImplementedError

    # for adapters

    def _note_call(self, what):
        self.counters[what] = self.counters.get(what, 0) + 1

    def _counted(self, command, call, *args, **kw):
        """call(*args, **kw), running command: noted (counters) and, when it
        fails, its failure by kind (failures: FAILURE_KINDS)."""
        self._note_call(command)
        try:
            return call(*args, **kw)
        except SchedulerError as e:
            key = (command, "timeout" if isinstance(e, SchedulerNoAnswer) else "start" if e.returncode is None
                   else "exit")
            self.failures[key] = self.failures.get(key, 0) + 1
            raise

    @staticmethod
    def _job_ids(job_ids):
        """The distinct ids, as strings, that can be job ids."""
        return [i for i in dict.fromkeys(str(i) for i in job_ids) if SCHEDULER_ID_RE.match(i)]


# Scheduler adapters: Slurm ##################################################


class SlurmScheduler(Scheduler):
    """flightjobd's interface to Slurm through its command-line tools."""

    name = "slurm"
    SHARED_POLL = True
    ACCOUNTS = True

    def __init__(self, timeout=20.0, run=run, env=None, job_environment="login"):
        super().__init__(timeout)
        self._run_fn = run
        self.env, self.login = env, job_environment == "login"
        self._accounting = None  # learnt once from scontrol show config
        self._conf = None  # scontrol show config, as read last
        self._clusters = None  # clusters(), asked once
        self.target = None  # on(): the other cluster its commands go to (--clusters)

    @classmethod
    def detect(cls, config):
        """sbatch is on the worker's PATH and sinfo answers."""
        return bool(shutil.which("sbatch", path=config["worker"]["path"])) \
            and cls.from_config(config, None, None).available()

    @classmethod
    def from_config(cls, config, user, state_dir):
        return cls(timeout=config["scheduler"]["timeout"], env=dict(os.environ, **config["scheduler"]["environment"]),
                   job_environment=config["scheduler"]["job_environment"])

    def _run(self, argv, cwd=None, **how):
        """A command of ours, found on our PATH even when it runs in another environment (the job's)."""
        found = shutil.which(argv[0], path=(self.env or os.environ).get("PATH")) if "env" in how else None
        return self._counted(argv[0], self._run_fn, self._aim([found or argv[0]] + argv[1:]), self.timeout,
                             **dict(dict(env=self.env, cwd=cwd), **how))

    def _job_env(self):
        """sbatch's environment and umask, the job's (--export=ALL): the
        user's login shell's with the scheduler's SLURM_* over it, and the
        login umask; none (the worker's) with job_environment "none" (sbatch
        --export=NONE) or for one made without a config's environment."""
        if not self.login or self.env is None:
            return {}
        base = {k: v for k, v in self.env.items() if k in ("HOME", "USER", "LOGNAME", "SHELL", "PATH", "LANG")}
        mine = {k: v for k, v in self.env.items() if k.startswith("SLURM_")}
        return {"env": dict(login_environment(base) or self.env, **mine), "umask": job_umask()}

    def _show(self, *words):
        """sacctmgr show WORDS..., parsable, no header."""
        return self._run(["sacctmgr", "--noheader", "--parsable2", "show"] + list(words))

    def _aim(self, argv):
        aim = ["--clusters=" + self.target] if self.target else []
        return argv if argv[1:2] == aim else argv[:1] + aim + argv[1:]

    def home(self):
        return self.target or self._cluster_config().get("ClusterName") or "(unnamed)"

    def clusters(self):
        """Its own, then the others of its slurmdbd (sacctmgr show clusters)."""
        if self._clusters is None:
            try:
                names = self._show("clusters", "format=cluster") if self.accounting() else ""
            except SchedulerError:  # slurmdbd down: its own alone, until it answers
                return [self.home()]
            self._clusters = list(dict.fromkeys([self.home()] + [n for n in names.split() if CLUSTER_RE.match(n)]))
        return self._clusters

    def on(self, cluster):
        if cluster in (None, self.home()):
            return self
        if cluster not in self.clusters():
            raise NotFound("This service does not serve Slurm cluster %s." % name_text(cluster)[:80])
        twin = copy.copy(self)
        twin.target, twin._clusters = cluster, [cluster]
        return twin

    @staticmethod
    def _parsed(parse, text, command):
        """parse(text), refusing output with nothing parse can read in it:
        garbage is not "no jobs"."""
        rows = parse(text)
        if text.strip() and not rows:
            raise unreadable(command, text)
        return rows

    # -- cluster --------------------------------------------------------

    def available(self):
        try:
            self._run(["sinfo", "--noheader", "--format=%P"])
        except SchedulerError:
            return False
        return True

    def accounting(self):
        """Whether sacct has anything to say (AccountingStorageType)."""
        if self._accounting is None:
            storage = self._cluster_config().get("AccountingStorageType", "accounting_storage/none")
            self._accounting = storage not in ("accounting_storage/none", "(null)", "")
        return self._accounting

    def _cluster_config(self, fresh=False):
        if self._conf is None or fresh:
            self._conf = parse_scontrol(self._run(["scontrol", "show", "config"]))
        return self._conf

    def hidden_jobs(self):
        """None when this account sees every user's jobs; else why it does
        not: PrivateData=jobs (or all) shows others' jobs only to root, the
        SlurmUser and Slurm operators and administrators. Asked afresh."""
        private = self._cluster_config(fresh=True).get("PrivateData", "").lower()
        if "jobs" not in private and "all" not in private:
            return None
        me = pwd.getpwuid(os.getuid()).pw_name
        if os.getuid() == 0 or me == self._conf.get("SlurmUser", "").split("(")[0]:
            return None
        with contextlib.suppress(SchedulerError):
            level = self._show("user", me, "format=adminlevel").strip().lower()
            if level in ("operator", "administrator"):
                return None
        return ("Slurm's PrivateData=%s hides other users' jobs from scheduler.status_user (%s): "
                "set it to the SlurmUser, root or a Slurm operator" % (private, me))

    def read_info(self):
        return {"partitions": parse_sinfo(self._run(["sinfo", "--noheader", "--Node", "--format=" + SINFO_FORMAT]))}

    def associations(self):
        """This user's own associations on its cluster (run in their worker,
        as them): the accounts and QOS they may submit with; None without
        accounting."""
        if not self.accounting():
            return None
        return parse_assoc(self._show("assoc", "cluster=" + self.home(), "user=" + pwd.getpwuid(os.getuid()).pw_name,
                                      "format=account,qos"))

    def associations_why(self):
        return None if self.accounting() else "this cluster keeps no accounting (no slurmdbd): your accounts cannot be listed"

    def job_defaults(self, partition):
        return job_default_words(partition, self._cluster_config())

    def partition_summary(self):
        """Three read-only calls for every user at once (the shared poll makes
        them once per round): sinfo per node, squeue's pending jobs, scontrol's
        partition table."""
        sinfo = self._run(["sinfo", "--noheader", "--Node", "--Format=" + SINFO_FREE_FORMAT])
        squeue = self._run(["squeue", "--noheader", "--states=PENDING", "--Format=Partition:|"])
        scontrol = self._run(["scontrol", "show", "partition", "--oneliner"])
        return self._parsed(lambda text: parse_partition_summary(text, squeue, scontrol), sinfo, "sinfo")

    # -- jobs -----------------------------------------------------------

    def command(self, script_path, options):
        return self._aim(["sbatch", "--parsable"] + ([] if self.login else ["--export=NONE"]) + list(options)
                         + [script_path])

    # sbatch's stderr when slurmctld may have made the job but its answer was lost
    ANSWER_LOST = ("Socket timed out", "Zero Bytes were transmitted")

    def submit(self, script_path, options, cwd):
        """The job id; SchedulerNoAnswer when slurmctld may have the job
        (sbatch timed out, its answer was lost, or exit 0 without an id),
        SchedulerError when it surely has not, SchedulerRefused when it
        said no."""
        argv = self.command(script_path, options)
        try:
            out = self._run(argv, cwd=cwd, **self._job_env())
        except SchedulerError as e:
            with contextlib.suppress(ValueError):
                # it printed a job id, then failed or hung: the job exists, keep it
                job_id = parse_sbatch(e.stdout)
                log.warning("sbatch failed after submitting job %s: %s", job_id, e.message)
                return job_id
            if isinstance(e, SchedulerNoAnswer):
                raise
            words = sbatch_error_message(e.stderr)
            if any(p in e.stderr for p in self.ANSWER_LOST):
                raise SchedulerNoAnswer("sbatch's answer was lost: %s" % words, stderr=e.stderr,
                                        returncode=e.returncode)
            if e.returncode is None or _is_contact_error(e.stderr):
                raise SchedulerError(
                    "could not submit: the Slurm controller did not answer (%s)"
                    % (words or e), stderr=e.stderr, returncode=e.returncode)
            raise SchedulerRefused(words or str(e), stderr=e.stderr, returncode=e.returncode)
        try:
            return parse_sbatch(out)
        except ValueError:  # exit 0: it says it submitted, but not which job
            raise unreadable("sbatch", out)

    def cancel(self, job_id):
        if not self._job_ids([job_id]):
            return  # no job can have that id, as scancel would say; and no option reaches it
        try:
            out = self._run(["scancel", str(job_id)])
        except SchedulerError as e:
            # already finished (or long forgotten): nothing to cancel
            if ("already completing or completed" in e.stderr
                    or "Invalid job id specified" in e.stderr):
                return
            raise
        if out.strip():  # it says nothing when it has done its work
            raise unreadable("scancel", out)

    def _control(self, job_id, make):
        """scontrol make(job_id)... for the job job_id (a checked id):
        SchedulerRefused with Slurm's own words (bounded) when slurmctld
        answers no."""
        if not self._job_ids([job_id]):
            raise NotFound("The scheduler does not know job %s." % job_id)
        try:
            out = self._run(["scontrol"] + make(str(job_id)))
        except SchedulerError as e:
            if isinstance(e, SchedulerNoAnswer) or e.returncode is None or _is_contact_error(e.stderr):
                raise
            words = sbatch_error_message(e.stderr, "scontrol")[:500]
            raise SchedulerRefused(words or e.message, stderr=e.stderr, returncode=e.returncode)
        if out.strip():  # it says nothing when it has done its work
            raise unreadable("scontrol", out)

    def hold(self, job_id):
        self._control(job_id, lambda i: ["hold", i])

    def release(self, job_id):
        self._control(job_id, lambda i: ["release", i])

    def set_time_limit(self, job_id, seconds):
        """Slurm lets a user lower a job's limit, and raise a pending one's
        up to its partition's MaxTime; anything else is refused, in Slurm's
        words and then in ours."""
        limit = "UNLIMITED" if seconds is None else format_duration(seconds)
        try:
            self._control(job_id, lambda i: ["update", "JobId=" + i, "TimeLimit=" + limit])
        except SchedulerRefused as e:
            if "denied" in e.message.lower():
                e.message += (" (Slurm lets you lower a job's time limit, and raise a waiting job's only up to "
                              "its partition's maximum time.)")
            raise

    TELLS_OUTPUTS = True

    def describe(self, job_ids):
        """scontrol show job, as the user, for each (a job taken in, or just
        submitted: few): its paths as Slurm expanded them (not told where
        a padded %5j is left, as scontrol 22.05 leaves it); a job it no
        longer has is left out."""
        out = {}
        for job_id in self._job_ids(job_ids):
            try:
                f = parse_scontrol(self._run(["scontrol", "show", "job", job_id]))
            except SchedulerError as e:
                if "Invalid job id" in e.stderr:
                    continue
                raise
            out[job_id] = {"name": f.get("JobName"), "workdir": f.get("WorkDir"), "command": f.get("Command"), **{
                key: None if "%" in (f.get(word) or "") else f.get(word) for key, word in (("stdout", "StdOut"),
                                                                                         ("stderr", "StdErr"))}}
        return out

    def find_submitted(self, scripts):
        """One squeue call for this user's jobs (slurmctld keeps the script's
        path as the job's command); the lowest id for each script."""
        wanted = set(scripts)
        text = self._run(["squeue", "--noheader", "--states=all", "--user=%d" % os.getuid(),
                          "--Format=ArrayJobID:|,Command:|"])
        found = {}
        for job_id, script in self._parsed(parse_squeue_commands, text, "squeue"):
            if script in wanted and (script not in found or int(job_id) < int(found[script])):
                found[script] = job_id
        return found

    def status(self, job_ids):
        """One squeue call; then, with accounting, at most one sacct call for
        the ids squeue did not list or lists as finished (sacct adds MaxRSS,
        CPU time and who cancelled).  Raises SchedulerError when squeue
        fails or answers garbage, or when sacct does and some id depended
        on it."""
        ids = self._job_ids(job_ids)
        if not ids:
            return {}
        result, owners, _ = self._listed(ids, "--jobs=" + ",".join(ids))
        self._poll_detail(ids, result, owners)
        return result

    def poll(self, followed):
        """_poll of each cluster on its own (squeue -M a,b silently leaves out
        one that is down): followed {uid: [job refs]}, and the answer's ids,
        as refs. Another cluster that fails leaves its ids undecided."""
        answer = ({}, {}, {}, {})
        for cluster in self.clusters():
            twin = self.on(cluster)
            mine = {uid: {ref.partition("@")[0]: ref for ref in map(str, refs) if ref.partition("@")[2] in (
                cluster, "" if twin is self else cluster)} for uid, refs in followed.items()}
            refs = {i: {r for _, r in g} for i, g in itertools.groupby(sorted(  # each ref asked ("5", and "5@home")
                (i, r) for m in mine.values() for i, r in m.items()), lambda p: p[0])}
            try:
                statuses, owners, outside, undecided = twin._poll({uid: list(m) for uid, m in mine.items()})
            except SchedulerError as e:
                if twin is self:
                    raise
                answer[3].update((ref, e.message) for asked in refs.values() for ref in asked)
                continue
            for got, into in ((statuses, answer[0]), (owners, answer[1]), (undecided, answer[3])):
                into.update((ref, v) for i, v in got.items() for ref in refs[i])
            for uid, jobs in outside.items():
                answer[2].setdefault(uid, {}).update((i if twin is self else "%s@%s" % (i, cluster), st) for i, st in jobs.items())
        return answer

    def _poll(self, followed):
        """The shared status poll's round: followed = {uid: [job ids flightjobd
        follows for that user]}. One squeue of those users' jobs (by uid: so it
        also lists their jobs submitted outside flightjobd), then at most one
        sacct. Returns (statuses {id: status}, owners {id: uid}, outside
        {uid: {job id: status}} of each user's unfinished jobs that user's
        ids do not name, undecided {id: why}: the ids only sacct could tell
        of when it failed, left out for this round -- one user's ids never
        fail the round for others). Raises SchedulerError when squeue fails."""
        followed = {int(uid): set(self._job_ids(ids)) for uid, ids in followed.items()}
        ids = self._job_ids(i for mine in followed.values() for i in sorted(mine))
        if not followed:
            return {}, {}, {}, {}
        result, owners, listed = self._listed(ids, "--users=" + ",".join(str(u) for u in sorted(followed)))
        others = {}
        for row in listed:
            if row["uid"] in followed and not ({row["parent"], row["id"], row["raw_id"]} & followed[row["uid"]]):
                others.setdefault((row["uid"], row["parent"]), []).append(row)
        outside = {}
        for (uid, parent), rows in others.items():
            st = self._combine(parent, rows)
            if st["state"] in UNFINISHED:
                outside.setdefault(uid, {})[parent] = st
        undecided = {}
        try:
            self._poll_detail(ids, result, owners)
        except SchedulerError as e:
            undecided = {i: _cut(e.message, 300) for i in ids if i not in result}
        for i in [i for i in result if i not in followed.get(owners.get(i), ())]:  # not its owner's: not found
            del result[i], owners[i]
        return result, owners, outside, undecided

    def _listed(self, ids, select):
        """One squeue (select: --jobs= or --users=): (statuses of the ids it
        lists, their owners, every row)."""
        try:
            text = self._run(["squeue", "--noheader", "--array", "--states=all", select,
                              "--Format=" + SQUEUE_FORMAT])
        except SchedulerError as e:
            # squeue given one unknown id exits 1 with this; it means "none"
            if "Invalid job id specified" in e.stderr:
                text = ""
            else:
                raise
        listed = self._parsed(parse_squeue, text, "squeue")
        found = self._collect(ids, listed)
        # sacct's record of a job cancelled while pending says uid 0 until
        # slurmdbd completes it: squeue's uid is the owner's
        return ({i: self._combine(i, rows) for i, rows in found.items()},
                {i: rows[0]["uid"] for i, rows in found.items()}, listed)

    def _poll_detail(self, ids, result, owners):
        """sacct's part of a status round: adds to result (and owners)."""
        if not self.accounting():
            return
        ask = [i for i in ids if i not in result or result[i]["state"] in FINAL_STATES]
        if not ask:
            return
        try:
            text = self._run(["sacct", "--noheader", "--parsable2",
                              "--jobs=" + ",".join(ask), "--format=" + SACCT_FORMAT])
            rows = self._parsed(parse_sacct, text, "sacct")
        except SchedulerError:
            if any(i not in result for i in ask):
                raise
            for i in ask:  # sacct was only to add detail: asked again
                result[i] = self._pending_detail(result[i])
            return
        found = self._collect(ask, rows)
        for i in ask:
            old, mine = result.get(i), found.get(i)
            if not mine:  # sacct does not have it yet
                if old is not None:
                    result[i] = self._pending_detail(old)
                continue
            better = self._combine(i, mine, owners.get(i))
            if not self._settled(mine):
                result[i] = self._pending_detail(better if old is None else old)
                owners.setdefault(i, mine[0]["uid"])
            elif old is None:
                result[i] = dict(better, detail_pending=False)
                owners[i] = mine[0]["uid"]
            elif len(better.get("tasks", [])) >= len(old.get("tasks", [])):
                # sacct agrees the job is over: take its detail (MaxRSS, CPU
                # time, who cancelled), filling gaps such as the time limit
                # ("Partition_Limit" in sacct) from squeue.
                for key, value in old.items():
                    if better.get(key) is None and key not in ("started_at", "elapsed_s"):
                        better[key] = value
                if better["state"] == "FAILED" and better["reason"] == "Signal" and _over_memory(
                        better.get("signal"), better.get("max_rss_mb"), better.get("requested_mem_mb")):
                    # sacct's MaxRSS with squeue's request (seen: sacct's ReqMem not in yet)
                    better.update(reason="OutOfMemory", reason_text="ran out of memory")
                result[i] = dict(better, detail_pending=False)
            # else sacct lags behind the controller (an array's tasks not all
            # recorded yet, the parent's row standing for its last task):
            # keep squeue's word

    # slurmdbd records a job's end a moment after slurmctld does (seen: the
    # job's row final while its batch step's row, with MaxRSS and CPU time,
    # still says RUNNING; with 100 jobs ending at once, many seconds).  A job
    # squeue calls final is final at once; until sacct has its whole record
    # its status says detail_pending, and it is asked again, so that the
    # reason the record tells (memory, who cancelled) and its figures come
    # when they are there; but not past this many seconds after its end.
    ACCOUNTING_LAG = 60

    @staticmethod
    def _settled(rows):
        """Whether sacct's rows of one job hold its whole record: final, and
        every step of a job that started has ended with its figures (MaxRSS:
        none where JobAcctGatherType=none, which then waits ACCOUNTING_LAG)."""
        return bool(rows) and all(
            STATE_MAP.get(r["raw_state"]) in FINAL_STATES and (
                r["steps_done"] and r["max_rss_mb"] is not None or not _status(r)["started_at"])
            for r in rows)

    def _pending_detail(self, status):
        """A final status whose sacct record is not whole yet: marked
        detail_pending while its end is recent."""
        ended = parse_iso(status.get("ended_at"))
        recent = ended is not None and _now() - ended <= self.ACCOUNTING_LAG
        return dict(status, detail_pending=bool(
            status["state"] in FINAL_STATES and status.get("started_at") and recent))

    @staticmethod
    def _collect(ids, rows):
        """Group parsed rows under the requested ids (parent, raw or task id)."""
        wanted = set(ids)
        found = {}
        for row in rows:
            for key in (row["parent"], row["id"], row["raw_id"]):
                if key in wanted:
                    found.setdefault(key, []).append(row)
                    break
        return found

    @staticmethod
    def _combine(job_id, rows, owner=None):
        """The status of job_id from its rows: an array's lists its own tasks only, never another's."""
        own = next((r["parent"] for r in rows if job_id in (r["parent"], r["id"])), rows[0]["parent"])
        tasks = [r for r in rows if r["task"] is not None and r["id"] != job_id and r["parent"] == own]
        return _fitted(rollup([(r["id"], _status(r, owner)) for r in tasks]) if tasks else _status(rows[0], owner))


# Scheduler adapters: local ##################################################


def machine_memory_mb():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    return 0


class LocalScheduler(Scheduler):
    """Runs jobs as the user's own detached processes on this machine, with
    Slurm's directives as far as one machine allows. Each job has a
    directory local/N with spec.json (what to run) and status.json (written
    by the job's supervisor, so a job that ends while the daemon is down
    still has its exact state)."""

    name = "local"
    PLACE = "on machine %s"
    QUEUES = False
    MEMORY_WHAT = "the peak of its largest single process (all the local scheduler measures)"
    IGNORED_OPTIONS = {"partition": "the local scheduler has one partition, 'local'",
                       "account": "accounts do not apply to the local scheduler",
                       "mem": "memory is not limited by the local scheduler",
                       "gpus": "GPUs are not allocated by the local scheduler",
                       "exclusive": "the local scheduler does not reserve the machine",
                       "mail-user": "the local scheduler sends no email",
                       "mail-type": "the local scheduler sends no email"}
    # what it does with options: the time limit, memory and CPUs checked, arrays, one dependency, where it
    # runs and writes (job_outputs), one node and task (ignored_options says otherwise)
    HONOURED = ("time", "mem", "cpus-per-task", "array", "dependency", "chdir", "output", "error", "job-name",
                "nodes", "ntasks")

    def __init__(self, state_dir, python, user, timeout=20):
        super().__init__(timeout)
        self.root = os.path.join(state_dir, "local")
        self.python = python
        self.user = user

    @classmethod
    def detect(cls, config):
        return True  # the fallback: it runs on any Linux machine

    def home(self):
        return os.uname().nodename

    @classmethod
    def from_config(cls, config, user, state_dir):
        return cls(state_dir, config["worker"]["python"] or sys.executable, user,
                   config["scheduler"]["timeout"])

    def available(self):
        return True

    def read_info(self):
        return {"partitions": [{"name": "local", "default": True, "max_time": None,
                                "nodes": 1, "cpus": os.cpu_count() or 1,
                                "memory_mb": machine_memory_mb(), "state": "up"}]}

    def partition_summary(self):
        """The machine: its cores, those the load average leaves idle; one
        node, free when nothing runs; jobs never wait here."""
        cpus = os.cpu_count() or 1
        idle = max(0, cpus - int(round(os.getloadavg()[0])))
        return [dict({key: None for key in ACCESS_RULES}, name="local", default=True, state="up",
                     cpus_free=idle, cpus_total=cpus, nodes_free=int(idle == cpus), nodes_total=1,
                     gpus_free=0, gpus_total=0, waiting=0, root_only=False)]

    def command(self, script_path, options):
        return ["bash", script_path]

    def ignored_options(self, script, options):
        opts = effective_options(script, options)
        ignored = ["%s (--%s%s)" % (why, k, "" if opts[k] is True else "=%s" % opts[k])
                   for k, why in self.IGNORED_OPTIONS.items() if k in opts and opts[k] not in ("local", False)]
        for key in ("nodes", "ntasks"):
            if str(opts.get(key, "1")) not in ("1", "1-1"):
                ignored.append("the local scheduler runs one task on one node (--%s=%s)" % (key, opts[key]))
        given = dict(parse_options(options))  # a submit's own options (extra ones among them) it has no use for
        return ignored + ["the local scheduler does not use it (%s)" % o for o in options if o.startswith("--")
                          and o[2:].partition("=")[0] in set(given) - set(self.IGNORED_OPTIONS) - set(self.HONOURED)]

    def submit(self, script_path, options, cwd):
        with open(script_path, encoding="utf-8") as f:
            script = f.read()
        opts = effective_options(script, options)
        limit = None
        if opts.get("time") not in (None, True):
            try:
                limit = time_limit_seconds(opts["time"])
            except ValueError:
                raise SchedulerRefused("Invalid time limit specification: %s" % opts["time"])
        if opts.get("mem") not in (None, True):
            wanted = parse_mem(str(opts["mem"]).upper().rstrip("B"))
            if wanted is None:
                raise SchedulerRefused("Invalid --mem specification: %s" % opts["mem"])
            if wanted > machine_memory_mb():
                raise SchedulerRefused(
                    "Memory specification can not be satisfied: asked for %dM, "
                    "this machine has %dM." % (wanted, machine_memory_mb()))
        cpus = opts.get("cpus-per-task", "1")
        if not str(cpus).isdigit() or int(cpus) > (os.cpu_count() or 1):
            raise SchedulerRefused("Requested node configuration is not available: "
                                   "%s CPUs per task, this machine has %d."
                                   % (cpus, os.cpu_count() or 1))
        tasks = None
        if opts.get("array") not in (None, True):
            try:
                tasks = array_tasks(opts["array"])
            except ValueError as e:
                raise SchedulerRefused("Invalid job array specification: %s" % e)
        dependency = None
        if opts.get("dependency") not in (None, True):
            m = DEPENDENCY_RE.match(str(opts["dependency"]))
            if not m:
                raise SchedulerRefused("Job dependency problem: the local scheduler honours one "
                                       "afterok, afterany or afternotok dependency on one job, "
                                       "not %s" % opts["dependency"])
            if not os.path.isfile(os.path.join(self.root, m.group(2), "spec.json")):
                raise SchedulerRefused("Job dependency problem: there is no job %s" % m.group(2))
            dependency = {"type": m.group(1), "id": m.group(2)}
        os.makedirs(self.root, 0o700, exist_ok=True)
        with locked(os.path.join(self.root, ".lock")):
            counter = os.path.join(self.root, "next_id")
            try:
                with open(counter) as f:
                    number = int(f.read().strip() or 1)
            except (OSError, ValueError):
                number = 1
            while os.path.exists(os.path.join(self.root, str(number))):
                number += 1
            atomic_write(counter, "%d\n" % (number + 1))
            jobdir = os.path.join(self.root, str(number))
            os.mkdir(jobdir, 0o700)
        with open(os.path.join(jobdir, "script.sh"), "w", encoding="utf-8") as f:
            f.write(script)
        home = os.path.expanduser("~")
        spec = {"format": FORMAT, "id": str(number), "user": self.user, "cwd": cwd,
                "time_limit": limit, "tasks": tasks, "cpus": int(cpus), "dependency": dependency,
                "outputs": [job_outputs(script, options, number, self.user, home, [t] if tasks else None)
                            for t in (tasks or [None])]}
        write_json(os.path.join(jobdir, "spec.json"), spec)
        self._note_call("submit")
        subprocess.Popen([self.python, os.path.abspath(__file__), "--local-job", jobdir], stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=home, start_new_session=True,
                         close_fds=True, preexec_fn=unbound_memory)
        return str(number)

    def status(self, job_ids):
        """Each job's status.json as its supervisor last wrote it, less the
        supervisor's own fields."""
        self._note_call("status")
        found = {}
        for job_id in self._job_ids(job_ids):
            if "_" in job_id:
                continue  # a task is reported within its job's status
            jobdir = os.path.join(self.root, job_id)
            status = local_status(jobdir)
            if status is None or status["state"] == "PENDING" and not status.get("started_at"):
                # not started (its supervisor may not have written yet): why it waits and its limit now
                with contextlib.suppress(OSError, ValueError):
                    spec = read_json(os.path.join(jobdir, "spec.json"))
                    why = local_waiting(jobdir, spec) or (("Starting", "starting") if status is None else ("None", ""))
                    status = dict(status or {"state": "PENDING", "raw_state": "PENDING"}, reason=why[0],
                                  reason_text=why[1], time_limit=format_duration(local_time_limit(jobdir, spec)))
            if status is None:
                continue
            if status["state"] in UNFINISHED and status.get("tasks"):
                # a task cancelled before its turn: the supervisor skips it when it comes
                with contextlib.suppress(OSError):
                    marked = {n[len("cancel-"):] for n in os.listdir(jobdir) if n.startswith("cancel-")}
                    for t in status["tasks"]:
                        if t["state"] == "PENDING" and t["id"].rpartition("_")[2] in marked:
                            t.update(state="CANCELLED", raw_state="CANCELLED", reason_text="cancelled by the user")
            found[job_id] = {k: v for k, v in status.items() if k not in ("format", "supervisor", "pgid")}
        return found

    def _jobdir(self, job_id):
        """(job directory, spec, task or None) of a job id or an array task
        id ("5_3"); NotFound for one the scheduler does not know."""
        job_id = str(job_id)
        if not SCHEDULER_ID_RE.match(job_id):
            raise NotFound("The scheduler does not know job %s." % job_id)
        number, _, task = job_id.partition("_")
        jobdir = os.path.join(self.root, number)
        try:
            spec = read_json(os.path.join(jobdir, "spec.json"))
        except (OSError, ValueError):
            raise NotFound("The scheduler does not know job %s." % job_id)
        if task and int(task) not in (spec.get("tasks") or []):
            raise NotFound("Job %s has no task %s." % (number, task))
        return jobdir, spec, task or None

    def _pending(self, jobdir, job_id, change):
        """Under the job's lock, refused unless it has not started (Slurm's
        words): change() (status() reads why it waits from the markers)."""
        with locked(os.path.join(jobdir, ".lock")):
            status = local_status(jobdir)
            if status is not None and (status["state"] != "PENDING" or status.get("started_at")):
                raise SchedulerRefused("Job is no longer pending execution for job %s" % job_id)
            change()

    def hold(self, job_id):
        self._note_call("hold")
        jobdir, _, _ = self._jobdir(job_id)
        self._pending(jobdir, job_id, lambda: atomic_write(os.path.join(jobdir, "hold"), now_iso()))

    def release(self, job_id):
        self._note_call("release")
        jobdir, _, _ = self._jobdir(job_id)

        def release():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(jobdir, "hold"))
        self._pending(jobdir, job_id, release)

    def set_time_limit(self, job_id, seconds):
        """While it waits, as Slurm lets a user within the partition's
        MaxTime (the local scheduler has none): lowered or raised."""
        self._note_call("time_limit")
        jobdir, spec, _ = self._jobdir(job_id)
        self._pending(jobdir, job_id, lambda: atomic_write(os.path.join(jobdir, "time_limit"), "%d\n" % seconds
                                                           if seconds is not None else ""))

    def cancel(self, job_id):
        self._note_call("cancel")
        jobdir, _, task = self._jobdir(job_id)
        if task is not None:  # the supervisor stops that task (or skips it) within a moment
            atomic_write(os.path.join(jobdir, "cancel-%s" % task), now_iso())
            return
        atomic_write(os.path.join(jobdir, "cancel"), now_iso())
        try:
            status = read_json(os.path.join(jobdir, "status.json"))
        except (OSError, ValueError):
            return  # not started yet: the supervisor sees the marker first
        if status.get("pgid") and status["state"] in UNFINISHED:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(status["pgid"], signal.SIGTERM)


# scheduler.type -> adapter; "auto" takes the first one whose detect() agrees
SCHEDULERS = {"slurm": SlurmScheduler, "local": LocalScheduler}


def scheduler_class(config):
    """The adapter scheduler.type names (Scheduler, which can do nothing, for
    "auto" before serve() resolves it)."""
    return SCHEDULERS.get(config["scheduler"]["type"], Scheduler)


def make_scheduler(config, user, state_dir):
    """The scheduler of user's worker, as scheduler.type says."""
    kind = config["scheduler"]["type"]
    if kind == "auto":  # the first usable here
        kind = next(name for name, cls in SCHEDULERS.items() if cls.detect(config))
    return SCHEDULERS[kind].from_config(config, user, state_dir)


# Store: shared plumbing of its parts (worker side) ##########################


def _text(value):
    return isinstance(value, str)


def _whole(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _texts(value):
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _time(value):
    try:
        return isinstance(value, str) and parse_iso(value) is not None
    except ValueError:
        return False


def _state(value):
    return isinstance(value, str) and value in STATES


def _tasks(value):
    return isinstance(value, list) and all(isinstance(t, dict) and _state(t.get("state")) and _text(t.get("id"))
                                           for t in value)


def _or_none(check):
    return lambda value: value is None or check(value)


# What the fields of a metadata file must be for the pages and routes that
# show them (a file edited by hand may hold anything): field -> check of its
# value (None when missing). Any other makes the item broken, with the reason
# (a job's: JOB_META, from JOB_FIELDS).
SCRIPT_META = {"name": _text, "template_id": _text, "template_name": _or_none(_text),
               "answers": lambda v: isinstance(v, dict), "created_at": _time, "updated_at": _time,
               "version": lambda v: _whole(v) and v > 0,
               "rendered_sha256": _or_none(lambda v: isinstance(v, str) and re.match(r"^[0-9a-f]{64}$", v)),
               "origin": _or_none(lambda v: isinstance(v, dict) and _or_none(_text)(v.get("path"))
                                                     and _or_none(_text)(v.get("file"))
                                                     and isinstance(v.get("in_place"), bool)
                                                     and (v["path"] is not None or not v["in_place"]))}


def _meta_or_broken(path, fields, formats=(FORMAT,)):
    """The metadata dict at path (an item's directory/meta.json; its id is
    the directory's), or raise ValueError saying why it cannot be used: it
    cannot be read, is not JSON, has another format or a field that is not
    what `fields` (SCRIPT_META, JOB_META) says; formats: those it reads."""
    try:
        meta = read_json(path)
    except FileNotFoundError:
        raise ValueError("meta.json is missing")
    except UnusableFile as e:  # a FIFO, a device, a sparse file of any size
        raise ValueError(str(e))
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise ValueError("meta.json cannot be read: %s" % e)
    if not isinstance(meta, dict):
        raise ValueError("meta.json is not an object")
    if meta.get("format") not in formats:
        raise ValueError("meta.json has format %r, this version reads %s"
                         % (meta.get("format"), " or ".join(map(str, formats))))
    bad = sorted(key for key, check in fields.items() if not check(meta.get(key)))
    if bad:
        raise ValueError("meta.json: %s %s not what this version reads"
                         % (", ".join(bad), "is" if len(bad) == 1 else "are"))
    meta["id"] = os.path.basename(os.path.dirname(path))
    return meta


# Searching and sorting lists (of jobs: see the job index under "Store: job records")

MAX_SEARCH = 200  # the longest search text (q) of a list
DATE_RE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")


SCRIPT_SORTS = {"updated": (lambda s: s.get("updated_at"), True), "created": (lambda s: s.get("created_at"), True),
                "name": (lambda s: (s.get("name") or "").casefold(), False),
                "template": (lambda s: (s.get("template_name") or s.get("template_id") or "").casefold(), False)}


def list_query(q, sort, order, sorts, default):
    """(search text casefolded or None, sort, descending) of a list's query
    parameters q, sort and order; BadRequest naming the bad one."""
    if q in (None, ""):
        q = None
    elif not isinstance(q, str) or len(q) > MAX_SEARCH or CONTROL_RE.search(q):
        raise BadRequest("q: the search is one line of at most %d characters." % MAX_SEARCH,
                         {"q": "one line of at most %d characters" % MAX_SEARCH})
    sort = sort or default
    if sort not in sorts:
        raise BadRequest("sort: there is no column %r to sort by; use one of %s."
                         % (str(sort)[:40], ", ".join(sorts)), {"sort": "unknown column"})
    if order not in (None, "", "asc", "desc"):
        raise BadRequest("order: use asc or desc.", {"order": "asc or desc"})
    return (q.strip().casefold() or None if q else None), sort, order == "desc" if order else sorts[sort][1]


def list_date(value, name):
    """A date query parameter (YYYY-MM-DD, UTC) or None; BadRequest naming it."""
    if value in (None, ""):
        return None
    try:
        if not isinstance(value, str) or not DATE_RE.match(value):
            raise ValueError
        datetime.date(int(value[:4]), int(value[5:7]), int(value[8:]))
    except ValueError:
        raise BadRequest("%s: a date is YYYY-MM-DD (UTC), such as 2024-05-31." % name,
                         {name: "not a date (YYYY-MM-DD)"})
    return value


def sorted_by(items, sorts, sort, descending, value=lambda item: item):
    """items sorted by the column `sort` of sorts (value(item): what its
    key reads), those without one last; equal ones keep their order. No
    (key, item) pair is made for each item: CPython keeps up to 2,000 freed
    tuples for reuse, and 10,000 made at once would leave those scattered
    through memory that could otherwise be given back."""
    key = sorts[sort][0]
    keys = [key(value(item)) for item in items]
    have = [i for i, k in enumerate(keys) if k is not None]
    have.sort(key=keys.__getitem__, reverse=descending)
    return [items[i] for i in have] + [item for item, k in zip(items, keys) if k is None]


# atomic_write's temporary file, left behind when the writer was killed
TMP_RE = re.compile(r"^\..+\.[0-9a-f]{8}\.tmp$")


OPERATIONS = {}  # worker operation (what the routes send) -> the Store method that does it
WRITING = set()  # the operations that change the user's files (the others only read)


def operation(name, writes=False):
    """Declare the method below the worker operation `name` (of a Store
    part, or of StatusSource); writes: it changes the user's files (so a
    failure says nothing was written)."""
    def declare(method):
        OPERATIONS[name] = method
        if writes:
            WRITING.add(name)
        return method
    return declare


class Performer:
    """What a worker serves: each operation a method declared with @operation."""

    has_unfinished = None  # what the current operation found (see perform)

    def perform(self, op, args):
        """Do one operation of this object's class: (its answer, whether the
        user has unfinished jobs as it found them, None when it did not look)."""
        method = OPERATIONS.get(op)
        if method is None or getattr(type(self), method.__name__, None) is not method:
            raise BadRequest("No such worker operation: %s." % op)
        self.has_unfinished = None
        return method(self, **args), self.has_unfinished


class StorePart(Performer):
    """What every part of the Store shares: its state, the paths in the
    user's state directory, the lock, atomic item directories, the sweep.
    The Store lives in the user's worker and runs as the user: every path
    here is inside the user's state directory or reached with the user's
    own permissions."""

    def __init__(self, config, user):
        """The state every part shares; each part with state of its own sets
        it in its own __init__ (cooperatively, through super())."""
        self.config = config
        self.user = user
        self.home = os.path.expanduser("~")
        self.root = os.path.expanduser(config["storage"]["state_dir"])
        self.scripts_dir = os.path.join(self.root, "scripts")
        self.jobs_dir = os.path.join(self.root, "jobs")
        self.lock_path = os.path.join(self.root, ".lock")
        self.scheduler = make_scheduler(config, user, self.root)
        self.notice = None  # the scheduler's last failure, shown on pages
        self._sweep()

    def _sweep(self, age=3600):
        """Remove what a crash left behind: half-made (.new-*) and
        half-removed (.gone-*) item directories older than `age` seconds.
        They are never listed; this only gives the space back. At worker
        start, without the lock: `age` is what keeps a write in progress on
        another login node safe. (The parts sweep inside their items too:
        scripts here, jobs each time their record is written.)"""
        for parent in (self.scripts_dir, self.jobs_dir):
            with contextlib.suppress(OSError):
                for entry in os.scandir(parent):
                    if entry.name.startswith((".new-", ".gone-")) and \
                            time.time() - entry.stat(follow_symlinks=False).st_mtime > age:
                        _remove_tree(entry.path)
        self._sweep_item(self.root, age)  # an interrupted write of INDEX_FILE

    def _sweep_item(self, path, age=None, unreferenced=None):
        """Remove what a crash left inside one item directory: atomic_write's
        temporary files, and the names unreferenced(name) says meta.json no
        longer refers to. Only those older than `age` seconds; age None
        (every one) only while holding the lock, when no write can be in
        progress."""
        now = time.time()
        with contextlib.suppress(OSError), os.scandir(path) as entries:
            for entry in entries:
                if (TMP_RE.match(entry.name) or (unreferenced and unreferenced(entry.name))) \
                        and not entry.is_dir(follow_symlinks=False) \
                        and (age is None or now - entry.stat(follow_symlinks=False).st_mtime > age):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(entry.path)

    @contextlib.contextmanager
    def _writing(self):
        """The lock for a read-modify-write (the state directories made
        first), with disk errors made clear."""
        try:
            for d in (self.root, self.scripts_dir, self.jobs_dir):
                os.makedirs(d, 0o700, exist_ok=True)
        except OSError as e:
            raise disk_error(e)
        try:
            with locked(self.lock_path):
                yield
        except OSError as e:
            raise disk_error(e)

    def _create_dir(self, parent, make):
        """Make a new item directory atomically: written in a hidden
        directory, then renamed into place. make(id) gives (meta, name ->
        text): the meta goes to meta.json and is returned."""
        item_id = new_id()
        tmp = os.path.join(parent, ".new-%s" % item_id)
        with self._writing():
            os.mkdir(tmp, 0o700)
            try:
                meta, files = make(item_id)
                for name, text in files.items():
                    atomic_write(os.path.join(tmp, name), text)
                write_json(os.path.join(tmp, "meta.json"), meta)
                fault("create.before_rename")
                os.rename(tmp, os.path.join(parent, item_id))
                fault("create.after_rename")
                fsync_dir(parent)
            except BaseException:
                _remove_tree(tmp)
                raise
        return meta

    def _remove_dir(self, path):
        """Remove an item directory: renamed away first, so it is gone at once."""
        path = path.rstrip("/")
        gone = os.path.join(os.path.dirname(path), ".gone-%s" % secrets.token_hex(6))
        os.rename(path, gone)
        fault("remove.after_rename")
        _remove_tree(gone)

    def _item_ids(self, parent):
        """The ids of the item directories in parent (scripts_dir or jobs_dir)."""
        try:
            return [entry.name for entry in os.scandir(parent) if ID_RE.match(entry.name)]
        except FileNotFoundError:
            return []

    def _read_text(self, path, missing_ok=True):
        """A script's or notes' text ("" when missing and missing_ok, else
        FileNotFoundError). Refused (409) when it is not a regular file (a
        FIFO would block, a device never end) or is larger than
        storage.max_script_bytes (a sparse file may be any size): never more
        than that is read."""
        try:
            return read_file(path, self.config["storage"]["max_script_bytes"]).decode("utf-8", "replace")
        except FileNotFoundError:
            if not missing_ok:
                raise
            return ""
        except UnusableFile as e:
            raise Conflict("%s (storage.max_script_bytes), so it cannot be used here; shorten it outside "
                           "the job manager." % e if e.too_large else "%s, so it cannot be used." % e)

    def shared_poll(self):
        """Whether the daemon's shared status poll brings this user's jobs up
        to date (multi-user mode, scheduler.shared_poll): then a page never
        waits on the scheduler (for the local scheduler the poll has the
        worker refresh on its schedule, `own`)."""
        return self.config["server"]["multi_user"] and self.config["scheduler"]["shared_poll"]

    def _scheduler_state(self):
        return {"type": self.scheduler.name, "ok": self.notice is None, "message": self.notice,
                "queues": self.scheduler.QUEUES}


# Store: templates catalogue #################################################


def toml_value(value):
    """A value of a template's question as TOML: text, whole and real
    numbers, yes/no, lists and (inline) tables of them."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):  # a basic string: quote, backslash and control characters escaped
        return '"%s"' % re.sub(r'["\\\x00-\x1f\x7f]', lambda m: "\\u%04x" % ord(m.group()), value)
    if isinstance(value, list):
        return "[%s]" % ", ".join(toml_value(v) for v in value)
    if isinstance(value, dict):
        return "{ %s }" % ", ".join("%s = %s" % (toml_value(k), toml_value(v)) for k, v in value.items())
    raise TypeError("no TOML for %r" % type(value).__name__)


def toml_template(fields, tables):
    """A template.toml: top-level fields, then (table name, [table]) as
    arrays of tables ([[question]], [[submission_question]])."""
    lines = ["%s = %s" % (key, toml_value(v)) for key, v in fields.items()]
    for name, items in tables:
        for item in items:
            lines += ["", "[[%s]]" % name] + ["%s = %s" % (key, toml_value(v))
                                               for key, v in item.items() if v is not None]
    return "\n".join(lines) + "\n"


STPL_LINE_RE = re.compile(r"(?m)^([ \t]*)(\\?<?%)")  # a line SimpleTemplate reads as code or an escape


def literal_template(text):
    """A script template that renders to exactly `text` whatever the
    answers: each "{{" and each line start SimpleTemplate would read
    (%, <%, and their escapes \\%, \\<%) written as an inline string, and a
    final backslash-newline (which it would drop) too."""
    def quoted(chars):
        return "{{%s}}" % json.dumps(chars)
    text = text.replace("{{", quoted("{{"))
    text = STPL_LINE_RE.sub(lambda m: m.group(1) + quoted(m.group(2)[0]) + m.group(2)[1:], text)
    if text.endswith("\\\n") or not text:  # SimpleTemplate refuses an empty template
        text = text[:-1] + quoted("\n" if text else "")
    return text


class TemplatesPart(StorePart):
    """The job-script templates this user may use: shipped, site and their own."""

    _templates = (None, None)  # (the template directories' signature, (found, problems))
    _summary = (-1e9, None)  # (when, the scheduler's partition summary) when the worker asks itself
    _assoc = (-1e9, None)  # (when, the user's accounts and QOS) for partitions' access rules

    def templates(self):
        """(id -> template, problems), re-read when a file changes."""
        entries = []  # (entry, source), a later directory's after an earlier one's
        dirs = [(os.path.join(HERE, "share", "job-templates"), "shipped")]
        dirs += [(d, "site") for d in self.config["templates"]["site_dirs"]]
        for directory, source in dirs + [(os.path.expanduser(self.config["storage"]["user_templates"]), "user")]:
            with contextlib.suppress(OSError):
                entries += [(entry, source) for entry in sorted(os.scandir(directory), key=lambda e: e.name)]
        signature = []
        for entry, _ in entries:
            for name in ("template.toml", "script.sh", "notes.md", ""):
                with contextlib.suppress(OSError):
                    signature.append((entry.path, name, os.stat(os.path.join(entry.path, name)).st_mtime_ns))
        if self._templates[0] == signature:
            return self._templates[1]
        found, problems = {}, []
        for entry, source in entries:
            if entry.name.startswith(".") or not entry.is_dir():
                continue
            try:
                found[entry.name] = load_template(entry.path, source)
                problems = [p for p in problems if p["id"] != entry.name]
            except TemplateProblem as e:
                log.warning("template %s left out: %s", entry.path, e)
                problems.append({"id": entry.name, "path": entry.path, "source": source,
                                 "error": str(e)})
        self._templates = (signature, (found, problems))
        return found, problems

    def _offered(self, t):
        """Whether the site offers template t (templates.hide names shipped
        and site ones; a user's own is always offered)."""
        return t["source"] == "user" or t["id"] not in self.config["templates"]["hide"]

    def _summary_of(self, t, view):
        """template_summary(t) with "unavailable": why it cannot run here
        (missing_needs on the partitions of view), or None."""
        return dict(template_summary(t), unavailable=missing_needs(t, view and view["partitions"]))

    @operation("templates.list")
    def templates_list(self, cluster=None):
        """The templates offered, templates.order's first; each with why it
        cannot run here when the cluster lacks what it needs (cluster: the
        shared poll's partition summary, see _partition_view)."""
        found, problems = self.templates()
        order = {tid: n for n, tid in enumerate(self.config["templates"]["order"])}
        items = sorted((t for t in found.values() if self._offered(t)),
                       key=lambda t: (order.get(t["id"], len(order)), t["priority"], t["name"].lower()))
        view = self._partition_view(cluster) if any(t["needs"] for t in items) else None
        summaries = [self._summary_of(t, view) for t in items]
        summaries.sort(key=lambda t: t["unavailable"] is not None)  # stable: those that can run here first
        return {"templates": summaries, "problems": problems}

    def _template(self, template_id):
        found, _ = self.templates()
        if not isinstance(template_id, str) or template_id not in found or not self._offered(found[template_id]):
            raise NotFound("No such template.")
        return found[template_id]

    @operation("templates.get")
    def template_get(self, id, cluster=None):
        t = self._template(id)
        out = self._summary_of(t, self._partition_view(cluster) if t["needs"] else None)
        out.update(questions=self._live_questions(t["questions"]),
                   submission_questions=self._live_questions(t["submission_questions"]),
                   notes=t["notes"])
        return out

    @operation("templates.check")
    def template_check(self, id, answers=None):
        """{"errors": question id -> message} of answers to a template's
        questions, as creating a script would find them ({} when none):
        for a form asked step by step, before its Next."""
        t = self._template(id)
        try:
            check_answers(t["questions"], answers, self.home)
        except Invalid as e:
            if not e.fields:  # not answers at all
                raise
            return {"errors": e.fields}
        return {"errors": {}}

    def _info(self):
        """The scheduler's info(), cached 30 s (Slurm's sinfo + sacctmgr take ~190 ms)."""
        at, info = self.scheduler.last_info
        if info is None or time.monotonic() - at > 30:
            try:
                info = self.scheduler.info()
                self.notice = None
            except SchedulerError as e:
                self.notice = e.message
                info = {"partitions": []}
        return info

    def _associations(self):
        """The scheduler's associations() of this user, cached 30 s; None
        when it cannot tell (then accounts and QOS rules are Slurm's to judge)."""
        at, assoc = self._assoc
        if time.monotonic() - at > 30:
            try:
                assoc = self.scheduler.associations()
            except SchedulerError as e:
                log.warning("associations: %s", e.message)
                assoc = None
            self._assoc = (time.monotonic(), assoc)
        return assoc

    def _partition_view(self, cluster=None):
        """{"partitions": those of the scheduler's partition summary this user
        may use (AllowGroups, AllowAccounts, AllowQos, DenyAccounts, DenyQos,
        RootOnly), "at": when it was made, "shared": whether it is the shared
        poll's}, or None when not known. In multi-user mode with Slurm the
        daemon hands it (cluster: the shared poll's summary, or None while it
        has none yet: nothing is filtered then, and Slurm judges a submit):
        no scheduler call per user; else the worker asks itself, at most
        every 30 s. The user's groups are this process's (the worker runs
        with them); their accounts and QOS are from associations(), asked
        only when some partition has a rule on them."""
        shared = self.shared_poll() and self.scheduler.SHARED_POLL
        if shared:
            summary = cluster
        else:
            at, summary = self._summary
            if summary is None or time.monotonic() - at > 30:
                try:
                    found = self.scheduler.partition_summary()
                    summary = None if found is None else {"partitions": found, "at": now_iso()}
                except SchedulerError as e:
                    log.warning("partition summary: %s", e.message)
                    summary = None
                self._summary = (time.monotonic(), summary)
        if not isinstance(summary, dict) or not isinstance(summary.get("partitions"), list):
            return None
        groups = []
        for gid in set(os.getgroups()) | {os.getgid()}:
            with contextlib.suppress(KeyError):
                groups.append(grp.getgrgid(gid).gr_name)
        ruled = any(isinstance(p, dict) and any(p.get(k) for k in ACCESS_RULES if k != "allow_groups")
                    for p in summary["partitions"])
        assoc = self._associations() if ruled else None  # accounts and QOS matter only then
        return {"partitions": [p for p in summary["partitions"] if partition_usable(p, os.getuid(), groups, assoc)],
                "at": summary.get("at"), "shared": shared}

    def _live_questions(self, questions, view=None):
        """Questions with options from the scheduler filled in; view (see
        _partition_view): only the partitions the user may use are offered,
        each with what is free in it."""
        clusters = [None]
        with contextlib.suppress(SchedulerError):
            clusters = self.scheduler.clusters()
        if len(clusters) > 1 and not any(q.get("option") == "clusters" for q in questions):
            questions = [{"id": "clusters", "text": "Cluster", "type": "select", "option": "clusters", "default": "",
                          "required": False, "description": "Where the job runs (sbatch --clusters).",
                          "options": [{"value": "", "label": "%s (this cluster)" % clusters[0]}]
                          + [{"value": c, "label": c} for c in clusters[1:]]}] + questions
        if not any(q.get("options_from") or q.get("option") == "account" for q in questions):
            return questions
        info = self._info()
        usable = None if view is None else {p["name"]: p for p in view["partitions"]}
        live = []
        for q in questions:
            if q.get("options_from") == "partitions":
                q = dict(q, options=[{"value": "", "label": "(the cluster's default)"}] + [
                    {"value": p["name"], "label": p["name"] + (" (default)" if p.get("default") else "")
                     + (", up to %s" % p["max_time"] if p.get("max_time") else "")
                     + (", %d of %d cores free" % (usable[p["name"]]["cpus_free"], usable[p["name"]]["cpus_total"])
                        if usable and p["name"] in usable else "")}
                    for p in info["partitions"] if usable is None or p["name"] in usable])
            elif q.get("options_from") == "accounts" or q.get("option") == "account":
                live += self._association_questions(q, questions)
                continue
            live.append(q)
        return live

    def _association_questions(self, q, questions):
        """The account question q as a choice of the user's own accounts
        (their associations, asked as them), followed by one of their QOS
        when the template asks none; where the scheduler cannot list them
        (no accounting), free text saying why."""
        if not self.scheduler.ACCOUNTS:
            return [q]
        assoc = self._associations()
        if not assoc or not assoc["accounts"]:
            why = self.scheduler.associations_why() or ("Slurm's accounting lists no account for you" if assoc else
                                                        "your accounts could not be listed just now")
            return [dict(q, type="text", options_from=None, options=[], accounts_why=why,
                         description="%s (Free text: %s.)" % (q["description"], why))]
        out = [dict(q, type="select", options_from="accounts", pattern=None, options=[
            {"value": "", "label": "(your default account)"}] + [{"value": a, "label": a} for a in assoc["accounts"]])]
        if assoc["qos"] and not any(other.get("option") == "qos" for other in questions):
            out.append({"id": "qos", "text": "QOS (quality of service)", "type": "select", "option": "qos",
                        "options_from": "qos", "default": "", "required": False,
                        "description": "The QOS sets the job's priority and limits; those you may use are your "
                                       "associations' in Slurm's accounting. Leave it for your account's default.",
                        "options": [{"value": "", "label": "(your account's default)"}]
                        + [{"value": n, "label": n} for n in assoc["qos"]]})
        return out


# Store: scripts #############################################################

# Used for a script whose template has since gone away.
GENERIC_SUBMISSION = [
    {"id": "partition", "text": "Partition", "type": "select", "options": [],
     "options_from": "partitions", "default": "", "option": "partition", "required": False,
     "description": "The group of nodes to run on; empty for the cluster's default."},
    {"id": "time", "text": "Time limit", "type": "time", "default": "", "option": "time",
     "required": False, "description": "How long the job may run (D-HH:MM:SS, HH:MM:SS or minutes); "
                                       "empty for the partition's default."},
]

# Asked of an imported script (it has no template): the usual options, each
# empty by default, so the script's own #SBATCH lines apply; those lines'
# values become the defaults (directive_defaults).
_WHOLE = {"pattern": r"^([0-9]{1,6})?$", "pattern_error": "a whole number, e.g. 4"}
IMPORTED_SUBMISSION = GENERIC_SUBMISSION + [
    dict({"id": "nodes", "text": "Nodes", "type": "text", "default": "", "option": "nodes", "required": False,
          "description": "How many nodes; empty for the script's #SBATCH line or the cluster's default."},
         **_WHOLE),
    dict({"id": "ntasks", "text": "Tasks", "type": "text", "default": "", "option": "ntasks", "required": False,
          "description": "How many tasks (processes); empty for the script's line or the default."}, **_WHOLE),
    dict({"id": "cpus_per_task", "text": "CPU cores per task", "type": "text", "default": "",
          "option": "cpus-per-task", "required": False,
          "description": "CPU cores for each task; empty for the script's line or the default."}, **_WHOLE),
    {"id": "mem", "text": "Memory", "type": "text", "default": "", "option": "mem", "required": False,
     "pattern": "^([0-9]+[KMGT]?)?$", "pattern_error": "a whole number, optionally followed by K, M, G or T",
     "description": "Memory for the job on each node (500M, 4G); empty for the script's line or the default."},
    {"id": "account", "text": "Account", "type": "text", "default": "", "option": "account", "required": False,
     "pattern": r"^[A-Za-z0-9_.\-]*$", "pattern_error": "use only letters, digits, dot, dash and underscore",
     "description": "The project account charged; empty for the script's line or your default."},
]


# A script's content and notes are files that meta.json names (content_file,
# notes_file) and that are never rewritten: a change writes new ones, then
# meta.json, the one atomic switch, so content, notes, name and version
# change together or not at all; the files it replaced are removed after.
# Format 1 (still read; its first change moves it to 2) had them in
# script.sh and notes.md.
SCRIPT_FORMAT = 2
SCRIPT_BODIES = {"content": ("script", ".sh"), "notes": ("notes", ".md")}  # field -> its file's (stem, suffix)
LEGACY_BODIES = {"content": "script.sh", "notes": "notes.md"}
BODY_RE = re.compile(r"^(script-v[0-9]{1,15}-[0-9a-f]{8}\.sh|notes-v[0-9]{1,15}-[0-9a-f]{8}\.md)$")


def body_name(field, version):
    """A new, never reused name for a script's content or notes file."""
    stem, suffix = SCRIPT_BODIES[field]
    return "%s-v%d-%s%s" % (stem, version, secrets.token_hex(4), suffix)


def script_bodies(meta):
    """field -> the name of the file holding it, as a script's meta.json
    says; ValueError for a name we would not have written (tampered)."""
    if meta["format"] == 1:
        return dict(LEGACY_BODIES)
    names = {field: meta.get(field + "_file") for field in SCRIPT_BODIES}
    for field, name in names.items():
        if not isinstance(name, str) or not BODY_RE.match(name) or not name.startswith(SCRIPT_BODIES[field][0]):
            raise ValueError("meta.json: %s_file is not what this version reads" % field)  # tampered
    return names


class ScriptsPart(StorePart):
    """The user's job scripts: made from a template, edited, removed."""

    def _script_path(self, script_id, name=""):
        return os.path.join(self.scripts_dir, check_id(script_id, "script"), name)

    def _read_script_meta(self, script_id):
        """A script's meta.json, the names of its files checked; ValueError
        saying why it cannot be used."""
        meta = _meta_or_broken(self._script_path(script_id, "meta.json"), SCRIPT_META, (1, SCRIPT_FORMAT))
        script_bodies(meta)
        return meta

    def _script_meta(self, script_id):
        if not os.path.isdir(self._script_path(script_id)):
            raise NotFound("No such script.")
        try:
            return self._read_script_meta(script_id)
        except ValueError as e:
            raise Conflict("This script is broken and cannot be used: %s." % e)

    def _script_public(self, meta, full=False):
        """A script for the routes; full adds its content and notes, read
        as one pair (see _script_body)."""
        body = {}
        if full:
            meta, body = self._script_body(meta)
        out = {k: meta.get(k) for k in ("id", "name", "template_id", "template_name",
                                       "answers", "created_at", "updated_at", "version", "origin")}
        out["etag"] = '"%d"' % meta["version"]
        out.update(body)
        return out

    def _script_body(self, meta):
        """(meta, {content, notes}), the pair that meta.json names. Read
        without the lock: a change may replace the files between reading
        meta.json and reading them, and a file gone means read meta.json
        again."""
        for _ in range(5):
            body = {}
            try:
                for field, name in script_bodies(meta).items():
                    path = self._script_path(meta["id"], name)
                    # format 1: a missing file was empty; 2: it was replaced meanwhile
                    body[field] = self._read_text(path, missing_ok=meta["format"] == 1)
                return meta, body
            except FileNotFoundError as e:
                newer = self._script_meta(meta["id"])
                if newer["version"] == meta["version"]:
                    raise Conflict("This script is broken and cannot be used: %s is missing."
                                   % os.path.basename(e.filename or "a file"))
                meta = newer
        raise Unavailable("This script kept changing while it was read; try again.")

    def _unreferenced(self, script_id):
        """A test of whether a name in the script's directory is a content or
        notes file its meta.json does not name (replaced, or written by a
        change a crash interrupted); None when meta.json cannot be read."""
        try:
            keep = set(script_bodies(self._read_script_meta(script_id)).values())
        except ValueError:
            return None
        return lambda name: name not in keep and bool(BODY_RE.match(name) or name in LEGACY_BODIES.values())

    def _sweep(self, age=3600):
        """The shared sweep, and inside each script what a crash left
        (scripts are few: this is cheap at worker start). Without the lock:
        content and notes files have names never used twice, and one a
        change is about to switch to is younger than `age`."""
        super()._sweep(age)
        with contextlib.suppress(OSError):  # unreadable: its list says so, the worker starts
            for script_id in self._item_ids(self.scripts_dir):
                self._sweep_item(self._script_path(script_id), age, self._unreferenced(script_id))

    def _check_text(self, value, what):
        if not isinstance(value, str):
            raise Invalid("%s must be text." % what, {what.lower(): "must be text"})
        if len(value.encode("utf-8", "surrogatepass")) > self.config["storage"]["max_script_bytes"]:
            raise TooLarge("%s is larger than %d bytes." % (what, self.config["storage"]["max_script_bytes"]))
        if "\0" in value:
            raise Invalid("%s holds a NUL character." % what, {what.lower(): "holds a NUL character"})
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise Invalid("%s is not valid text." % what, {what.lower(): "not valid text"})
        return value

    def _check_name(self, name, what="script"):
        if not isinstance(name, str) or not name.strip():
            raise Invalid.of_field("name", "Name: give the %s a name." % what)
        name = name.strip()
        if len(name) > 200 or CONTROL_RE.search(name):
            raise Invalid.of_field("name", "Name: one line of at most 200 characters.")
        self._check_text(name, "Name")
        return name

    @operation("scripts.list")
    def scripts_list(self, q=None, sort=None, order=None):
        """The scripts whose name or template has q in it (any case; broken
        ones are always listed, last), sorted by a SCRIPT_SORTS column."""
        typed, (q, sort, descending) = q, list_query(q, sort, order, SCRIPT_SORTS, "updated")
        items, broken = [], []
        for script_id in self._item_ids(self.scripts_dir):
            try:
                items.append(self._script_public(self._read_script_meta(script_id)))
            except ValueError as e:
                broken.append({"id": script_id, "broken": True, "reason": str(e)})
        if q:
            items = [s for s in items if q in s["name"].casefold()
                     or q in (s.get("template_name") or s["template_id"]).casefold()]
        items.sort(key=lambda s: s["id"], reverse=True)
        return {"scripts": sorted_by(items, SCRIPT_SORTS, sort, descending) + broken,
                "query": {"q": typed or None, "sort": sort, "order": "desc" if descending else "asc"}}

    def script_render(self, template, name, answers):
        """Check answers and render, without saving: the text and typed values."""
        t = self._template(template)
        errors = {}
        try:
            name = self._check_name(name if name not in (None, "") else t["name"])
        except Invalid as e:
            errors.update(e.fields)
        answers = {} if answers is None else answers
        if isinstance(answers, dict) and JOB_NAME_QUESTION not in answers and "name" not in errors:
            answers = dict(answers, **self._job_name_default(t, name))
        try:
            values = check_answers(t["questions"], answers, self.home)
        except Invalid as e:
            errors.update(e.fields)
        if errors:
            raise Invalid(" ".join(errors.values()), errors)
        return t, name, values, self._render(t, values)

    def _render(self, t, values):
        try:
            return render_script(t, values)
        except TemplateProblem as e:
            raise Invalid("The template could not make a script from these answers: %s" % e)

    def _job_name_default(self, t, name):
        """{job-name question: its answer for a script named `name` unless its
        user chose one} (the name made safe for --job-name, else the
        template's default); {} when the template asks no job name."""
        q = next((q for q in t["questions"] if q["id"] == JOB_NAME_QUESTION and q["type"] == "text"), None)
        if q is None:
            return {}
        try:
            return {q["id"]: convert_answer(q, job_name_of(name), self.home) or q["default"]}
        except ValueError:  # the template's own pattern refuses it
            return {q["id"]: q["default"]}

    def _rendered_as(self, t, meta, content):
        """Whether content is as the script's answers rendered it (the hash
        kept at its last rendering; a script from before that kept none:
        its answers rendered again now), so not edited by its user since."""
        if meta.get("rendered_sha256"):
            return hashlib.sha256(content.encode("utf-8")).hexdigest() == meta["rendered_sha256"]
        try:
            return t is not None and render_script(t, check_answers(
                t["questions"], self._known_answers(t, meta["answers"]), self.home)) == content
        except (Invalid, TemplateProblem):
            return False

    @staticmethod
    def _known_answers(t, answers):
        return {k: v for k, v in answers.items() if any(q["id"] == k for q in t["questions"])}

    @operation("scripts.create", writes=True)
    def script_create(self, template, name=None, answers=None, notes=None):
        t, name, values, content = self.script_render(template, name, answers)
        notes = t["notes"] if notes is None else self._check_text(notes, "Notes")
        return self._new_script({"name": name, "template_id": t["id"], "template_name": t["name"], "answers": values,
                                 "rendered_sha256": hashlib.sha256(content.encode("utf-8")).hexdigest()},
                                content, notes)

    def _new_script(self, fields, content, notes, check=lambda: None):
        """A new script (version 1, SCRIPT_FORMAT) of meta.json fields (name,
        template, answers, origin), content and notes, made atomically;
        check() runs first under the lock (raising: nothing is made)."""
        now = now_iso()
        names = {field: body_name(field, 1) for field in SCRIPT_BODIES}
        meta = dict({"format": SCRIPT_FORMAT, "created_at": now, "updated_at": now, "version": 1,
                     "content_file": names["content"], "notes_file": names["notes"]}, **fields)

        def make(script_id):
            check()
            return dict(meta, id=script_id), {names["content"]: content, names["notes"]: notes}
        return self._script_public(self._create_dir(self.scripts_dir, make), full=True)

    @operation("scripts.get")
    def script_get(self, id):
        return self._script_public(self._script_meta(id), full=True)

    @operation("scripts.update", writes=True)
    def script_update(self, id, content=None, notes=None, name=None, if_match=None):
        """Change content, notes or name, all or none (see SCRIPT_FORMAT): a
        crash at any point leaves the old script or the new one, never new
        content with old notes. If if_match is given and is not the
        current etag, nothing changes: PreconditionFailed carries the
        current version so the user sees both."""
        if content is None and notes is None and name is None:
            raise BadRequest("Nothing to change: give content, notes or name.")
        content, notes = (None if text is None else self._check_text(text, what).replace("\r\n", "\n")
                          for text, what in ((content, "Content"), (notes, "Notes")))
        if name is not None:
            name = self._check_name(name)
        with self._writing():
            meta = self._script_meta(id)
            current = self._script_public(meta, full=True)
            origin = meta.get("origin") or {}
            if origin.get("in_place") and content is not None and content != current["content"]:
                raise Invalid.of_field("content", "Content: this script runs your file %s as it is at each submit, "
                                       "so edit that file itself; this copy is only what it held when imported. Your "
                                       "text was not saved. (Copy this script to get one of your own to edit here.)"
                                       % origin["file"])
            if if_match not in (None, "", "*") and if_match.strip() != current["etag"]:
                raise PreconditionFailed("This script was changed elsewhere since you opened it "
                                         "(now version %d). Your text was not saved." % meta["version"],
                                         current=current)
            return self._switch(meta, current, {"content": content, "notes": notes},
                                {} if name is None else {"name": name})

    def _switch(self, meta, current, changes, fields):
        """Under the lock: the script's next version, with changes (field ->
        its new text, None: kept) and meta.json fields, made in one atomic
        switch (see SCRIPT_FORMAT)."""
        new = dict(meta, format=SCRIPT_FORMAT, version=meta["version"] + 1, updated_at=now_iso(), **fields)
        if meta["format"] == 1:  # its first change moves both into files of their own
            changes = {field: current[field] if text is None else text for field, text in changes.items()}
        try:
            for field, kept in script_bodies(meta).items():
                new[field + "_file"] = kept
                if changes[field] is not None:
                    new[field + "_file"] = body_name(field, new["version"])
                    atomic_write(self._script_path(meta["id"], new[field + "_file"]), changes[field])
            write_json(self._script_path(meta["id"], "meta.json"), new)  # the switch
        finally:  # under the lock: the files that the meta.json now in place does not name
            self._sweep_item(self._script_path(meta["id"]), None, self._unreferenced(meta["id"]))
        return self._script_public(new, full=True)

    def _script_template(self, script):
        """The template a script was made from, to ask its questions again;
        Conflict when it has none (imported) or it is gone."""
        if script.get("origin"):
            raise Conflict("This script was imported, not made from a template: it has no answers to change. "
                           "Edit its text instead.")
        found, _ = self.templates()
        if script["template_id"] not in found:
            raise Conflict("The template this script was made from (%s) is gone, so its questions cannot be "
                           "asked again. Edit the script's text instead." % script["template_id"])
        return found[script["template_id"]]

    @operation("scripts.answers", writes=True)
    def script_answers(self, id, answers=None, if_match=None, text=None):
        """New answers for a script made from a template (those given replace
        its own; the rest are kept), the script rendered again from them.
        If its user edited the text since it was last rendered, nothing
        changes unless text says which to keep: Diverged (409) carries both
        ("mine": keep the text, save the answers; "rendered": take the new
        text). A stale if_match: PreconditionFailed, as for scripts.update."""
        if text not in (None, "", "mine", "rendered"):
            raise BadRequest("text must be mine (keep your text) or rendered (take the new one).")
        if not isinstance(answers, dict):
            raise Invalid("Answers must be an object of question id to answer.")
        script = self._script_public(self._script_meta(id), full=True)
        t = self._script_template(script)
        values = check_answers(t["questions"], dict(self._known_answers(t, script["answers"]), **answers), self.home)
        rendered = self._render(t, values)
        with self._writing():
            meta = self._script_meta(id)
            current = self._script_public(meta, full=True)
            if if_match not in (None, "", "*") and if_match.strip() != current["etag"]:
                raise PreconditionFailed("This script was changed elsewhere since you opened it (now version %d). "
                                         "Your answers were not saved." % meta["version"], current=current)
            edited = current["content"] != rendered and not self._rendered_as(t, meta, current["content"])
            if edited and not text:
                raise Diverged("You have edited this script's text since it was made from its answers: "
                               "choose whether to keep your text or take the one made from the new answers. "
                               "Nothing was saved yet.", current=current, rendered=rendered)
            fields = {"answers": values}
            if text == "mine" and edited:
                return self._switch(meta, current, {"content": None, "notes": None}, fields)
            fields["rendered_sha256"] = hashlib.sha256(rendered.encode("utf-8")).hexdigest()
            return self._switch(meta, current, {"content": rendered, "notes": None}, fields)

    @operation("scripts.copy", writes=True)
    def script_copy(self, id, name=None):
        """A new script with this one's content, notes, template and
        answers under a new name: Invalid (422) for a bad name, Conflict
        (409) for a name one of the user's scripts has."""
        name = self._check_name(name)
        meta = self._script_meta(id)
        source = self._script_public(meta, full=True)

        def unique():  # under the lock: no other script takes the name meanwhile
            for other in self.scripts_list()["scripts"]:
                if other.get("name", "").casefold() == name.casefold():
                    raise Conflict.of_field("name", "Name: you have a script named %r already; choose another name."
                                            % other["name"])
        fields = {"name": name, "template_id": source["template_id"], "template_name": source["template_name"],
                  "answers": source["answers"]}
        if meta.get("rendered_sha256"):
            fields["rendered_sha256"] = meta["rendered_sha256"]
        if source.get("origin"):  # still imported (its questions), but the copy runs its own content
            fields["origin"] = dict(source["origin"], in_place=False)
        content = source["content"]
        with contextlib.suppress(Conflict, Invalid, TemplateProblem):  # no template, or answers it no longer takes
            content = self._renamed_job(self._script_template(source), meta, source, name, fields)
        return self._new_script(fields, content, source["notes"], unique)

    def _renamed_job(self, t, meta, source, name, fields):
        """A copy's content, its job-name answer (in fields) the copy's name's
        default when the source's was its own name's or the template's
        default (not changed by its user): the text rendered again if it
        was as rendered, else its one --job-name line changed; else as it is."""
        old, new = self._job_name_default(t, source["name"]), self._job_name_default(t, name)
        q = next((q for q in t["questions"] if q["id"] == JOB_NAME_QUESTION), None)
        if not new or source["answers"].get(JOB_NAME_QUESTION) not in (old[JOB_NAME_QUESTION], q["default"]):
            return source["content"]
        answers = self._known_answers(t, source["answers"])
        values = check_answers(t["questions"], dict(answers, **new), self.home)
        before, after = render_script(t, check_answers(t["questions"], answers, self.home)), render_script(t, values)
        content = source["content"]
        if self._rendered_as(t, meta, content):
            content = after
        else:  # edited: the one line the new name changes, where the user's text has it once, as it was made
            changed = [(a, b) for a, b in zip(before.split("\n"), after.split("\n")) if a != b]
            lines = content.split("\n")
            if len(changed) != 1 or before.count("\n") != after.count("\n") or lines.count(changed[0][0]) != 1:
                return content
            content = "\n".join(changed[0][1] if line == changed[0][0] else line for line in lines)
        fields.update(answers=values, rendered_sha256=hashlib.sha256(after.encode("utf-8")).hexdigest())
        return content

    def _new_template_names(self, name, template_id):
        """(name, id) checked for a new template of the user's, the id made
        from the name when not given: Invalid naming each bad field."""
        errors = {}
        try:
            name = self._check_name(name, "template")
        except Invalid as e:
            errors.update(e.fields)
        if template_id in (None, "") and not errors:
            template_id = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:64].strip("-_")
            if not template_id:
                errors["id"] = "Id: give the template an id (the name gives none)."
        if "id" not in errors and (not isinstance(template_id, str) or not TEMPLATE_ID_RE.match(template_id)):
            errors["id"] = ("Id: at most 64 lowercase letters, digits, - and _, "
                            "starting with a letter or digit.")
        if errors:
            raise Invalid(" ".join(errors.values()), errors)
        return name, template_id

    @operation("scripts.save_template", writes=True)
    def script_save_template(self, id, name=None, template_id=None):
        """Save a script as the user's own template (storage.user_templates):
        the questions of the template it was made from, the script's notes,
        and its content as the template text, escaped (literal_template) so
        it renders to exactly that content. Invalid (422) for a bad name or
        id, Conflict (409) for an id or name a template has, each naming
        the field. Written in a hidden directory, loaded and rendered
        there, then renamed into place: on any error nothing is left."""
        script = self._script_public(self._script_meta(id), full=True)
        name, template_id = self._new_template_names(name, template_id)
        found, problems = self.templates()
        source = found.get(script["template_id"])
        if script.get("origin"):  # imported: no template; those asked of imported scripts (their #SBATCH
            # lines, in the script text, still apply)
            source = {"name": "Imported", "priority": 100, "tags": [], "questions": [],
                      "submission_questions": IMPORTED_SUBMISSION}
        if source is None:
            raise Conflict("The template this script was made from (%s) is gone, so the questions to save "
                           "with it are not known. Nothing was saved." % script["template_id"])
        clash = found.get(template_id) or next((p for p in problems if p["id"] == template_id), None)
        if clash:
            raise Conflict.of_field("id", "Id: a template with the id %r exists already (%s, from the %s templates); "
                                    "choose another id." % (template_id, clash.get("name", "broken"), clash["source"]))
        for other in found.values():
            if other["name"].casefold() == name.casefold():
                raise Conflict.of_field("name", "Name: a template named %r exists already (id %s); choose another name."
                                        % (other["name"], other["id"]))
        fields = {"name": name, "synopsis": "Your own template, saved from the script %s" % script["name"],
                  "description": "Saved on %s from your script \u201c%s\u201d, made from the template \u201c%s\u201d. "
                                 "Its script is that script's text as it was then; the questions are those of "
                                 "\u201c%s\u201d." % (now_iso()[:10], script["name"], source["name"], source["name"]),
                  "priority": source["priority"], "tags": source["tags"], "script": "script.sh"}
        files = {"template.toml": toml_template(fields, [("question", source["questions"]),
                                                         ("submission_question", source["submission_questions"])]),
                 "script.sh": literal_template(script["content"]), "notes.md": script["notes"]}
        directory = os.path.expanduser(self.config["storage"]["user_templates"])
        with self._writing():
            os.makedirs(directory, 0o700, exist_ok=True)
            tmp = os.path.join(directory, ".new-%s" % secrets.token_hex(6))
            os.mkdir(tmp, 0o700)
            try:
                staged = os.path.join(tmp, template_id)
                os.mkdir(staged, 0o700)
                for file_name, text in files.items():
                    atomic_write(os.path.join(staged, file_name), text)
                try:
                    t = load_template(staged, "user")
                    same = render_script(t, check_answers(t["questions"], {}, self.home)) == script["content"]
                except (TemplateProblem, Invalid) as e:
                    raise Conflict("This script could not be saved as a template: %s. Nothing was saved." % e)
                if not same:
                    raise Conflict("This script's text would not come back exactly from a template. "
                                   "Nothing was saved.")
                if os.path.lexists(os.path.join(directory, template_id)):  # made meanwhile, broken or not
                    raise Conflict.of_field("id", "Id: %r exists already in your templates; choose another id." % template_id)
                os.rename(staged, os.path.join(directory, template_id))
                fsync_dir(directory)
            finally:
                _remove_tree(tmp)
        out = template_summary(t)
        out.update(questions=t["questions"], submission_questions=t["submission_questions"], notes=t["notes"])
        return out

    @operation("scripts.delete", writes=True)
    def script_delete(self, id):
        with self._writing():
            path = self._script_path(id)
            if not os.path.isdir(path):
                raise NotFound("No such script.")
            self._remove_dir(path)
        return {"deleted": id}


# Store: files in the home (import) ##########################################


LISTED_HOME = 1000  # the most entries of a home directory the import picker lists
KINDS = {0o040000: "dir", 0o100000: "file", 0o120000: "link"}  # the others: "other" (FIFO, device, socket)


def _kind(st):
    return KINDS.get(st.st_mode & 0o170000, "other")


class HomePart(StorePart):
    """The user's home as the import picker sees it, read as the user
    through the path gate (resolve_inside): listed, a script file imported
    from it, and that file read again at each submit of a script that runs
    where it is. Nothing here leaves the home, follows a symlink out of it
    or opens what is no regular file."""

    OUTSIDE = "That path leads outside your home directory."

    def _in_home(self, path):
        """(the resolved path, the home's real path) of a path in the home."""
        return resolve_inside(self.home, path, self.OUTSIDE), os.path.realpath(self.home)

    @operation("home.list")
    def home_list(self, path=""):
        """A directory of the home: its first LISTED_HOME entries (`more`
        counts those left out, up to COUNTED_FILES), each with its type as
        lstat gives it (nothing is opened); a symlink says whether it leads
        inside the home, and if so to what."""
        if not isinstance(path, str):
            raise NotFound("No such directory.")
        full, root = self._in_home(path)
        taken, more = first_entries(full, LISTED_HOME, "No such directory in your home.")
        rel = os.path.relpath(full, root)
        rel = "" if rel == "." else rel
        entries = []
        for name, entry_path in taken:
            try:
                st = os.lstat(entry_path)
            except OSError:
                continue
            entry = {"name": name_text(name), "path": name_text(os.path.join(rel, name)), "type": _kind(st),
                     "size": st.st_size, "modified_at": now_iso(st.st_mtime)}
            if entry["type"] == "link":
                target = os.path.realpath(entry_path)
                entry["inside"] = target == root or target.startswith(root.rstrip("/") + "/")
                if entry["inside"]:
                    try:
                        target_st = os.stat(target)  # as the user; a stat opens nothing
                    except OSError:
                        entry["target"] = "missing"
                    else:
                        entry.update(target=_kind(target_st), size=target_st.st_size)
            entries.append(entry)
        entries.sort(key=lambda e: ("dir" not in (e["type"], e.get("target")), e["name"].casefold(), e["name"]))
        return {"path": name_text(rel), "parent": name_text(os.path.dirname(rel)) if rel else None,
                "home": name_text(root), "entries": entries, "more": more, "truncated": more > 0,
                "listed": LISTED_HOME, "max_bytes": self.config["storage"]["max_script_bytes"]}

    def _home_script(self, path):
        """(text, real path) of a script file in the home, through the path
        gate: a path outside the home (.., a symlink out of it) is 403; a
        missing file, a directory, FIFO or device (opened without blocking,
        never read) or a file that is no UTF-8 text is 422; one larger than
        storage.max_script_bytes is 413 (no more than that is read). Each
        names the field `path`."""
        def refuse(cls, message):
            return cls.of_field("path", "Path: " + message)
        if not isinstance(path, str) or not path.strip():
            raise refuse(Invalid, "choose a file of your home directory.")
        limit = self.config["storage"]["max_script_bytes"]
        try:  # resolved, then opened from the home without following a link (a swap in between: refused)
            full, root = self._in_home(path)
            data = read_file(full, limit, open_beneath(root, full))
        except NotFound:
            raise refuse(Invalid, "there is no such file in your home directory (give its path from your home, "
                                  "e.g. project/run.sh).")
        except Forbidden:
            raise refuse(Forbidden, "%s leads outside your home directory, so it cannot be used." % path)
        except FileNotFoundError:
            raise refuse(Invalid, "there is no file %s in your home directory." % path)
        except (UnusableFile, IsADirectoryError) as e:
            if getattr(e, "too_large", False):
                raise refuse(TooLarge, "%s is larger than %d bytes (storage.max_script_bytes): that is no job "
                                       "script. Import the script that uses it instead." % (path, limit))
            raise refuse(Invalid, "%s is not a regular file (a directory, FIFO or device), so it cannot be "
                                  "imported." % path)
        except PermissionError:
            raise refuse(Forbidden, "you may not read %s." % path)
        except OSError as e:
            if e.errno == errno.ENXIO:  # a socket: open() says "no such device or address"
                raise refuse(Invalid, "%s is not a regular file (a socket), so it cannot be imported." % path)
            if e.errno in (errno.ELOOP, errno.ENOTDIR, errno.EXDEV, errno.EINVAL):  # EINVAL: realpath's readlink
                raise refuse(Forbidden, "%s is a symbolic link that leads round in a loop, or was changed as it "
                                        "was opened, so it cannot be used." % path)
            raise disk_error(e, writing=False)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise refuse(Invalid, "%s is not text (UTF-8), so it is no job script." % path)
        if "\0" in text:
            raise refuse(Invalid, "%s holds a NUL character, so it is no job script." % path)
        return text, full

    def _run_source(self, meta):
        """(content, extra options, directory) of a submit of this script:
        its own content, or for an imported script that runs where it is,
        its file as it is now, read again through the path gate, with
        --chdir to the file's directory (where its outputs then go). A
        file that cannot be used now is 409 saying why."""
        origin = meta.get("origin") or {}
        if not origin.get("in_place"):
            return self._script_public(meta, full=True)["content"], [], None
        try:
            text, full = self._home_script(origin["path"])
        except FlightJobError as e:
            raise Conflict("This script runs your file %s as it is when submitted, and that file cannot be "
                           "used now: %s" % (origin["file"], e.message.replace("Path: ", "", 1)))
        directory = os.path.dirname(full)
        return text, ["--chdir=%s" % directory], directory

    @operation("scripts.import", writes=True)
    def script_import(self, path=None, content=None, name=None, in_place=False):
        """A new script from a file of the home (path) or pasted text
        (content), with no template: its #SBATCH lines are its submission
        questions' defaults. in_place (a file only): each submit reads the
        file again and runs it in its directory (_run_source). Errors name
        the field: path (see _home_script), content, name, in_place."""
        if not isinstance(in_place, bool):
            raise Invalid.of_field("in_place", "Run where it is: answer yes or no.")
        if path not in (None, "") and content not in (None, ""):
            raise Invalid.of_field("path", "Give either a file of your home directory or the script's text, not both.")
        now = now_iso()
        if content not in (None, ""):
            if in_place:
                raise Invalid.of_field("in_place", "Run where it is: only a file of your home can run where it is, not pasted text.")
            content = self._check_text(content, "Content").replace("\r\n", "\n")
            origin = {"path": None, "file": None, "in_place": False, "imported_at": now}
            default_name = dict(parse_directives(content)).get("job-name")
            notes = "Imported from pasted text on %s." % now[:10]
        else:
            if path in (None, ""):
                message = "Choose a file of your home directory, or paste the script's text."
                raise Invalid(message, {"path": "Path: " + message, "content": "Script: " + message})
            content, full = self._home_script(path)
            self._check_text(content, "Content")
            root = os.path.realpath(self.home)
            origin = {"path": name_text(os.path.relpath(full, root)), "file": name_text(full),
                      "in_place": in_place, "imported_at": now}
            default_name = name_text(os.path.basename(full))
            notes = "Imported from %s on %s.%s" % (origin["file"], now[:10], (
                " It runs where it is: each submit reads that file as it is then and runs it in %s, where its "
                "output goes." % name_text(os.path.dirname(full))) if in_place else "")
        if name in (None, "") and isinstance(default_name, str) and default_name.strip():
            name = default_name.strip()[:200]
        return self._new_script({"name": self._check_name(name), "template_id": "", "template_name": "Imported",
                                 "answers": {}, "origin": origin, "created_at": now, "updated_at": now}, content, notes)


# Store: job records #########################################################


# Every field of a job record, declared once: adding a field is one row
# (plus the template that shows it). Each row is
#   name     the record's key
#   check    what its value must be (None when missing): JOB_META checks a
#            record with it (one edited by hand may hold anything), the
#            shared poll each status (STATUS_FIELDS)
#   default  its value in a new record (new_job_record); ABSENT: not written
#   source   "submit": the submission (new_job_record takes the plan's
#            value of that name); "answer": the scheduler's answer to the
#            submit; "status": the scheduler's status; "ours": flightjobd's
#   public   in the public view (_public_job): True as it is, "text" a
#            path of any bytes shown as text (name_text)
#   sort     what the jobs list sorts and searches it by, or None: (column
#            of JOB_SORTS and of the index row, kind, descending when no
#            order is asked, the field used when it is empty). Kinds: "state",
#            "text" and "id" (casefolded; an id sorts as numbers), "time"
#            (whole seconds since the epoch). The sorted fields' order is
#            the index row's: one read of another length is not used.
JobField = collections.namedtuple("JobField", "name check default source public sort")
ABSENT = object()
_opt_text, _opt_time = _or_none(_text), _or_none(_time)
_opt_figure = _or_none(lambda v: _figure(v) is not None)  # the efficiency's figures
JOB_FIELDS = [JobField(*row) for row in [
    ("state", _state, "PENDING", "status", True, ("state", "state", False, None)),
    ("job_name", _opt_text, None, "answer", True, ("name", "text", False, "script_name")),
    ("script_name", _opt_text, None, "submit", True, ("script", "text", False, None)),
    ("scheduler_id", _opt_text, None, "answer", True, ("job", "id", True, None)),
    ("submitted_at", _time, None, "ours", True, ("submitted", "time", True, None)),
    ("started_at", _opt_time, None, "status", True, ("started", "time", True, None)),
    ("ended_at", _opt_time, None, "status", True, ("ended", "time", True, None)),
    ("updated_at", _opt_time, None, "ours", True, None),
    ("script_id", _text, None, "submit", True, None),
    ("answers", _or_none(lambda v: isinstance(v, dict)), None, "submit", True, None),
    ("options", _or_none(_texts), None, "submit", True, None),
    ("command", _or_none(_texts), None, "submit", True, None),
    ("ignored_options", _or_none(_texts), None, "submit", True, None),
    ("extra_options", _or_none(_texts), None, "submit", True, None),  # the user's own (check_extra_options)
    ("scheduler", _opt_text, None, "submit", True, None),
    ("cluster", _opt_text, None, "submit", True, None),  # where it runs (Scheduler.home): with scheduler, whose job
    ("script_file", _opt_text, None, "submit", True, None),  # an imported script run where it is: its file
    ("run_in", _opt_text, None, "submit", True, None),  # ... and the directory it ran in
    # {"type", "job_id", "scheduler_id"}: it starts after that job of the user's (JobSubmit._dependency)
    ("dependency", _or_none(lambda v: isinstance(v, dict) and all(_text(v.get(k)) for k in (
        "type", "job_id", "scheduler_id"))), None, "submit", True, None),
    ("results_dir", _opt_text, None, "answer", "text", None),
    ("stdout_path", _opt_text, None, "answer", "text", None),
    ("stderr_path", _opt_text, None, "answer", "text", None),
    ("outputs_guessed", _or_none(lambda v: isinstance(v, bool)), ABSENT, "answer", True, None),  # worked out, not told
    ("raw_state", _opt_text, "SUBMITTING", "status", True, ("raw", "text", False, None)),  # searched: "timeout"
    ("reason", _opt_text, "Submitting", "status", True, None),
    ("reason_text", _opt_text, "being submitted", "status", True, None),
    ("exit_code", _or_none(_whole), None, "status", True, None),
    ("estimated_start_at", _opt_time, None, "status", True, None),
    ("tasks", _or_none(_tasks), [], "status", True, None),
    ("detail_pending", _or_none(lambda v: isinstance(v, bool)), ABSENT, "status", True, None),
    ("missing_since", _opt_time, None, "ours", True, None),  # since when the scheduler has not listed it
    ("cancel_requested_at", _opt_time, None, "ours", True, None),  # when the user cancelled it here
    ("cancelled_tasks", _or_none(_texts), ABSENT, "ours", True, None),
    ("origin", _or_none(lambda v: v == "outside"), ABSENT, "ours", True, None),  # outside_job_record
    ("time_limit", _opt_text, ABSENT, "status", True, None),
    ("signal", _or_none(_whole), ABSENT, "status", True, None),
    ("mem_asked", _or_none(lambda v: isinstance(v, bool)), None, "submit", True, None),  # memory asked for
    ("partition", _opt_text, ABSENT, "status", True, None)] + [
    (name, _opt_figure, ABSENT, "status", True, None) for name in (
        "elapsed_s", "cpu_time_s", "max_rss_mb", "requested_mem_mb", "mem_used_mb", "mem_tasks", "alloc_cpus",
        "cpu_alloc_s", "nodes", "cpus")]]  # nodes, cpus: squeue's %D and %C (asked for while pending)
JOB_META = {f.name: f.check for f in JOB_FIELDS}
PUBLIC_TEXTS = [f.name for f in JOB_FIELDS if f.public == "text"]


def new_job_record(job_id, plan, scheduler_name, command, now):
    """A job being submitted, with every field of JOB_FIELDS that has a
    default; the submission's from plan (see JobSubmit.preview). The
    scheduler's answer fills in its id and where output goes; refresh
    keeps the state up to date with the scheduler's status."""
    record = {f.name: plan.get(f.name, f.default) if f.source == "submit" else f.default
              for f in JOB_FIELDS if f.default is not ABSENT}
    return dict(record, format=FORMAT, id=job_id, updated_at=now, submitted_at=now, tasks=[],
                script_id=plan["script"]["id"], script_name=plan["script"]["name"], command=command,
                scheduler=scheduler_name)


def elapsed_of_limit(meta):
    """What a job has run of its time limit, as squeue prints them: "12:03 /
    1:00:00" (a waiting job "0:00 / 1:00:00"; no limit known: the run time
    alone); None for a job that never ran and waits no more."""
    elapsed = _figure(meta.get("elapsed_s")) if meta.get("started_at") else None
    if elapsed is None and meta.get("state") == "PENDING" and meta.get("scheduler_id"):
        elapsed = 0
    limit = parse_duration(meta["time_limit"]) if isinstance(meta.get("time_limit"), str) else None
    if elapsed is None:
        return None
    return slurm_time(elapsed) + (" / " + slurm_time(limit) if limit is not None else "")


def _figure(value):
    """A job record's number (a record may be edited by hand: anything else is None)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < 1e15
    return value if ok else None


def _percent(part, whole):
    return round(100.0 * part / whole, 1) if part is not None and whole else None


# What makes advice worth a line: a memory request at least twice what would
# do and at least this much more; CPUs at most half used; a limit at least
# EFFICIENCY_TIME_LIMIT seconds of which at most a quarter was used.
EFFICIENCY_SPARE_MB = 1024
EFFICIENCY_TIME_LIMIT = 2 * 3600


def job_efficiency(meta):
    """How well a finished job used what it asked for, from its record's
    scheduler figures (Slurm's accounting), or None when it has none:
    {"cpu_percent": CPU time / (run time x allocated CPUs), "cores_used",
    "alloc_cpus", "cpu_time_s", "cpu_alloc_s", "mem_used_mb" (all its tasks
    together, mem_what says exactly what it is), "mem_requested_mb",
    "mem_percent", "max_task_rss_mb", "time_used_s", "time_limit_s",
    "time_percent", "advice": [one line per resource worth changing]}.
    Not given while the accounting record is still coming (detail_pending)."""
    if meta.get("state") not in FINAL_STATES or not meta.get("started_at") or meta.get("detail_pending"):
        return None
    cpu, held = _figure(meta.get("cpu_time_s")), _figure(meta.get("cpu_alloc_s"))
    cpus = _figure(meta.get("alloc_cpus"))
    used, asked = _figure(meta.get("mem_used_mb")), _figure(meta.get("requested_mem_mb"))
    tasks, peak = _figure(meta.get("mem_tasks")), _figure(meta.get("max_rss_mb"))
    arrays = bool(meta.get("tasks"))
    run = None if arrays else _figure(meta.get("elapsed_s"))  # an array's is a span, not a run
    limit = parse_duration(meta["time_limit"]) if isinstance(meta.get("time_limit"), str) else None
    if cpu is None or not held:
        cpu = held = None
    out = {"cpu_time_s": cpu, "cpu_alloc_s": held, "alloc_cpus": cpus,
           "cpu_percent": _percent(cpu, held),
           "cores_used": round(cpu * cpus / held, 2) if held and cpus else None,
           "mem_used_mb": used, "mem_requested_mb": asked or None, "mem_percent": _percent(used, asked),
           "max_task_rss_mb": peak, "mem_what": None,
           "time_used_s": run, "time_limit_s": limit if run is not None else None,
           "time_percent": _percent(run, limit) if run is not None else None, "advice": []}
    if used is not None:
        where = "its largest array task's largest step" if arrays else "its largest step"
        if tasks and tasks > 1:
            out["mem_what"] = ("the peaks of the %d tasks of %s added up (sacct's AveRSS x NTasks); "
                               "the largest single task peaked at %s" % (tasks, where, mem_words(peak or 0)))
        elif getattr(SCHEDULERS.get(meta.get("scheduler")), "MEMORY_WHAT", None):
            out["mem_what"] = SCHEDULERS[meta["scheduler"]].MEMORY_WHAT
        else:
            out["mem_what"] = "the peak of %s, one task (sacct's MaxRSS)" % where
    if out["cpu_percent"] is None and used is None and out["time_percent"] is None:
        return None
    advice = out["advice"]
    # memory the user did not ask for is the node's default: no advice about a request never made
    out["mem_asked"] = meta.get("mem_asked") is not False  # older records: not known, as before
    given = ("the %s asked for" if out["mem_asked"] else "the node's default of %s") % mem_words(asked or 0)
    if meta.get("reason") == "OutOfMemory" and asked:
        advice.append("It ran out of %s: ask for more next time (Memory: ~%s)."
                      % (given, mem_words(_mem_suggestion(asked * 1.5))))
    elif meta.get("raw_state") == "TIMEOUT" and limit:
        advice.append("It ran out of time: it ran %s of its %s limit. Submit it again with a longer time limit "
                      "(~%s), or make it save its work as it goes." % (format_duration(out["time_used_s"] or limit),
                                                                       format_duration(limit), format_duration(2 * limit)))
    elif used is not None and asked and out["mem_asked"]:
        enough = _mem_suggestion(used * 1.2)
        if asked >= 2 * enough and asked - enough >= EFFICIENCY_SPARE_MB:
            advice.append("Used %d %% of the %s asked for: next time ~%s would do."
                          % (round(out["mem_percent"]), mem_words(asked), mem_words(enough)))
    if out["cores_used"] is not None and cpus >= 2 and out["cores_used"] <= cpus / 2.0:
        n = out["cores_used"]
        advice.append("Used %s of %d cores: ask for %d next time, or make the program use them all."
                      % ("%d" % round(n) if n >= 0.5 else "less than 1", cpus, max(1, int(-(-n // 1)))))
    if (out["time_percent"] is not None and meta.get("state") == "COMPLETED" and limit >= EFFICIENCY_TIME_LIMIT
            and out["time_percent"] <= 25):
        shorter = max(-(-run * 1.5 // 3600) * 3600, 3600)
        advice.append("Ran %s of its %s limit: a limit of %s would do, and a shorter limit can start sooner."
                      % (format_duration(run), format_duration(limit), format_duration(shorter)))
    return out


def _mem_suggestion(mb):
    """A request of at least mb, rounded up: whole GiB from 1 GiB, else 64 MiB steps."""
    return -(-mb // 1024) * 1024.0 if mb >= 1024 else max(64.0, -(-mb // 64) * 64.0)


# The job index: what the jobs list searches and sorts by, one JobRow a
# job. A finished job's row is all the worker keeps of it in memory (see
# JobRecords._jobs) and is kept in INDEX_FILE in the state directory too, so
# a fresh worker does not parse every record again. A row of the file is
# used only while its record's meta.json has the mtime and size the row was
# made from (checked when the file is read, once a worker). The file is a
# cache: one that is missing, too large, not JSON, of another format or with
# a single bad row (a user may edit anything in their home) is not used, and
# is written again from the records; losing it loses nothing. It is written
# with atomic_write under the lock, by a list that found rows it lacked.
INDEX_FILE = "job-index.json"
INDEX_FORMAT = 1
INDEX_LIMIT = 32 << 20  # the largest index file read (a job is ~160 bytes of it: ~200,000 jobs)
# A job's row: its JOB_FIELDS with a sort column, grouped by kind (state,
# texts, times; the texts casefolded, as searched and sorted: pages show the
# records'; a time of None for none), and its meta.json's mtime_ns and size.
# A finished job's is kept packed (PackedRow).
ROW_FIELDS = sorted((f for f in JOB_FIELDS if f.sort), key=lambda f: ("state", "text", "id", "time").index(f.sort[1]) // 2 * 2)
JobRow = collections.namedtuple("JobRow", [f.sort[0] for f in ROW_FIELDS] + ["mtime_ns", "size"])
ROW_TEXTS = [f.sort[0] for f in ROW_FIELDS if f.sort[1] in ("text", "id")]
STATE_FOLDED = {state: state.casefold() for state in STATES}


def _padded(scheduler_id):
    """A scheduler id that sorts as numbers do (12_3 before 100); None for none."""
    return "_".join(part.zfill(12) for part in scheduler_id.split("_")) if scheduler_id else None


# The columns a list sorts by: sort name -> (its value of a row, None for
# none: those come last; the order when none is asked: True descending).
JOB_SORTS = {f.sort[0]: ((lambda r, column=f.sort[0]: _padded(getattr(r, column))) if f.sort[1] == "id" else
                         operator.attrgetter(f.sort[0]), f.sort[2]) for f in JOB_FIELDS if f.sort}


def _read_through_layout(cls):
    """PackedRow's property for each JobRow field, read where LAYOUT puts it."""
    offset = 0
    for name, fmt in cls.FIXED:
        read = struct.Struct("<" + fmt).unpack_from
        none = cls.NO_TIME if name not in ("state", "mtime_ns", "size") else None
        setattr(cls, name, property((lambda self, at=offset: STATES[self[at]]) if name == "state" else
                                    lambda self, at=offset, read=read, none=none: _none_if(read(self, at)[0], none)))
        offset += struct.calcsize("<" + fmt)
    for which, name in enumerate(ROW_TEXTS):
        setattr(cls, name, property(lambda self, which=which: self._text_at(which)))
    return cls


def _none_if(value, none):
    return None if value == none else value


@_read_through_layout
class PackedRow(bytes):
    """A finished job's JobRow as one bytes object (~100 bytes, against
    ~400 for the JobRow with its strings and integers, which 10,000 jobs
    would leave scattered through the worker's memory): what JobRecords._jobs
    keeps of each finished job. Read as a JobRow is (row.state, row.name,
    ...); unpacked() gives the JobRow. Its LAYOUT is made from JobRow's
    fields (FIXED: the state, the times, mtime_ns and size; a time of None
    is NO_TIME), then the length of each text but the last; the texts follow
    as UTF-8, one equal to the next left out (SAME: the name is most jobs'
    script's). Each field is read where LAYOUT puts it."""
    __slots__ = ()
    FIXED = [(name, "B" if name == "state" else "q") for name in JobRow._fields if name not in ROW_TEXTS]
    LAYOUT = struct.Struct("<" + "".join(fmt for _, fmt in FIXED) + "I" * (len(ROW_TEXTS) - 1))
    LENGTHS = struct.Struct("<" + "I" * (len(ROW_TEXTS) - 1))
    LENGTHS_AT = LAYOUT.size - LENGTHS.size
    NO_TIME = -1 << 63
    SAME = 0xFFFFFFFF  # the length of a text that is the next one (in _span too)

    @classmethod
    def pack(cls, row):
        texts = [getattr(row, name).encode("utf-8", "surrogatepass") for name in ROW_TEXTS]
        lengths = [cls.SAME if a == b else len(a) for a, b in zip(texts, texts[1:])]
        fixed = [STATES.index(row.state) if name == "state" else
                 cls.NO_TIME if getattr(row, name) is None else getattr(row, name) for name, _ in cls.FIXED]
        return cls(cls.LAYOUT.pack(*fixed, *lengths) + b"".join(
            text for text, n in zip(texts, lengths + [0]) if n != cls.SAME))

    def unpacked(self):
        return JobRow(*(getattr(self, field) for field in JobRow._fields))

    def _span(self, which):
        """Where text `which` (of ROW_TEXTS) is: (start, end)."""
        lengths, start = self.LENGTHS.unpack_from(self, self.LENGTHS_AT), self.LAYOUT.size
        for n in lengths[:which]:
            if n != 0xFFFFFFFF:
                start += n
        for n in lengths[which:]:
            if n != 0xFFFFFFFF:
                return start, start + n
        return start, len(self)

    def _text_at(self, which):
        start, end = self._span(which)
        return str(self[start:end], "utf-8", "surrogatepass")

    def has(self, text):
        """Whether one of the texts holds text (UTF-8 bytes, as packed):
        searched where it lies, nothing decoded."""
        if self.find(text, self.LAYOUT.size) < 0:  # most rows of a search: one look
            return False
        start = self.LAYOUT.size
        for n in self.LENGTHS.unpack_from(self, self.LENGTHS_AT) + (len(self),):  # a SAME one: as the next
            if n != 0xFFFFFFFF:
                if self.find(text, start, min(start + n, len(self))) >= 0:
                    return True
                start += n
        return False


def row_has(row, text, text_utf8):
    """Whether a job's row (JobRow or PackedRow) has text (text_utf8 as
    UTF-8) in one of its texts (name, script, scheduler id)."""
    return row.has(text_utf8) if isinstance(row, PackedRow) else any(text in getattr(row, name) for name in ROW_TEXTS)


def _index_time(value):
    seconds = parse_iso(value)
    return None if seconds is None else int(seconds)


def job_row(meta, st=None):
    """A job's JobRow from its record (st: its meta.json's stat). The job's
    name is the scheduler's (--job-name; older records: the script's)."""
    values = []
    for f in ROW_FIELDS:
        value = meta.get(f.name) or (meta.get(f.sort[3]) if f.sort[3] else None)
        values.append(value if f.sort[1] == "state" else _index_time(value) if f.sort[1] == "time"
                      else (value or "").casefold())
    return JobRow(*values, st.st_mtime_ns if st else 0, st.st_size if st else 0)


# what each kind of an index row's value must be (stat: mtime_ns and size)
ROW_CHECKS = {"state": lambda v: v in FINISHED, "text": lambda v: isinstance(v, str) and v == v.casefold(),
              "time": lambda v: v is None or _whole(v) and PackedRow.NO_TIME < v < -PackedRow.NO_TIME,
              "stat": lambda v: _whole(v) and PackedRow.NO_TIME <= v < -PackedRow.NO_TIME,
              "id": lambda v: isinstance(v, str) and v == v.casefold()}


def index_row(value):
    """A JobRow from INDEX_FILE's list; ValueError unless every field is
    what job_row makes of a finished job."""
    if not isinstance(value, list) or len(value) != len(JobRow._fields):
        raise ValueError("a row is not a list of %d fields" % len(JobRow._fields))
    if not all(ROW_CHECKS[kind](v) for kind, v in zip([f.sort[1] for f in ROW_FIELDS] + ["stat", "stat"], value)):
        raise ValueError("a row is not what this version writes")
    return JobRow(*value)


def index_rows(data):
    """(id, JobRow) of each line of INDEX_FILE's bytes, parsed one line at a
    time (a whole 10,000-job file parsed at once would hold ~3 MB more of
    the worker's memory for good); ValueError for a file of another format
    or a line that is not a row."""
    end = data.find(b"\n")
    header = parse_json(data[:end] if end >= 0 else data)
    if not isinstance(header, dict) or header.get("format") != INDEX_FORMAT:
        raise ValueError("not an index of format %d" % INDEX_FORMAT)
    while 0 <= end < len(data) - 1:
        start, end = end + 1, data.find(b"\n", end + 1)
        line = parse_json(data[start:end if end >= 0 else len(data)])
        if not isinstance(line, list) or not line or not isinstance(line[0], str) or not ID_RE.match(line[0]):
            raise ValueError("a line is not a job's row")
        yield line[0], index_row(line[1:])


class JobRecords(StorePart):
    """A user's job records (jobs/ID/meta.json) and the index the list
    searches and sorts by: read through a parse cache, written under the
    lock, shown as their public view."""

    def __init__(self, config, user):
        super().__init__(config, user)
        # id -> (mtime_ns, size, meta, row) of parsed job files; a finished job's
        # entry is only its row (a PackedRow), what the list searches and sorts by
        # (10,000 full records would be ~45 MB): its full record is read
        # again when shown. The rows are kept in INDEX_FILE too (see there).
        self._jobs = {}
        self._index_read = False  # INDEX_FILE read (once per worker)
        self._index_dirty = False  # the rows differ from INDEX_FILE's

    def _job_path(self, job_id, name=""):
        return os.path.join(self.jobs_dir, check_id(job_id, "job"), name)

    def _job_meta(self, job_id, cached=True):
        path = self._job_path(job_id, "meta.json")
        try:
            st = os.stat(path)
        except FileNotFoundError:
            if os.path.isdir(self._job_path(job_id)):
                raise Conflict("This job record is broken: meta.json is missing.")
            raise NotFound("No such job.")
        except PermissionError:  # e.g. a symlink into another user's directory: as for a script
            raise NotFound("No such job: its record cannot be read.")
        except OSError as e:  # a symlink loop, an I/O error
            raise Conflict("This job record cannot be read: %s." % (e.strerror or e))
        hit = self._jobs.get(job_id)
        if cached and isinstance(hit, tuple) and hit[0] == st.st_mtime_ns and hit[1] == st.st_size:
            return hit[2]
        try:
            meta = _meta_or_broken(path, JOB_META)
        except ValueError as e:
            raise Conflict("This job record is broken: %s." % e)
        row = None
        if meta["state"] in FINISHED and not meta.get("detail_pending"):
            with contextlib.suppress(struct.error):  # a record stamped past 2262 (mtime_ns > 2**63): kept in full
                row = PackedRow.pack(job_row(meta, st))
        if row is None:
            self._jobs[job_id] = (st.st_mtime_ns, st.st_size, meta, job_row(meta))
        elif hit != row:  # an equal one stays: a new copy a list would scatter rows through memory
            self._index_dirty = True
            self._jobs[job_id] = row
        return meta

    def _update_job(self, job_id, changes):
        """Apply changes to a job's metadata under the lock, re-read first so
        a second daemon's change is not lost. What an interrupted write left
        in the job's directory goes then: a record is written while the job
        is unfinished and once more when it ends, so one that a crash
        interrupted is always written again."""
        with self._writing():
            meta = dict(self._job_meta(job_id, cached=False))
            meta.update(changes, updated_at=now_iso())
            self._sweep_item(self._job_path(job_id))
            write_json(self._job_path(job_id, "meta.json"), meta)
        self._jobs.pop(job_id, None)
        return meta

    def _public_job(self, meta):
        out = dict(meta)
        out.pop("format", None)
        out.setdefault("ignored_options", out.pop("notes", []))  # older records called it notes
        out["finished"] = meta["state"] in FINISHED
        pending = meta["state"] == "PENDING" and bool(meta.get("scheduler_id"))
        out["held"] = pending and meta.get("reason") in HELD_REASONS  # release lets it start
        out["never_runs"] = pending and meta.get("reason") in NEVER_REASONS  # it waits for what cannot come
        out["efficiency"] = job_efficiency(meta)
        out["program_exit"] = program_exit(meta)
        out["elapsed_of_limit"] = elapsed_of_limit(meta)
        try:
            out["where"], out["managed"] = self._where(meta), self._aimed(meta) is not None
        except SchedulerError:  # it cannot tell its own cluster's name now: the actions will say
            out["where"], out["managed"] = None, True
        for key in PUBLIC_TEXTS:  # any bytes: as text
            if isinstance(out.get(key), str):
                out[key] = name_text(out[key])
        return out

    def _aimed(self, meta, what=None):
        """This record's scheduler aimed at its job's cluster; for a record of
        another scheduler or a cluster it does not serve (read-only here, the
        README's identity rule) None, or with `what`, Conflict saying where
        it ran. A record older than the field is of our home cluster."""
        sched = self.scheduler
        if meta.get("scheduler") in (None, sched.name) and meta.get("cluster") in [None] + sched.clusters():
            return sched.on(meta.get("cluster"))
        if what:
            raise Conflict("This job ran %s, which this service does not manage: it cannot be %s here."
                           % (self._where(meta), what))
        return None

    def _where(self, meta):
        return SCHEDULERS.get(meta.get("scheduler"), type(self.scheduler)).PLACE % name_text(
            meta.get("cluster") or self.scheduler.home())

    def _ref(self, meta):
        """A record's job as Scheduler.each and the shared poll take it."""
        cluster = meta.get("cluster")
        return meta["scheduler_id"] + ("@" + cluster if cluster not in (None, self.scheduler.home()) else "")

    def _scan(self):
        """(items, broken) for every job, using the parse cache and the
        index: items are (id, row, meta), row a JobRow or a PackedRow, meta
        the full record of an unfinished job (or one whose accounting detail
        is pending, or whose row cannot be packed), None for a finished one
        (see _jobs)."""
        self._read_index()
        items, broken = [], []
        for job_id in self._item_ids(self.jobs_dir):
            hit = self._jobs.get(job_id)
            if not isinstance(hit, PackedRow):  # finished ones: no stat (10,000 jobs: 35 ms a list)
                try:
                    meta = self._job_meta(job_id)
                except (Conflict, NotFound) as e:
                    broken.append({"id": job_id, "broken": True, "reason": e.message})
                    continue
                hit = self._jobs.get(job_id)
                if not isinstance(hit, PackedRow):
                    items.append((job_id, hit[3] if hit and hit[2] is meta else job_row(meta), meta))
                    continue
            items.append((job_id, hit, None))
        return items, broken

    def _open_jobs(self):
        """(metas, broken): the jobs kept in full (unfinished, or with their
        accounting detail pending) and the lost ones (UNKNOWN: few) as {id,
        state}; other finished jobs are left out (a dict each of 10,000
        would stay as the worker's memory: see _scan)."""
        items, broken = self._scan()
        return [meta or {"id": job_id, "state": row.state} for job_id, row, meta in items
                if meta or row.state == "UNKNOWN"], broken

    def _index_path(self):
        return os.path.join(self.root, INDEX_FILE)

    def _read_index(self):
        """Take the rows of INDEX_FILE that still match their records, once
        a worker; a file that cannot be used is made again (see INDEX_FILE)."""
        if self._index_read:
            return
        self._index_read = True
        kept, dirty = {}, False  # all or none: a bad line makes the file unusable
        try:
            for job_id, row in index_rows(read_file(self._index_path(), INDEX_LIMIT)):
                if job_id in self._jobs:
                    continue
                try:
                    st = os.stat(self._job_path(job_id, "meta.json"))
                except OSError:  # removed meanwhile, or unreadable: its record says
                    dirty = True
                    continue
                if (st.st_mtime_ns, st.st_size) == (row.mtime_ns, row.size):
                    kept[job_id] = PackedRow.pack(row)  # packed at once: 10,000 JobRows held would stay as RSS
                else:
                    dirty = True
        except FileNotFoundError:
            self._index_dirty = True
            return
        except (OSError, ValueError) as e:  # UnusableFile and UnicodeDecodeError are ValueErrors
            log.warning("the job index cannot be used (%s): it is made again from the job records", e)
            self._index_dirty = True
            return
        self._jobs.update(kept)
        self._index_dirty = self._index_dirty or dirty
        give_back_memory()  # the file and its parse (10,000 jobs: ~4 MB)

    def _write_index(self, items):
        """Write INDEX_FILE with the finished jobs' rows, if they changed. A
        failure (a full disk) is logged: the list is served all the same."""
        if not self._index_dirty:
            return
        text = "\n".join(itertools.chain([json.dumps({"format": INDEX_FORMAT})], (
            json.dumps([job_id] + list(row.unpacked()), separators=(",", ":"))
            for job_id, row, meta in items if meta is None), [""]))
        try:
            with self._writing():
                atomic_write(self._index_path(), text)
        except (OSError, FlightJobError) as e:
            log.warning("the job index could not be written: %s", getattr(e, "message", e))
            return
        finally:
            del text
            give_back_memory()  # the text, and the records parsed for it (10,000 jobs: ~5 MB)
        self._index_dirty = False


# Store: job submission ######################################################


JOB_FOLDER_RE = re.compile(r"(?m)^#FLIGHTJOB[ \t]+job-folder[ \t]*$")  # see JobSubmit._job_folder
AFTER_CHOICES = 30  # the most of a user's jobs offered to start a submission after


def dependency_words(dependency, reason):
    """A pending job's reason in words that name the job it waits for."""
    dep_id = dependency.get("scheduler_id") or dependency.get("job_id")
    _, waits, never = DEPENDENCY_TYPES.get(dependency.get("type"), ("", "finish", "it never will"))
    if reason == "DependencyNeverSatisfied":
        return "will never run: it was to start once job %s would %s, and %s" % (dep_id, waits, never)
    return "waiting for job %s to %s" % (dep_id, waits)


class JobSubmit(StorePart):
    """Submitting a script: the questions a submit asks, a preview of what
    it would do, and the submit itself, recorded before the scheduler is
    asked."""

    def _submission_questions(self, meta, content=None, cluster=None):
        """(the questions a submit of the script asks, live; the partition
        view, see _partition_view): its template's (the generic ones when
        it is gone); an imported script's, with its #SBATCH values as the
        defaults (content: the text it runs, when already read)."""
        view = self._partition_view(cluster)
        if meta.get("origin"):
            if content is None:
                content = self._run_source(meta)[0]
            return directive_defaults(self._live_questions(IMPORTED_SUBMISSION, view), content, self.home), view
        found, _ = self.templates()
        t = found.get(meta.get("template_id"))
        return self._live_questions(t["submission_questions"] if t else GENERIC_SUBMISSION, view), view

    def _job_folder(self, meta, content, options, create):
        """The folder of its own a job of a script with the line
        "#FLIGHTJOB job-folder" (the shipped templates') runs in: <its
        working directory>/<the script's name>-<n>, n the first number
        after the highest taken; made (as the user, with the job's umask)
        when create, else the one a submit would make now. None for other
        scripts (an imported one runs where it is)."""
        if meta.get("origin") or not JOB_FOLDER_RE.search(content):
            return None
        base = job_outputs(content, options, 0, self.user, self.home)["results_dir"]
        stem = re.sub(r"[^A-Za-z0-9._-]+", "-", meta["name"]).strip("-.")[:64] or "job"
        try:
            with os.scandir(base) as entries:
                taken = (re.match(re.escape(stem) + r"-([0-9]{1,9})$", e.name) for e in entries)
                n = max([int(m.group(1)) for m in taken if m] + [0])
            for n in range(n + 1, n + 100 if create else n + 2):
                folder = os.path.join(base, "%s-%d" % (stem, n))
                with contextlib.suppress(FileExistsError):
                    if create:
                        os.mkdir(folder, 0o700)
                        os.chmod(folder, 0o777 & ~job_umask())  # not the worker's umask
                    return folder
        except OSError as e:
            message = "The working directory %s; change it in the script (#SBATCH --chdir)." % (
                folder_problem(base) or "%s cannot be used: %s" % (name_text(base), e.strerror or e))
            raise Invalid(message, {"working_dir": message})
        raise Conflict("No free folder name for the job in %s." % name_text(base))

    @operation("scripts.submission")
    def submission(self, id, from_job=None, cluster=None):
        """The submission questions; from_job: with the answers of that job
        of this script as their defaults (see _answers_of); cluster: the
        shared poll's partition summary (see _partition_view), given by the
        daemon. "cluster" in the answer: the partitions the user may use,
        with what is free in each (None when not known)."""
        meta = self._script_meta(id)
        (questions, view), source = self._submission_questions(meta, cluster=cluster), None
        if from_job is not None:
            questions, source = self._answers_of(id, from_job, questions)
        return {"script": self._script_public(meta), "questions": questions, "from_job": source,
                "scheduler": self._scheduler_state(), "cluster": view, "job_defaults": self._job_defaults(view),
                "after_choices": self._after_choices(),
                "dependency_types": [(k, v[0]) for k, v in DEPENDENCY_TYPES.items()]}

    def _job_defaults(self, view):
        """{partition: the scheduler's job_defaults() words} for the
        partitions of view (see _partition_view) where its defaults give a
        job a whole node or all its memory; {} when not known."""
        memory = {p["name"]: p.get("memory_mb") for p in self._info()["partitions"]} if view else {}
        out = {}
        for p in view["partitions"] if view else ():
            words = None
            with contextlib.suppress(SchedulerError):
                words = self.scheduler.job_defaults(dict(p, memory_mb=memory.get(p["name"])))
            if words and any(words.values()):
                out[p["name"]] = dict(words, default=bool(p.get("default")))
        return out

    def _association_problems(self, content, options):
        """{field: why} for an account or QOS the script or the answers name
        that is not among the user's own associations (its #SBATCH lines
        too: refused before sbatch, naming the allowed ones)."""
        eff = effective_options(content, options)
        wanted = {k: eff.get(k) for k in ("account", "qos") if isinstance(eff.get(k), str)}
        assoc = self._associations() if wanted and self.scheduler.ACCOUNTS else None
        problems = {}
        for key, kind, words in (("account", "accounts", "Account"), ("qos", "qos", "QOS")):
            mine = (assoc or {}).get(kind)
            if key in wanted and mine and wanted[key] not in mine:
                problems[key] = "%s: %r is not one of yours in Slurm's accounting (%s)" % (
                    words, wanted[key], ", ".join(mine[:20]))
        return problems

    def _after_choices(self):
        """The jobs a submission may start after: the user's newest
        AFTER_CHOICES that the scheduler has (unfinished ones first)."""
        items, _ = self._scan()
        items.sort(key=lambda item: item[0], reverse=True)
        items.sort(key=lambda item: item[1].state not in UNFINISHED)  # stable: newest first in each
        out = []
        for job_id, _, _ in items:
            if len(out) >= AFTER_CHOICES:
                break
            with contextlib.suppress(Conflict, NotFound):
                m = self._job_meta(job_id)
                if m.get("scheduler_id") and self._aimed(m):
                    out.append({"id": m["id"], "scheduler_id": m["scheduler_id"], "state": m["state"],
                                "script_name": name_text(m.get("script_name") or ""),
                                "submitted_at": m.get("submitted_at")})
        return out

    def _dependency(self, after):
        """after: {"job": one of the user's job ids, "type": one of
        DEPENDENCY_TYPES}, or None/{} for none -> the record's dependency
        ({"type", "job_id", "scheduler_id"}) or None. The scheduler's id is
        the one of the user's own record: never one the client names.
        Invalid, naming the field (after_job, after_type), otherwise."""
        if after in (None, {}, ""):
            return None
        if not isinstance(after, dict) or set(after) - {"job", "type"}:
            raise Invalid("after must be an object {job, type}.", {"after_job": "not understood"})
        job, kind = after.get("job"), after.get("type") or "afterok"
        if job in (None, ""):
            return None
        if kind not in DEPENDENCY_TYPES:
            raise Invalid("Start after: the kind must be one of %s." % ", ".join(DEPENDENCY_TYPES),
                          {"after_type": "must be one of %s" % ", ".join(DEPENDENCY_TYPES)})
        try:
            meta = self._job_meta(check_id(job, "job"))
        except (NotFound, Conflict):
            meta = None
        if not meta or not meta.get("scheduler_id") or not self._aimed(meta) or "_" in meta["scheduler_id"]:
            raise Invalid("Start after: that is not one of your jobs the scheduler has.",
                          {"after_job": "not one of your jobs the scheduler has"})
        return {"type": kind, "job_id": meta["id"], "scheduler_id": meta["scheduler_id"]}

    def _answers_of(self, script_id, job_id, questions):
        """(questions with job_id's answers as defaults, {id, scheduler_id,
        submitted_at, dropped, extra_options: its extra options as lines
        to type, refused: the scheduler's words when it refused the job}):
        NotFound unless it is a job of this user
        submitted from this script. An answer that no longer fits (its
        question gone, or no longer a valid answer to it) is dropped and
        listed with the reason; its question keeps its default."""
        job = self._job_meta(check_id(job_id, "job"))
        if job.get("script_id") != script_id:
            raise NotFound("No such job of this script.")
        answers, by_id, dropped = job.get("answers") or {}, {q["id"]: q for q in questions}, []
        kept = {}
        for qid, value in answers.items():
            if qid not in by_id:
                dropped.append({"id": qid, "text": qid, "value": value, "reason": "no longer asked"})
                continue
            try:
                convert_answer(dict(by_id[qid], required=False), value, self.home)
                kept[qid] = value
            except ValueError as e:
                dropped.append({"id": qid, "text": by_id[qid]["text"], "value": value, "reason": str(e)})
        return ([dict(q, default=kept[q["id"]]) if q["id"] in kept else q for q in questions],
                {"id": job["id"], "scheduler_id": job.get("scheduler_id"), "submitted_at": job["submitted_at"],
                 "dropped": dropped, "label": job_label(job), "extra_options": extra_options_text(job.get("extra_options")),
                 "refused": job.get("reason_text") if job.get("reason") == "SubmissionRefused" else None})

    @operation("jobs.preview")
    def preview(self, script, answers=None, cluster=None, after=None, extra_options=None):
        """What a submit would do: checked answers, the options they become,
        the exact command and where output goes; Invalid for bad answers
        (a partition the user may not use among them). after: start after
        one of the user's jobs (see _dependency); extra_options: sbatch
        options of the user's own, one a line (check_extra_options)."""
        return self._plan(script, answers, cluster, after, extra_options)[0]

    def _plan(self, script, answers, cluster=None, after=None, extra_text=None, create=False, make_folders=False):
        """(preview's answer, the content a submit sends): the script's, or
        for one that runs where it is, its file as it is now (_run_source),
        in its directory (--chdir, after the answers' and the extra options)."""
        meta = self._script_meta(script)
        content, chdir, run_in = self._run_source(meta)
        questions, view = self._submission_questions(meta, content, cluster)
        bad = []

        def checked(check):  # each problem said together with the others
            try:
                return check()
            except Invalid as e:
                bad.append(e)
        values = checked(lambda: check_answers(questions, answers or {}, self.home))
        dependency = checked(lambda: self._dependency(after))
        asked = dict({q["option"]: "the question “%s”" % q["text"] for q in questions if q.get("option")},
                     **({"dependency": "“Start after”"} if dependency else {}))
        extra = checked(lambda: check_extra_options(extra_text, asked))
        if bad:
            raise Invalid(" ".join(e.message for e in bad), dict(kv for e in bad for kv in e.fields.items()))
        options = submission_options(questions, values) + extra + chdir
        cluster = effective_options(content, options).get("clusters")
        cluster = cluster if cluster in self.scheduler.clusters() else self.scheduler.home()
        wrong = self._association_problems(content, options) if cluster == self.scheduler.home() else {}
        if wrong:
            ids = {q.get("option"): q["id"] for q in questions}
            raise Invalid(" ".join(v + "." for v in wrong.values()), {ids.get(k, k): v for k, v in wrong.items()})
        if dependency and (self._job_meta(dependency["job_id"]).get("cluster") or self.scheduler.home()) != cluster:
            raise Invalid("Start after: that job runs on another cluster; a job can wait only for one on its own.",
                          {"after_job": "runs on another cluster"})
        folder = self._job_folder(meta, content, options, False)
        problems = launch_problems(job_outputs(content, options + (["--chdir=%s" % folder] if folder else []),
                                               "%j", self.user, self.home), made=folder)
        if create and problems and not (make_folders and all(p[3].endswith("does not exist") for p in problems)):
            message = "The job would fail at launch: %s." % "; ".join(
                "it could not %s %s: %s" % (w, name_text(p), why) for w, p, _, why in problems)
            raise Invalid(message, {"make_folders": message})
        folder = self._job_folder(meta, content, options, True) if create and folder else folder
        options += ["--chdir=%s" % folder] if folder else []
        for _, _, missing, _ in problems if create else ():
            make_dirs(missing, 0o777 & ~job_umask())
        if dependency:
            options.append("--dependency=%s:%s" % (dependency["type"], dependency["scheduler_id"]))
        outputs = self._outputs(content, options, "%j")
        cmd = self.scheduler.command(os.path.join(self.jobs_dir, "<job>", "script.sh"), options)
        ignored = self.scheduler.ignored_options(content, options)
        mem = set(effective_options(content, options)) & {"mem", "mem-per-cpu", "mem-per-gpu"}
        defaults = self._job_defaults(view)
        partition = (effective_options(content, options).get("partition") or "").split(",")[0] or next(
            (name for name, d in defaults.items() if d["default"]), None)
        given = defaults.get(partition) or {} if cluster == self.scheduler.home() else {}
        return ({"script": self._script_public(meta), "questions": questions, "answers": values, "mem_asked": bool(mem),
                 "extra_options": extra,
                 "job_defaults": [w for w in (given.get("exclusive"), None if mem else given.get("memory")) if w],
                 "options": options, "command": cmd, "command_text": " ".join(shlex.quote(a) for a in cmd),
                 "outputs": outputs, "ignored_options": ignored, "scheduler": self.scheduler.name,
                 "problems": [{"what": w, "path": name_text(p), "folder": name_text(f), "why": why,
                               "missing": why.endswith("does not exist")} for w, p, f, why in problems],
                 "script_file": meta["origin"]["file"] if run_in else None,
                 "run_in": name_text(run_in) if run_in else None, "dependency": dependency,
                 "cluster": cluster}, content)

    @operation("jobs.submit", writes=True)
    def job_submit(self, script, answers=None, cluster=None, after=None, make_folders=False, extra_options=None):
        """Submit a script: the job keeps a snapshot of the script (for one
        that runs where it is, of its file as it was read for this submit).
        A refusal by the scheduler is a FAILED job carrying the scheduler's
        message. What would fail at launch (launch_problems) is refused,
        naming make_folders; make_folders: true makes the missing folders.
        extra_options: as preview's; the job keeps them (extra_options)."""
        plan, content = self._plan(script, answers, cluster, after, extra_options, create=True,
                                   make_folders=make_folders is True)

        def make(job_id):
            command = self.scheduler.command(self._job_path(job_id, "script.sh"), plan["options"])
            return (new_job_record(job_id, plan, self.scheduler.name, command, now_iso()),
                    {"script.sh": content})
        job_id = self._create_dir(self.jobs_dir, make)["id"]
        fault("submit.after_record")
        try:
            scheduler_id = self.scheduler.submit(self._job_path(job_id, "script.sh"), plan["options"], self.home)
        except SchedulerNoAnswer as e:  # it may have the job: refresh looks for it (_settle_submits)
            changes = {"reason": "SubmitUnanswered",
                       "reason_text": "the outcome of the submission is not known yet (%s): looking for "
                                      "the job in the scheduler's queue" % e.message}
        except SchedulerError as e:
            refused = isinstance(e, SchedulerRefused)
            changes = {"state": "FAILED", "raw_state": "REFUSED" if refused else "SUBMIT_FAILED",
                       "reason": "SubmissionRefused" if refused else "SubmitFailed",
                       "reason_text": ("the scheduler refused the job: " if refused else
                                       "the job could not be submitted: ") + e.message,
                       "ended_at": now_iso()}
        else:
            fault("submit.before_answer")
            changes = self._submitted(content, plan["options"], scheduler_id)
        job = self._public_job(self._update_job(job_id, changes))
        fault("submit.after_answer")
        if not job["finished"]:
            self.has_unfinished = True
        return job

    def _submitted(self, content, options, ref):
        """A job record's changes once the scheduler has it as ref (its id,
        "@cluster" where sbatch named one): where its output goes as the
        scheduler tells, else worked out (job_outputs), marked a guess where
        the scheduler could have told."""
        scheduler_id, _, cluster = ref.partition("@")
        changes = dict(self._outputs(content, options, scheduler_id), scheduler_id=scheduler_id,
                       raw_state="PENDING", reason="None", reason_text="submitted")
        if cluster:
            changes["cluster"] = cluster
        told = {}
        with contextlib.suppress(SchedulerError, NotFound):
            sched = self.scheduler.on(cluster or None)
            if sched.TELLS_OUTPUTS and effective_options(content, options).get("array") in (None, True):
                changes["outputs_guessed"] = True
                told = sched.describe([scheduler_id]).get(scheduler_id) or {}
        if told.get("stdout"):
            changes.update(results_dir=told["workdir"] or changes["results_dir"], stdout_path=told["stdout"],
                           stderr_path=told["stderr"] or told["stdout"], outputs_guessed=False)
        return changes

    def _outputs(self, content, options, job_id):
        """Where a job's output goes (job_outputs), for an array job its
        first task's; a bad array range is left to the scheduler to refuse."""
        spec = effective_options(content, options).get("array")
        tasks = None
        if spec not in (None, True):
            with contextlib.suppress(ValueError):
                tasks = array_tasks(spec)
        return job_outputs(content, options, job_id, self.user, self.home, tasks)


# Store: job status ##########################################################


POLLED_IDS = 2000  # the most of one user's unfinished jobs the shared poll follows (the newest)


def outside_job_record(job_id, scheduler, scheduler_id, status, detail, now):
    """A job the user submitted outside flightjobd (sbatch in a shell) that
    a status poll saw: a record like ours, origin "outside", with no script
    of ours, tracked until it ends (scheduler: aimed at its cluster)."""
    name = detail.get("name") or "job %s" % scheduler_id
    plan = {"script": {"id": "", "name": name}, "answers": {}, "options": [], "ignored_options": [],
            "cluster": scheduler.home()}
    record = new_job_record(job_id, plan, scheduler.name, None, now)
    stdout = detail.get("stdout") or None
    record.update(status, origin="outside", scheduler_id=scheduler_id, job_name=name, results_dir=detail.get("workdir") or None,
                  stdout_path=stdout, stderr_path=detail.get("stderr") or stdout)
    return record


OUTSIDE_IMPORTS = 100  # the most outside jobs a refresh takes in


class JobStatus(StorePart):
    """Keeping unfinished jobs up to date with the scheduler: its statuses
    (asked here, or handed by the shared poll) applied to the records,
    submits of unknown outcome settled, outside jobs taken in."""

    last_refresh = 0.0  # when the jobs were last brought up to date (time.time())

    def refresh(self):
        """A page's look: at most every scheduler.refresh_interval, asking the
        scheduler here unless the shared poll serves the user."""
        if time.time() - self.last_refresh < self.config["scheduler"]["refresh_interval"]:
            return self._scheduler_state()
        return self._update(ask=not self.shared_poll())

    @operation("jobs.ask_scheduler")
    def ask_scheduler(self):
        """Ask the scheduler now (ONE status call): the background refresh, and
        the shared poll's pass for the local scheduler or hidden jobs."""
        return self._update(ask=True)

    @operation("jobs.take_statuses")
    def take_statuses(self, statuses=None, notice=None, outside=None):
        """Record what the shared poll (StatusPoll) hands, as only the worker
        may write in the home: statuses (scheduler id -> status; None: not
        found; ids not in it were not polled), or the notice of why it failed
        (no job changes); outside: the user's jobs not flightjobd's (job id ->
        status), each made a record (outside_job_record). None: the ids only."""
        return self._update(statuses=statuses, notice=notice, outside=outside)

    def _update(self, statuses=None, notice=None, outside=None, ask=False):
        """Settle unknown submits, record the statuses given (or, ask, asked)."""
        self.last_refresh = time.time()
        problems = []
        try:  # only our scheduler's and clusters' records: others' are read-only here
            metas = [m for m in self._open_jobs()[0] if self._aimed(m)]
        except SchedulerError as e:
            self.notice = e.message
            return self._scheduler_state()
        unsure = [m for m in metas if m["state"] in UNFINISHED and not m.get("scheduler_id")]
        if unsure:
            try:
                self._settle_submits(unsure)
            except SchedulerError as e:
                problems.append(e.message)
            metas = [m for m in self._open_jobs()[0] if self._aimed(m)]
        pending = [m for m in metas if m.get("scheduler_id") and (
            m["state"] in UNFINISHED or m.get("detail_pending") and not self._detail_given_up(m))]
        unfinished = sum(m["state"] in UNFINISHED and not m.get("scheduler_id") for m in metas)
        if statuses is None and ask and notice is None and (pending or self.scheduler.SHARED_POLL):
            try:  # asked here: with the user's jobs not submitted here where the scheduler lists them
                statuses, outside = self._statuses(pending, outside=True)
            except SchedulerError as e:
                problems.append(e.message)
        if statuses is not None:  # None: polled, not found; ids not in it were not polled
            asked = [m for m in pending if self._ref(m) in statuses]
            unfinished += len(pending) - len(asked) + self._apply_statuses(
                asked, {i: st for i, st in statuses.items() if st is not None})
        else:
            unfinished += len(pending)
        if outside and not unsure:  # a submit not settled could be one of them
            try:
                unfinished += self._take_outside(outside, metas, pending)
            except SchedulerError as e:
                problems.append(e.message)
        if notice is not None:
            problems.append(notice)
        if problems or statuses is not None or (pending and ask and notice is None):  # a shared poll's notice
            self.notice = "; ".join(problems) or None  # stays until the next poll's answer
            for problem in problems:
                log.warning("status refresh failed: %s", problem)
        return self._refreshed(unfinished)

    def _detail_given_up(self, meta):
        """A finished job whose accounting detail has not come in twice the
        scheduler's ACCOUNTING_LAG: it is left as it is (True; the mark is
        cleared)."""
        lag = self.scheduler.ACCOUNTING_LAG
        if time.time() - (parse_iso(meta.get("ended_at")) or 0) <= 2 * lag:
            return False
        self._update_job(meta["id"], {"detail_pending": False})
        return True

    def _take_outside(self, outside, metas, pending):
        """Record the user's jobs submitted outside flightjobd that the poll
        saw unfinished and no record follows (at most OUTSIDE_IMPORTS a
        time); one whose batch script is in our jobs directory is ours (a
        submit being settled), and one a record lost (UNKNOWN) is that
        record's: both are left alone. How many it took."""
        known = {self._ref(m) for m in pending}
        for m in metas:  # the lost are few: read in full
            with contextlib.suppress(Conflict, NotFound):
                if m["state"] == "UNKNOWN" and self._job_meta(m["id"]).get("scheduler_id"):
                    known.add(self._ref(self._job_meta(m["id"])))
        new = [i for i, st in sorted(outside.items()) if i not in known and JOB_REF_RE.match(i)
               and isinstance(st, dict) and st.get("state") in UNFINISHED][:OUTSIDE_IMPORTS]
        taken = 0
        for sched, ids in self.scheduler.each(new):
            detail = sched.describe(list(ids))  # where its output goes, as the scheduler tells
            for scheduler_id, ref in ids.items():
                d = detail.get(scheduler_id, {})
                if not (d.get("command") or "").startswith(self.jobs_dir + os.sep):
                    record = outside_job_record(None, sched, scheduler_id, outside[ref], d, now_iso())
                    self._create_dir(self.jobs_dir, lambda job_id: (dict(record, id=job_id), {}))
                    log.info("job %s submitted outside flightjobd is followed", ref)
                    taken += 1
        return taken

    def _settle_submits(self, unsure):
        """Submits whose outcome is not known (the scheduler did not answer,
        or the daemon or worker was killed in between) would stay "being
        submitted" forever. A job the scheduler has for the record's script
        becomes the record's (a submit is never repeated); past any submit's
        time bound, one it does not have is UNKNOWN: it may or may not have
        run. A scheduler that does not answer decides nothing."""
        scripts = {m["id"]: self._job_path(m["id"], "script.sh") for m in unsure}
        found = {}
        for cluster in {m.get("cluster") for m in unsure}:  # each asked where it was sent
            sched = self.scheduler.on(cluster)
            found.update((path, job_id if sched is self.scheduler else "%s@%s" % (job_id, cluster)) for path, job_id
                         in sched.find_submitted([scripts[m["id"]] for m in unsure if m.get("cluster") == cluster]).items())
        bound = self.config["worker"]["request_timeout"] + self.config["scheduler"]["timeout"]
        for m in unsure:
            scheduler_id = found.get(scripts[m["id"]])
            if scheduler_id:
                log.warning("job %s found in the scheduler as %s", m["id"], scheduler_id)
                self._update_job(m["id"], self._submitted(self._read_text(scripts[m["id"]]),
                                                          m.get("options", []), scheduler_id))
            elif time.time() - (parse_iso(m.get("submitted_at")) or 0) > bound:
                self._update_job(m["id"], {
                    "state": "UNKNOWN", "raw_state": "SUBMIT_INTERRUPTED", "reason": "SubmitInterrupted",
                    "reason_text": "the submission was interrupted (the scheduler did not answer, or the "
                                   "service stopped while submitting) and the scheduler does not list the "
                                   "job: it may or may not have run; check its output",
                    "ended_at": now_iso()})

    def _apply_statuses(self, pending, found):
        """Record the scheduler's status (found: scheduler id -> status) of
        the pending jobs; one it no longer lists is UNKNOWN after
        scheduler.unknown_grace. Returns how many are still unfinished."""
        grace = self.config["scheduler"]["unknown_grace"]
        unfinished = 0
        for m in pending:
            status = found.get(self._ref(m))
            if m["state"] not in UNFINISHED:  # finished, waiting for sacct's detail: never unfinished again
                changes = self._status_changes(m, status) if status and status["state"] in FINAL_STATES \
                    else {"detail_pending": False}
            elif status is None:
                since = parse_iso(m.get("missing_since")) or time.time()
                changes = {"missing_since": now_iso(since)}
                if time.time() - since >= grace:
                    changes.update(state="UNKNOWN", raw_state="UNKNOWN", reason="Unknown",
                                   reason_text="the scheduler no longer knows this job")
            else:
                changes = dict(self._status_changes(m, status), missing_since=None)
            if any(m.get(k) != v for k, v in changes.items()):
                m = self._update_job(m["id"], changes)
            unfinished += m["state"] in UNFINISHED or bool(m.get("detail_pending"))
        return unfinished

    @staticmethod
    def _status_changes(meta, status):
        changes = {k: v for k, v in status.items() if k not in ("format", "supervisor", "pgid")}
        if changes.get("reason_text") == "cancelled" and meta.get("cancel_requested_at"):
            changes["reason_text"] = "cancelled by the user"  # through us; sacct may lag
        if meta.get("cancelled_tasks") and changes.get("tasks") is not None:
            # Slurm forgets a waiting task cancelled on its own (neither squeue nor sacct has it)
            seen = {t["id"] for t in changes["tasks"]}
            gone = [{"id": t, "state": "CANCELLED", "raw_state": "CANCELLED", "exit_code": None,
                     "reason_text": "cancelled by the user"} for t in meta["cancelled_tasks"] if t not in seen]
            if gone:
                number = (lambda t: t["id"].rpartition("_")[2])
                changes["tasks"] = sorted(changes["tasks"] + gone, key=lambda t: (len(number(t)), number(t)))
        if changes.get("reason") == "JobLaunchFailure":  # why, in words: Slurm's are in slurmd's log
            changes["reason_text"] = next((LAUNCH_FAILURE + ": could not %s %s: %s" % (what, name_text(path), problem)
                                           for what, path, _, problem in launch_problems(meta)), LAUNCH_FAILURE)
        if meta.get("dependency") and changes.get("state") == "PENDING" and \
                changes.get("reason") in ("Dependency", "DependencyNeverSatisfied"):
            changes["reason_text"] = dependency_words(meta["dependency"], changes["reason"])
        return changes

    def _refreshed(self, unfinished):
        """What a refresh tells: the scheduler's state, how many jobs are
        unfinished, the scheduler ids of those the scheduler has (the shared
        poll's; the newest POLLED_IDS) and the scheduler calls made so far."""
        self.has_unfinished = unfinished > 0
        ids = sorted(((m["id"], self._ref(m)) for m in self._open_jobs()[0] if self._aimed(m)
                      and (m["state"] in UNFINISHED or m.get("detail_pending")) and m.get("scheduler_id")),
                     reverse=True)
        return dict(self._scheduler_state(), unfinished=unfinished, calls=dict(self.scheduler.counters),
                    ids=[i for _, i in ids[:POLLED_IDS]])

    def _await_settled(self, ids, settled=lambda meta: meta["state"] not in UNFINISHED):
        """After the user cancelled jobs (ids): their true states, once the
        scheduler has them, for at most 2 s while any is not settled yet
        (settled(record)), with ONE status call a round for those; a
        scheduler error leaves them to a later refresh."""
        for round in range(21):
            metas = []
            for id in ids:
                with contextlib.suppress(Conflict, NotFound):
                    metas.append(self._job_meta(id))
            metas = [m for m in metas if not settled(m)]
            if not metas or round == 20:
                break
            if round:
                time.sleep(0.1)
            with contextlib.suppress(SchedulerError):
                self._apply_statuses(metas, self._statuses(metas)[0])
        self.has_unfinished = any(m["state"] in UNFINISHED for m in self._open_jobs()[0])

    def _statuses(self, metas, outside=False):
        """({ref: status} of these records' jobs, {ref: status} of the user's
        unfinished jobs not among them, with outside where the scheduler
        lists them): each cluster asked on its own."""
        refs = [self._ref(m) for m in metas]
        if outside and self.scheduler.SHARED_POLL:
            found, _, others, undecided = self.scheduler.poll({os.getuid(): refs})
            return {i: st for i, st in found.items() if i not in undecided}, others.get(os.getuid(), {})
        found = {}
        for sched, ids in self.scheduler.each(refs):
            found.update((ids[i], st) for i, st in sched.status(list(ids)).items() if i in ids)
        return found, None

    def _restatus(self, id):
        """The job's record brought up to date with the scheduler's status
        at once (the user's own action), whatever the refresh interval."""
        meta = self._job_meta(id)
        with contextlib.suppress(SchedulerError):
            self._apply_statuses([meta], self._statuses([meta])[0])
        return self._public_job(self._job_meta(id))


# Store: job control #########################################################


class JobControl(StorePart):
    """One job: shown, cancelled (or one array task), held, released, given
    a new time limit, its record removed."""

    @operation("jobs.get")
    def job_get(self, id, script=False):
        self._job_meta(id)  # 404 before any scheduler call
        scheduler_state = self.refresh()
        out = self._public_job(self._job_meta(id))
        out["scheduler_state"] = scheduler_state
        if script:
            out["script_content"] = None if out.get("origin") == "outside" else \
                self._read_text(self._job_path(id, "script.sh"))
            self._task_outputs(out)
        return out

    def _task_outputs(self, job):
        """Each array task's output file, as a path in the job's results
        directory (for /jobs/ID/files/PATH, through its path gate), or None
        where it is not in there."""
        if not job.get("tasks") or not job.get("script_content") or not job.get("results_dir"):
            return
        root = job["results_dir"].rstrip("/") + "/"
        look = len(job["tasks"]) <= 2000  # else linked unseen: a stat each is too many
        for t in job["tasks"]:
            _, _, task = str(t.get("id")).partition("_")
            t["output"] = None
            if task.isdigit():
                where = job_outputs(job["script_content"], job.get("options") or [], job["scheduler_id"],
                                    self.user, self.home, [int(task)])
                if where["stdout_path"].startswith(root) and (not look or os.path.lexists(where["stdout_path"])):
                    t["output"] = name_text(where["stdout_path"][len(root):])

    @operation("jobs.cancel", writes=True)
    def job_cancel(self, id):
        meta = self._job_meta(id)
        if meta["state"] in UNFINISHED and meta.get("scheduler_id"):
            self._aimed(meta, "cancelled").cancel(meta["scheduler_id"])
            self._update_job(id, {"cancel_requested_at": now_iso()})
            self._await_settled([id])
        return self._public_job(self._job_meta(id))

    def _on_pending(self, id, what, act):
        """act(its scheduler aimed at it, its scheduler id) for a job the
        scheduler has that has not started, then its record brought up to
        date; Conflict, saying so, for another."""
        meta = self._job_meta(id)
        if meta["state"] != "PENDING" or not meta.get("scheduler_id"):
            raise Conflict("Only a pending job can be %s: this one is %s." % (what, meta["state"].lower()))
        act(self._aimed(meta, what), meta["scheduler_id"])
        return self._restatus(id)

    @operation("jobs.hold", writes=True)
    def job_hold(self, id):
        """Keep a pending job from starting (scheduler's hold)."""
        return self._on_pending(id, "held", lambda sched, job_id: sched.hold(job_id))

    @operation("jobs.release", writes=True)
    def job_release(self, id):
        """Let a held job start (scheduler's release)."""
        return self._on_pending(id, "released", lambda sched, job_id: sched.release(job_id))

    @operation("jobs.time_limit", writes=True)
    def job_time_limit(self, id, time_limit=None):
        """Change a pending job's time limit (a Slurm time, as the time
        question takes it): Invalid naming time_limit for a bad one; the
        scheduler's refusal (past the partition's MaxTime) as SchedulerRefused."""
        def act(sched, job_id):
            try:
                if not isinstance(time_limit, str) or not time_limit.strip():
                    raise ValueError("give the new time limit (%s)" % TIME_HELP)
                seconds = time_limit_seconds(time_limit[:40])
                if seconds == 0:
                    raise ValueError("give more than none (a job with no time would be ended as it starts)")
            except ValueError as e:
                raise Invalid("Time limit: %s." % e, {"time_limit": "Time limit: %s" % e})
            sched.set_time_limit(job_id, seconds)
        return self._on_pending(id, "given a new time limit", act)

    @operation("jobs.cancel_task", writes=True)
    def job_cancel_task(self, id, task=None):
        """Cancel one task of an array job: task is its number, one of the
        record's unfinished tasks (NotFound for another, Conflict when it
        has finished)."""
        meta = self._job_meta(id)
        found = [t for t in meta.get("tasks") or [] if isinstance(task, str) and re.match(r"^[0-9]{1,7}$", task)
                 and t.get("id") == "%s_%s" % (meta.get("scheduler_id"), task)]
        if not found:
            raise NotFound("This job has no task %s." % name_text(str(task))[:20])
        if found[0]["state"] not in UNFINISHED or meta["state"] not in UNFINISHED:
            raise Conflict("Task %s has already finished." % task)
        self._aimed(meta, "cancelled").cancel(found[0]["id"])
        cancelled = [t for t in meta.get("cancelled_tasks") or [] if t != found[0]["id"]][-4999:]  # bounded: a record is read whole
        self._update_job(id, {"cancelled_tasks": cancelled + [found[0]["id"]]})
        self._await_settled([id], lambda meta: meta["state"] not in UNFINISHED or any(
            t.get("id") == found[0]["id"] and t.get("state") not in UNFINISHED for t in meta.get("tasks") or []))
        return self._public_job(self._job_meta(id))

    @operation("jobs.delete", writes=True)
    def job_delete(self, id):
        """Remove a finished job's record; results are never touched."""
        with self._writing():
            meta = self._job_meta(id, cached=False)
            if meta["state"] in UNFINISHED:
                raise Conflict("This job has not finished: cancel it first, or wait.")
            self._remove_dir(self._job_path(id))
        self._jobs.pop(id, None)
        self._index_dirty = True
        return {"deleted": id}


# Store: job list ############################################################


ACTIVITY_JOBS = 100  # unfinished jobs a page's tab is told of, and jobs it may ask after (jobs.activity)
HOME_JOBS = 8  # the jobs the home page lists (jobs.overview)


def _brief_job(meta):
    """A job as a tab's title and notifications name it."""
    return {"id": meta["id"], "scheduler_id": meta.get("scheduler_id"), "name": meta.get("script_name"),
            "state": meta["state"], "raw_state": meta.get("raw_state"), "reason_text": meta.get("reason_text"),
            "started_at": meta.get("started_at"), "ended_at": meta.get("ended_at")}


# The jobs list's columns a user may show or hide (the job and its state
# always show): key -> (heading, shown until the user chooses). The choice
# is kept in SETTINGS_FILE in the user's state directory (jobs.columns).
JOB_COLUMNS = {"name": ("Name", True), "script": ("Script", True), "reason": ("Reason", True),
               "raw": ("Scheduler state", False), "partition": ("Partition", False),
               "nodes": ("Nodes / CPUs", False), "elapsed": ("Elapsed / limit", True),
               "submitted": ("Submitted", True), "started": ("Started", True), "ended": ("Ended", True),
               "cpu": ("CPU", True), "memory": ("Memory", True), "time": ("Time", True)}
SETTINGS_FILE = "settings.json"
SETTINGS_LIMIT = 64 << 10  # the largest settings file read


def job_columns(columns):
    """The columns chosen (a list of JOB_COLUMNS keys), each once, in the
    list's order; Invalid naming one that is not a column."""
    if not _texts(columns):
        raise Invalid("columns: give a list of column names.", {"columns": "a list of column names"})
    bad = [c for c in columns if c not in JOB_COLUMNS]
    if bad:
        raise Invalid("columns: there is no column %r; use any of %s." % (bad[0][:40], ", ".join(JOB_COLUMNS)),
                      {"columns": "unknown column"})
    return [c for c in JOB_COLUMNS if c in columns]


BULK_IDS = 100  # the most jobs one bulk action may name
BULK_ACTIONS = tuple(BULK_WORDS)


def bulk_ids(ids, action):
    """The ids of a bulk action, each once, in order; BadRequest for an
    action not in BULK_ACTIONS, no ids, or more than BULK_IDS."""
    if action not in BULK_ACTIONS:
        raise BadRequest("action: use %s." % " or ".join(BULK_ACTIONS), {"action": " or ".join(BULK_ACTIONS)})
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids) or not ids:
        raise BadRequest("id: select at least one job.", {"id": "select at least one job"})
    ids = list(dict.fromkeys(ids))
    if len(ids) > BULK_IDS:
        raise BadRequest("id: at most %d jobs at a time (%d selected)." % (BULK_IDS, len(ids)),
                         {"id": "at most %d jobs" % BULK_IDS})
    return ids


class JobList(StorePart):
    """The jobs list: searched, sorted and paged in the index; the columns
    the user chose for it; what a tab shows of the user's jobs; bulk cancel,
    remove, hold and release."""

    @operation("jobs.list")
    def jobs_list(self, state=None, page=1, per_page=50, q=None, sort=None, order=None, since=None, until=None):
        """One page of the jobs that match: state, q (in the job's name,
        script, scheduler id or state, any case), submitted between since
        and until (dates, both included), sorted by a JOB_SORTS column
        (order asc or desc). Searched and sorted in the index: only the page
        shown reads records in full. BadRequest naming a bad parameter."""
        if state is not None and state not in STATES:
            raise BadRequest("state: unknown state %r; use one of %s." % (str(state)[:40], ", ".join(STATES)),
                             {"state": "unknown state"})
        if not _whole(page) or page < 1:
            raise BadRequest("page: give 1 or more.", {"page": "1 or more"})
        if not _whole(per_page) or not 1 <= per_page <= 500:
            raise BadRequest("per_page: give 1 to 500.", {"per_page": "1 to 500"})
        typed, (q, sort, descending) = q, list_query(q, sort, order, JOB_SORTS, "submitted")
        since, until = list_date(since, "from"), list_date(until, "to")
        if since and until and since > until:
            raise BadRequest("from: the first day is after the last (to).", {"from": "after to"})
        scheduler_state = self.refresh()
        items, broken = self._scan()
        self._write_index(items)
        first = parse_iso(since + "T00:00:00Z") if since else None
        last = parse_iso(until + "T23:59:59Z") if until else None

        q_utf8 = q.encode("utf-8", "surrogatepass") if q else None

        def wanted(row):
            return ((not state or row.state == state)
                    and (not q or q in STATE_FOLDED[row.state] or row_has(row, q, q_utf8))
                    and (first is None or row.submitted is not None and row.submitted >= first)
                    and (last is None or row.submitted is not None and row.submitted <= last))
        rows = [item for item in items if wanted(item[1])]  # _scan's items: no new tuple each (see sorted_by)
        rows.sort(key=lambda item: item[0], reverse=True)  # ids are in submission order: newest first among equals
        rows = sorted_by(rows, JOB_SORTS, sort, descending, lambda item: item[1])
        start = (page - 1) * per_page
        shown = []
        for job_id, _, _ in rows[start:start + per_page]:
            with contextlib.suppress(Conflict, NotFound):  # removed meanwhile by another daemon
                shown.append(self._public_job(self._job_meta(job_id)))
        return {"jobs": shown, "columns": self._job_columns(),
                "broken": broken, "total": len(rows), "page": page, "per_page": per_page,
                "query": {"state": state, "q": typed or None, "sort": sort, "order": "desc" if descending else "asc",
                          "from": since, "to": until},
                "scheduler": scheduler_state}

    def _job_columns(self):
        """The columns the user chose for the list (SETTINGS_FILE), or the
        defaults while they have not chosen (or the file cannot be used:
        said in the log, never an error)."""
        try:
            settings = parse_json(read_file(os.path.join(self.root, SETTINGS_FILE), SETTINGS_LIMIT))
            return job_columns(settings["job_columns"])
        except FileNotFoundError:
            pass
        except (OSError, ValueError, TypeError, KeyError, FlightJobError) as e:  # edited by hand: anything
            log.warning("%s cannot be used (%s): the list shows its default columns", SETTINGS_FILE,
                        getattr(e, "message", e))
        return [c for c, (_, shown) in JOB_COLUMNS.items() if shown]

    @operation("jobs.columns", writes=True)
    def jobs_columns(self, columns=None):
        """Keep the columns the user chose for the jobs list (JOB_COLUMNS
        keys; the rest hidden), in SETTINGS_FILE: {"columns": those kept}."""
        columns = job_columns(columns)
        with self._writing():
            write_json(os.path.join(self.root, SETTINGS_FILE), {"format": FORMAT, "job_columns": columns})
        return {"columns": columns}

    @operation("jobs.activity")
    def jobs_activity(self, watch=None):
        """What every page's tab shows of the user's jobs (the title, the
        icon, notifications): how many are pending and running, the newest
        ACTIVITY_JOBS of them, and the state now of each job in `watch`
        (ids the page last saw unfinished, at most ACTIVITY_JOBS; one
        removed since is left out), each briefly."""
        watch = [] if watch is None else watch
        if not _texts(watch) or len(watch) > ACTIVITY_JOBS:
            raise Invalid("watch must be at most %d job ids." % ACTIVITY_JOBS, {"watch": "at most %d job ids"
                                                                                % ACTIVITY_JOBS})
        scheduler_state = self.refresh()
        unfinished = sorted((m for m in self._open_jobs()[0] if m["state"] in UNFINISHED),
                            key=lambda m: m["id"], reverse=True)
        shown = {m["id"] for m in unfinished[:ACTIVITY_JOBS]}
        watched = []
        for job_id in dict.fromkeys(watch):
            if ID_RE.match(job_id) and job_id not in shown:
                with contextlib.suppress(Conflict, NotFound):  # removed, or broken, since
                    watched.append(self._job_meta(job_id))
        return {"counts": {state: sum(m["state"] == state for m in unfinished) for state in UNFINISHED},
                "unfinished": [_brief_job(m) for m in unfinished[:ACTIVITY_JOBS]],
                "watched": [_brief_job(m) for m in watched], "scheduler": scheduler_state}

    @operation("jobs.overview")
    def jobs_overview(self, cluster=None):
        """What the home page shows: the user's unfinished jobs, then their
        newest finished ones (HOME_JOBS in all, newest first, in the public
        view); how many are pending and running; how many scripts they
        have; and the partitions they may use with what is free in each
        (see _partition_view; cluster as for scripts.submission)."""
        scheduler_state = self.refresh()
        items, broken = self._scan()
        self._write_index(items)
        unfinished = sorted((job_id for job_id, row, _ in items if row.state in UNFINISHED), reverse=True)
        newest = sorted((job_id for job_id, row, _ in items if row.state not in UNFINISHED), reverse=True)
        shown = []  # ids are in submission order; no tuple made per job (see sorted_by)
        for job_id in (unfinished + newest)[:HOME_JOBS]:
            with contextlib.suppress(Conflict, NotFound):  # removed meanwhile by another daemon
                shown.append(self._public_job(self._job_meta(job_id)))
        return {"jobs": shown, "total": len(items), "broken": len(broken),
                "counts": {state: sum(row.state == state for _, row, _ in items) for state in UNFINISHED},
                "scripts": len(self._item_ids(self.scripts_dir)), "cluster": self._partition_view(cluster),
                "scheduler": scheduler_state}

    @operation("jobs.pick")
    def jobs_pick(self, ids, action):
        """What a bulk action would do to each of ids (see jobs_bulk): per
        id {id, scheduler_id, name, state, can, why}, or {id, can: False,
        why} for one that is not a job of this user."""
        return [self._pick(job_id, action) for job_id in bulk_ids(ids, action)]

    def _pick(self, job_id, action):
        try:
            meta = self._job_meta(check_id(job_id, "job"))
        except FlightJobError as e:
            return {"id": name_text(job_id[:80]), "can": False, "why": e.message}
        out = {"id": job_id, "scheduler_id": meta.get("scheduler_id"), "state": meta["state"],
               "reason_text": meta.get("reason_text") if meta["state"] in UNFINISHED else None,
               "name": meta.get("job_name") or meta.get("script_name") or "", "can": True, "why": None}
        finished = meta["state"] in FINISHED
        if action == "remove" and not finished:
            out.update(can=False, why="it has not finished: cancel it first, or wait")
        elif action != "remove" and finished:
            out.update(can=False, why="it has already finished")
        elif action != "remove" and not meta.get("scheduler_id"):
            out.update(can=False, why="its submission is not settled yet: try again in a moment")
        elif action in ("hold", "release") and meta["state"] != "PENDING":
            out.update(can=False, why="it has already started: only a waiting job can be %s" % BULK_WORDS[action][2])
        elif action == "hold" and meta.get("reason") in HELD_REASONS:
            out.update(can=False, why="it is already held")
        elif action == "release" and meta.get("reason") not in HELD_REASONS:
            out.update(can=False, why="it is not held")
        elif action != "remove" and not self._aimed(meta):
            out.update(can=False, why="it runs %s, which this service does not manage" % self._where(meta))
        return out

    @operation("jobs.bulk", writes=True)
    def jobs_bulk(self, ids, action):
        """Cancel, hold or release several unfinished jobs, or remove several
        finished jobs' records (results are never touched), at most
        BULK_IDS; each id goes through check_id, and one that is not a job
        of this user, or not in a state for the action, or that the
        scheduler refuses, is left as it is (never failing the others). The
        scheduler is asked one job at a time, then its states read with ONE
        status call a round, for at most 2 s while any has not settled
        (ended; held; released). Per id what happened: jobs_pick's answer
        with done True or False."""
        done = []
        for pick in self.jobs_pick(ids, action):
            if pick["can"]:
                try:
                    if action == "remove":
                        self.job_delete(pick["id"])
                    else:
                        sched = self._aimed(self._job_meta(pick["id"]), BULK_WORDS[action][2])
                        getattr(sched, action)(pick["scheduler_id"])
                        if action == "cancel":
                            self._update_job(pick["id"], {"cancel_requested_at": now_iso()})
                except FlightJobError as e:
                    pick.update(can=False, why=e.message)
            done.append(dict(pick, done=pick["can"]))
        acted = [d for d in done if d["done"] and action != "remove"]
        if acted:
            self._await_settled([d["id"] for d in acted], {
                "cancel": lambda meta: meta["state"] not in UNFINISHED,
                "hold": lambda meta: meta["state"] != "PENDING" or meta.get("reason") in HELD_REASONS,
                "release": lambda meta: meta["state"] != "PENDING" or meta.get("reason") not in HELD_REASONS}[action])
        for d in acted:
            with contextlib.suppress(Conflict, NotFound):
                meta = self._job_meta(d["id"])
                d.update(state=meta["state"], reason_text=meta.get("reason_text") if meta["state"] in UNFINISHED
                         else None)
        return {"action": action, "jobs": done}


# Store: results #############################################################


LISTED_FILES = 5000  # the most entries of a results directory listed

# A results archive (jobs.archive) is a .zip the worker writes as the user
# while root relays it: planned whole first (every name and size, so the
# limit is checked before a byte is sent), then handed over in pieces of at
# most ARCHIVE_PIECE bytes, one a request, each request reading at most
# ARCHIVE_READ bytes of the files (a sparse file compresses to nothing: the
# request still ends). A worker keeps ARCHIVES_OPEN archives at most, the
# oldest dropped beyond, and drops one not asked for in
# server.download_timeout seconds.
ARCHIVE_PIECE = 1 << 20
ARCHIVE_READ = 16 << 20
ARCHIVE_FILES = 100000  # files and directories in one archive at most
ARCHIVES_OPEN = 4
ARCHIVE_NOTE = "SKIPPED-by-flight-job.txt"  # what was left out, and why; only when something was


class ArchiveSink:
    """Where zipfile writes the archive: bytes held until taken (no tell or
    seek, so zipfile writes a streamed zip, sizes after each file)."""

    def __init__(self):
        self.data = bytearray()

    def write(self, data):
        self.data += data
        return len(data)

    def flush(self):
        pass

    def take(self, most):
        piece = bytes(self.data[:most])
        del self.data[:most]
        return piece


def _zip_time(mtime):
    """A modification time as a zip entry's (local time, 1980 to 2107)."""
    return time.localtime(min(max(mtime, 315576000), 4354819200))[:6]


_ARC_ODD_RE = re.compile(r"\\|(?:^|(?<=/))[A-Za-z]:")  # what an unzipper may read as a separator or a drive


def _arc_safe(text, notes):
    """A path as name_text gives it (a control character: \\xHH) as a .zip
    entry: backslashes and drive letters replaced by "_", and noted."""
    safe = _ARC_ODD_RE.sub("_", text)
    if safe != text:
        notes.append("%s: stored as %s (a backslash, a drive letter or a control character replaced)" % (text, safe))
    return safe


class ResultsArchive:
    """One archive being written: the planned files (arcname, path, size),
    the empty directories and the notes of what was left out; pieces are
    taken with next_piece() until eof."""

    def __init__(self, files, dirs, notes):
        import zipfile
        self.zipfile = zipfile
        self.sink = ArchiveSink()
        self.notes = notes
        self.steps = self._write(files, dirs)
        self.done = False
        self.touched = time.monotonic()

    def _write(self, files, dirs):
        """Write the archive into the sink, yielding after each read of a
        file (so the caller can stop when a piece is full)."""
        zipfile = self.zipfile
        with zipfile.ZipFile(self.sink, "w", zipfile.ZIP_DEFLATED, allowZip64=True) as archive:
            for arcname in dirs:
                info = zipfile.ZipInfo(arcname + "/", _zip_time(time.time()))
                info.external_attr = (0o040700 << 16) | 0x10
                archive.writestr(info, b"")
            for arcname, path, size in files:
                try:  # never a symlink followed, never a FIFO waited on (swapped in since the plan)
                    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
                except OSError as e:
                    self.notes.append("%s: not read: %s" % (arcname, e.strerror or e))
                    continue
                with os.fdopen(fd, "rb") as f:
                    st = os.fstat(fd)
                    if st.st_mode & 0o170000 != 0o100000:
                        self.notes.append("%s: not a regular file any more" % arcname)
                        continue
                    info = zipfile.ZipInfo(arcname, _zip_time(st.st_mtime))
                    info.compress_type = zipfile.ZIP_DEFLATED
                    info.external_attr = (0o100000 | (st.st_mode & 0o777)) << 16
                    info.file_size = size  # what was counted: a file that grew is cut there
                    with archive.open(info, "w", force_zip64=size > (1 << 30)) as out:
                        left = size
                        while left > 0:
                            data = f.read(min(left, ARCHIVE_PIECE))
                            if not data:
                                break
                            out.write(data)
                            left -= len(data)
                            yield len(data)
                    if left > 0:
                        self.notes.append("%s: shrank while it was archived; %d bytes are missing"
                                          % (arcname, left))
            if self.notes:
                note, taken = ARCHIVE_NOTE, {arcname for arcname, _, _ in files}
                while note in taken:  # a file of the results has that name: the note goes beside it
                    note = "_" + note
                info = zipfile.ZipInfo(note, _zip_time(time.time()))
                info.external_attr = 0o100600 << 16
                archive.writestr(info, "Left out of this archive by flight-job:\n\n%s\n" % "\n".join(
                    self.notes[:ARCHIVE_FILES]))

    def next_piece(self):
        """(bytes, eof): at most ARCHIVE_PIECE bytes, from at most
        ARCHIVE_READ bytes of the files read."""
        self.touched = time.monotonic()
        read = 0
        while not self.done and len(self.sink.data) < ARCHIVE_PIECE and read < ARCHIVE_READ:
            try:
                read += next(self.steps)
            except StopIteration:
                self.done = True
        piece = self.sink.take(ARCHIVE_PIECE)
        return piece, self.done and not self.sink.data

    def close(self):
        self.steps.close()  # the open file, if any, closed


class ResultsPart(StorePart):
    """A job's results directory and output files, read as the user."""

    def __init__(self, config, user):
        super().__init__(config, user)
        self._archives = {}  # token -> ResultsArchive streaming to root (job_archive)

    def _results_root(self, meta):
        if not meta.get("results_dir"):
            raise NotFound("This job has no results directory.")
        return meta["results_dir"]

    def _resolve(self, meta, path):
        """A path inside the job's results directory, given as name_text
        wrote it, symlinks resolved: outside it is 403, missing is 404."""
        return resolve_inside(self._results_root(meta), path,
                              "That path leads outside the job's results directory.")

    @operation("jobs.files")
    def job_files(self, id, path=""):
        """A directory of the job's results: the first LISTED_FILES entries
        the directory gives (never all of them held: it may hold millions),
        and the job's stdout and stderr files when they are here, sorted;
        `more` counts the entries left out (up to COUNTED_FILES)."""
        meta = self._job_meta(id)
        full = self._resolve(meta, path)
        taken, more = first_entries(full, LISTED_FILES, "No such directory.")
        own = {meta.get("stdout_path"), meta.get("stderr_path")} - {None}
        if more:  # the job's own output, when the directory gave it past the first entries
            left_out = sorted(p for p in own - {p for _, p in taken}
                              if os.path.dirname(p) == full and os.path.lexists(p))
            taken += [(os.path.basename(p), p) for p in left_out]
            more = max(more - len(left_out), 0)
        files, since = [], (parse_iso(meta["submitted_at"]) or 0) - 1
        for name, entry_path in taken:
            try:
                st = os.stat(entry_path)
            except OSError:
                continue
            text = name_text(name)  # any bytes: shown, and asked for again, as this text
            files.append({"name": text, "path": os.path.join(path, text) if path else text,
                          "type": "dir" if st.st_mode & 0o170000 == 0o040000 else "file", "size": st.st_size,
                          "modified_at": now_iso(st.st_mtime), "output": entry_path in own,
                          "new": st.st_mtime >= since})
        files.sort(key=lambda f: (not f["output"], not f["new"], f["type"] != "dir", f["name"]))
        return {"path": path, "results_dir": name_text(meta["results_dir"]), "files": files, "more": more,
                "truncated": more > 0}

    @operation("jobs.file")
    def job_file(self, id, path=None, which=None, offset=0, length=None, tail=None):
        """Bytes of a results file (base64), or of the job's stdout/stderr
        (which=...), from offset, or the last `tail` bytes; 1 MiB a call."""
        meta = self._job_meta(id)
        if which in ("stdout", "stderr"):
            full = meta.get("%s_path" % which)
            if not full:
                raise NotFound("This job has no %s file." % which)
        else:
            full = self._resolve(meta, path)
        try:  # a results file opened as it was resolved (a link swapped in meanwhile: refused)
            fd = open_beneath(os.path.realpath(self._results_root(meta)), full) if which not in ("stdout", "stderr") \
                else os.open(full, os.O_RDONLY | os.O_NONBLOCK)
        except FileNotFoundError:
            raise NotFound("No such file (yet).")
        except PermissionError:
            raise Forbidden("You may not read that file.")
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            if not (st.st_mode & 0o170000 == 0o100000):
                raise NotFound("Not a regular file.")
            size = st.st_size
            chunk = 1 << 20
            if tail is not None:
                length = min(max(int(tail), 0), chunk)
                offset = max(size - length, 0)
            length = chunk if length is None else min(max(int(length), 0), chunk)
            offset = min(max(int(offset), 0), size)
            f.seek(offset)
            data = f.read(length)
        return {"name": name_text(os.path.basename(full)), "size": size, "offset": offset,
                "modified_at": now_iso(st.st_mtime), "data": base64.b64encode(data).decode("ascii"),
                "eof": offset + len(data) >= size}

    def _archive_plan(self, meta, paths):
        """What an archive of the chosen paths (relative to the results
        directory, through check_relpath; none: the whole directory) holds:
        (files as (arcname, path, size), empty directories, notes of what is
        left out). Hidden names (a leading dot) in a directory are left out,
        as the page's listing leaves them out (a results directory may be
        the home), unless chosen by name. Symlinks are never followed (one on the way to a chosen
        path too): left out with a note, as are FIFOs, sockets and devices
        (never opened). Sizes are apparent sizes (a sparse file counts
        whole). Refused: a chosen path that is not there (404), more than
        ARCHIVE_FILES entries or a total over storage.max_archive_bytes (413,
        naming both)."""
        root = os.path.realpath(self._results_root(meta))
        if not os.path.isdir(root):
            raise NotFound("The job's results directory is not there (any more): %s." % name_text(root))
        limit = self.config["storage"]["max_archive_bytes"]
        stack = []
        for given in paths or [""]:
            missing = NotFound("No such file in the job's results: %s." % name_text(str(given))[:300],
                               {"paths": "no such file: %s" % name_text(str(given))[:300]})
            if given == "":
                stack.append(("", root))
                continue
            try:
                rel = check_relpath(given)
                full = os.path.join(root, name_path(rel))
            except (NotFound, UnicodeError):
                raise missing
            if os.path.realpath(full) != full:  # a symlink on the way: not followed
                stack.append((rel, None))
            elif not os.path.lexists(full):
                raise missing
            else:
                stack.append((rel, full))
        files, dirs, notes, seen, total, count, hidden = [], [], [], set(), 0, len(stack), 0
        stack = [(_arc_safe(name_text(name_path(arc)), notes), full) for arc, full in stack]
        while stack:
            if count > ARCHIVE_FILES:  # every entry counted as it is listed: the walk stays bounded
                raise TooLarge("The files chosen are more than %d files and directories, more than one archive "
                               "may hold; choose fewer." % ARCHIVE_FILES, {"paths": "too many files"})
            arc, full = stack.pop()
            if arc in seen:
                continue
            seen.add(arc)
            try:
                st = os.lstat(full) if full else None
            except OSError as e:
                notes.append("%s: not read: %s" % (arc, e.strerror or e))
                continue
            kind = st.st_mode & 0o170000 if st else 0o120000
            if kind == 0o100000:
                files.append((arc, full, st.st_size))
                total += st.st_size
            elif kind == 0o040000:
                try:
                    with os.scandir(full) as listing:
                        names = [entry.name for entry in itertools.islice(listing, ARCHIVE_FILES + 1)]
                except OSError as e:
                    notes.append("%s/: not read: %s" % (arc or ".", e.strerror or e))
                    continue
                shown = [name for name in names if not name.startswith(".")]
                hidden += len(names) - len(shown)
                if not names and arc:
                    dirs.append(arc)
                count += len(shown)
                for name in shown:
                    stack.append((_arc_safe((arc + "/" if arc else "") + name_text(name), notes), os.path.join(full, name)))
            elif kind == 0o120000:
                notes.append("%s: a symbolic link, not followed" % arc)
            else:
                notes.append("%s: not a regular file (a FIFO, socket or device)" % arc)
        if hidden:
            notes.append("%d hidden files and directories (names starting with a dot) in the directories "
                         "chosen: choose them by name to have them" % hidden)
        if total > limit:
            raise TooLarge("The files chosen add up to %s (%s bytes in %d files), more than the %s (%s bytes) one "
                           "archive may hold (storage.max_archive_bytes): choose fewer files, or download them "
                           "one by one." % (human_size(total), "{:,}".format(total), len(files), human_size(limit),
                                            "{:,}".format(limit)), {"paths": "more than %s in all" % human_size(limit)})
        return sorted(files), sorted(dirs), notes

    @operation("jobs.archive")
    def job_archive(self, id=None, paths=None, token=None, close=False):
        """A .zip of a job's results (ResultsArchive), piece by piece: the
        first call (id, paths: see _archive_plan) plans it and answers its
        token, name and first piece (base64); each call with the token the
        next piece, until eof; close=True drops it."""
        idle = self.config["server"]["download_timeout"]
        for old in [t for t, a in self._archives.items() if time.monotonic() - a.touched > idle]:
            self._archives.pop(old).close()
        if token is not None:
            archive = self._archives.get(str(token))
            if close:
                if archive:
                    self._archives.pop(str(token)).close()
                return {"token": token, "closed": True}
            if archive is None:
                raise NotFound("This archive is no longer being written; ask for it again.")
            answer = {"token": token}
        else:
            meta = self._job_meta(id)
            if paths is not None and not _texts(paths):
                raise Invalid("paths must be a list of file names.", {"paths": "must be a list of file names"})
            files, dirs, notes = self._archive_plan(meta, paths)
            while len(self._archives) >= ARCHIVES_OPEN:
                self._archives.pop(next(iter(self._archives))).close()
            token = secrets.token_hex(8)
            archive = self._archives[token] = ResultsArchive(files, dirs, notes)
            answer = {"token": token, "name": "job-%s-results.zip" % name_text(meta.get("scheduler_id") or id),
                      "files": len(files), "bytes": sum(size for _, _, size in files), "skipped": len(notes)}
        data, eof = archive.next_piece()
        if eof:
            self._archives.pop(token, None)
        return dict(answer, data=base64.b64encode(data).decode("ascii"), eof=eof)


# Store: the facade ##########################################################


class Store(TemplatesPart, ScriptsPart, HomePart, JobRecords, JobSubmit, JobStatus, JobControl, JobList,
            ResultsPart):
    """A user's templates, scripts, jobs and results: the object the worker
    serves, each operation declared with @operation in its part."""

    @operation("whoami")
    def whoami(self):
        """Who and where the worker runs, for tests."""
        mask = os.umask(0)
        os.umask(mask)
        return {"uid": os.getuid(), "gid": os.getgid(), "groups": sorted(os.getgroups()),
                "pid": os.getpid(), "cwd": os.getcwd(), "umask": mask, "home": self.home,
                "user": self.user, "environ": sorted(os.environ)}

    @operation("probe")
    def probe(self):
        """Whether the scheduler answers, for /api/health."""
        ok = False
        try:
            ok = bool(self.scheduler.available())
            message = None
        except SchedulerError as e:
            message = e.message
        return {"type": self.scheduler.name, "answers": ok, "message": message}


# Shared status poll: its process ############################################


# What one poll asks about: at most this many ids in all (their --jobs= for
# sacct stays far below Linux's 128 KiB limit on one argument), taken from
# every user in turn, newest first, so no one's crowd of jobs starves others.
MAX_POLL_IDS = 5000
MAX_POLL_USERS = 2000  # the most users whose jobs one poll lists


# The worker operations whose questions offer partitions, or whose page
# shows what is free or which templates fit: the daemon hands them the
# shared poll's partition summary (multi-user Slurm), so a worker asks no
# scheduler for it; those of a page that shows it (CLUSTER_PAGES) keep it coming.
CLUSTER_OPS = ("scripts.submission", "jobs.overview", "jobs.preview", "jobs.submit", "templates.list", "templates.get")
CLUSTER_PAGES = ("scripts.submission", "jobs.overview", "templates.list")
POLL_OPS = ("jobs.take_statuses", "jobs.ask_scheduler")  # the operations the poll calls itself


class StatusSource(Performer):
    """The shared status poll's own process, as scheduler.status_user:
    one scheduler status call (squeue, then sacct for what squeue does not
    list or lists as finished) for the validated numeric job ids root
    sends. Nothing else of any user reaches it; it writes nothing."""

    def __init__(self, config):
        self.config = config
        self.scheduler = make_scheduler(config, None, None)
        self.checked = (None, -1e9)  # (why others' jobs are hidden from it, or None; when learnt)
        with contextlib.suppress(Exception):  # no other process of this account may trace it
            import ctypes
            ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE, 0

    @operation("status.partitions")
    def status_partitions(self):
        """The partition summary (no argument: nothing of any user reaches it)."""
        return {"partitions": self.scheduler.partition_summary()}

    @operation("status.poll")
    def status_poll(self, followed=None):
        """One round of the followed users' statuses ({uid: [job ids]}): each for its owner's refs alone, in their share."""
        if not isinstance(followed, dict) or len(followed) > MAX_POLL_USERS or not all(
                uid.isdigit() and len(uid) <= 10 and isinstance(ids, list) and all(
                    isinstance(i, str) and JOB_REF_RE.match(i) for i in ids)
                for uid, ids in followed.items()) or sum(map(len, followed.values())) > MAX_POLL_IDS:
            raise Invalid("followed must map at most %d uids to at most %d job ids in all." % (MAX_POLL_USERS, MAX_POLL_IDS))
        if time.monotonic() - self.checked[1] > 600:  # PrivateData, again every 10 minutes
            self.checked = (self.scheduler.hidden_jobs(), time.monotonic())
        if self.checked[0]:
            return {"hidden": self.checked[0]}
        before = dict(self.scheduler.counters)
        statuses, owners, outside, undecided = self.scheduler.poll(followed)
        followed = {uid: [i for i in ids if i in statuses and str(owners.get(i)) == uid] for uid, ids in followed.items()}
        statuses = {i: statuses[i] for ids in followed.values() for i in ids}
        outside = {uid: dict(sorted(jobs.items())[:OUTSIDE_IMPORTS]) for uid, jobs in outside.items()}
        room = self.config["worker"]["max_message"] // 2 - len(json.dumps(undecided)) - 160 * len(owners)
        undecided.update(_fair_room(followed, statuses, outside, room))
        return {"statuses": statuses, "owners": {i: owners[i] for i in statuses}, "outside": outside,
                "undecided": undecided, "calls": {k: v - before.get(k, 0) for k, v in self.scheduler.counters.items()}}


def _fair_room(followed, statuses, outside, room):
    """Cut the statuses ({id: status} of followed {uid: [ids]}, and outside
    {uid: {id: status}}) to `room` bytes of JSON in all, shared fairly
    between users, then between each user's statuses: what takes less than
    an equal share of what is left is kept whole; a status past its share
    has its tasks cut to fit (the last entry counts the rest) or, even so,
    is left out: {id: why} of those (outside ones are dropped)."""
    sizes = {uid: {(i, None): len(json.dumps(statuses[i])) + 30 for i in ids if i in statuses} for uid, ids in followed.items()}
    for uid, jobs in outside.items():
        sizes.setdefault(str(uid), {}).update({(i, uid): len(json.dumps(st)) + 30 for i, st in jobs.items()})
    why = {}
    for uid, share in _shares({uid: sum(mine.values()) for uid, mine in sizes.items()}, room).items():
        for (i, theirs), most in _shares(sizes[uid], share).items():
            where, size = outside[theirs] if theirs is not None else statuses, sizes[uid][i, theirs]
            if size > most and where[i].get("tasks"):  # the bytes of the rest less those of the tasks' entry
                base = len(json.dumps(dict(where[i], tasks=[]))) + 250
                where[i] = _fitted(where[i], max(0, (most - base) * len(where[i]["tasks"]) // (size - base + 1)))
                size = len(json.dumps(where[i])) + 30
            if size > most:
                del where[i]
                if theirs is None:
                    why[i] = "job %s: its status is larger than its share of the shared poll's answer (%d bytes) this round" % (i, most)
    return why


def _shares(sizes, room):
    """{key: size} -> {key: bytes it may take}: room shared out fairly
    (the smallest first take what they need, at most an equal share)."""
    out, left = {}, max(0, room)
    for n, (key, size) in enumerate(sorted(sizes.items(), key=lambda kv: kv[1])):
        out[key] = min(size, left // (len(sizes) - n))
        left -= out[key]
    return out


# Worker: its process and the fork server ####################################

# A reply is one line, "ID ok|err UNFINISHED JSON". UNFINISHED tells whether
# the user has unfinished jobs, as the operation found them: "1", "0", or "-"
# when it did not look (the pool refreshes users with unfinished jobs in the
# background). The reader dispatches on the id without parsing the JSON,
# which a route may pass on to the client as it is.
UNFINISHED_WORDS = {True: "1", False: "0", None: "-"}
# Before an answer, a worker may send "0 fail - JSON": [[command, kind, n]]
# of the scheduler commands that failed while it did the request (at most
# FAILED_KINDS entries, n at most FAILED_MOST), for root's /metrics.
FAILED_KINDS, FAILED_MOST = 32, 1000


class Busy(Unavailable):
    """Too many requests wait on workers (answered at once, never queued),
    or the user's worker is busy with another request past this one's
    deadline: try again."""

    code = "busy"


def worker_main():
    """The user's side of the pipe: read one JSON request a line, answer one
    JSON line. The first line carries the configuration and the user."""
    proto = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # nothing else may write on the protocol's stream
    with contextlib.suppress(OSError):  # as the user: root never enters a home (Worker.start)
        os.chdir(os.path.expanduser("~"))
    arm_fault(os.environ.get(FAULT_ENV))  # tests only: see FAULT_POINTS
    first = sys.stdin.readline()
    if not first:
        return 0
    init = json.loads(first)
    config = Config(init["config"])
    if config["worker"]["max_memory_mb"]:
        unbound_memory(config["worker"]["max_memory_mb"])
    # the shared status poll's process (StatusPoll), or the user's
    store = StatusSource(config) if init.get("role") == "status" else Store(config, init["user"])
    limit, limit_mb = config["worker"]["max_message"], config["worker"]["max_memory_mb"]
    failures = store.scheduler.failures
    for line in sys.stdin:
        request, unfinished, before = {}, None, dict(failures)
        try:
            request = json.loads(line)
            body, unfinished = store.perform(str(request.get("op")), request.get("args", {}))
            kind = "ok"
        except FlightJobError as e:
            kind, body = "err", e.as_dict()
        except OSError as e:  # the user's own files: unreadable, full, gone (NFS): say so, not 500
            log.warning("worker request %s: %s", request.get("op"), e)
            err = Forbidden("You may not read or change %s: %s." % (e.filename, e.strerror)) \
                if isinstance(e, PermissionError) else disk_error(e, writing=str(request.get("op")) in WRITING)
            kind, body = "err", err.as_dict()
        except MemoryError:  # worker.max_memory_mb: the request's memory is freed, the worker lives on
            kind, body = "err", Unavailable("This request needed more memory than your worker may use "
                                            "(worker.max_memory_mb, %d MiB)." % limit_mb).as_dict()
        except Exception:
            log.exception("worker request failed: %s", request.get("op"))
            kind, body = "err", {"code": "internal", "message": "The request failed inside your worker."}
        failed = [[command, how, min(FAILED_MOST, n - before.get((command, how), 0))]
                  for (command, how), n in failures.items() if n > before.get((command, how), 0)]
        if failed:  # the scheduler commands that failed doing it, for root's /metrics (Worker._failed)
            proto.write(("0 fail - %s\n" % json.dumps(failed[:FAILED_KINDS])).encode("ascii"))
        proto.write(worker_answer(int(request.get("id") or 0), kind, unfinished, body,
                                  ANSWERS.get(str(request.get("op")), (None,))[0] or limit))
        proto.flush()
    return 0


def worker_answer(rid, kind, unfinished, body, limit):
    """One answer line, "ID ok|err UNFINISHED JSON": the reader dispatches
    on the id without parsing the body, which a route may pass on to the
    client as it is; UNFINISHED (UNFINISHED_WORDS) says whether the user has
    unfinished jobs, when the operation learnt it. An answer root would
    refuse (over worker.max_message) becomes an error that says so, and the
    worker lives on."""
    text = json.dumps(body)  # ASCII: non-ASCII and lone surrogates escaped
    if len(text) + 32 > limit:
        kind, text = "err", json.dumps(Unavailable(
            "The answer to this request is %d bytes, more than the %d bytes a worker may "
            "send for it (worker.max_message, or less)." % (len(text), limit)).as_dict())
    return ("%d %s %s %s\n" % (rid, kind, UNFINISHED_WORDS[unfinished], text)).encode("ascii")


class RawJSON(str):
    """A worker's answer as JSON text, sent to the client as it is."""


class Lines:
    """Bytes cut into lines as they arrive, a line held up to `limit` bytes
    in one bytearray (no copies of a long line): push(chunk) gives the
    complete lines as (line, cut), cut when the line was longer than the
    limit (the rest was dropped, never held); `overflow` is true while the
    unfinished line is past the limit. With `spill`, a line past that many
    bytes goes on in an unlinked file of root's (tempfile), given from its
    start instead of the bytearray: root's memory holds none of it."""

    def __init__(self, limit, spill=None):
        self.limit, self.spill, self.line, self.size, self.overflow = limit, spill, bytearray(), 0, False

    def push(self, chunk):
        lines, start, view = [], 0, memoryview(chunk)
        while start < len(chunk):
            end = chunk.find(b"\n", start)
            stop = len(chunk) if end < 0 else end
            room = self.limit - self.size
            if stop - start > room:
                self.overflow = True
                stop = start + room
            self._add(view[start:stop])
            if end < 0:
                break
            if not isinstance(self.line, bytearray):
                self.line.seek(0)
            lines.append((self.line, self.overflow))
            self.line, self.size, self.overflow = bytearray(), 0, False
            start = end + 1
        return lines

    def _add(self, piece):
        self.size += len(piece)
        if self.spill and isinstance(self.line, bytearray) and self.size > self.spill:
            spooled = tempfile.TemporaryFile()
            spooled.write(self.line)
            self.line = spooled
        if isinstance(self.line, bytearray):
            self.line += piece
        else:
            self.line.write(piece)


# What root reads of a worker's stderr (the worker's log, and whatever the
# user's template code prints): lines cut to STDERR_LINE bytes, at most
# STDERR_LINES lines logged and STDERR_BYTES read every STDERR_WINDOW
# seconds. Past that root stops reading until the window ends: a worker that
# floods its stderr blocks itself, never root.
STDERR_LINE, STDERR_LINES, STDERR_BYTES, STDERR_WINDOW = 1000, 100, 1 << 20, 60


class StderrLog:
    """A worker's stderr, logged with its user's name within the STDERR_*
    bounds, control characters escaped (no forged log lines)."""

    def __init__(self, user):
        self.user, self.lines = user, Lines(STDERR_LINE)
        self.window, self.taken, self.logged = time.monotonic(), 0, 0

    def pause(self):
        """Seconds until more may be read (0: now)."""
        now = time.monotonic()
        if now - self.window >= STDERR_WINDOW:
            if self.logged > STDERR_LINES:
                log.warning("worker of %s: %d more lines on stderr not logged",
                            self.user, self.logged - STDERR_LINES)
            self.window, self.taken, self.logged = now, 0, 0
        return 0 if self.taken < STDERR_BYTES else self.window + STDERR_WINDOW - now

    def feed(self, chunk):
        self.taken += len(chunk)
        for line, cut in self.lines.push(chunk):
            self.logged += 1
            if self.logged <= STDERR_LINES:
                text = CONTROL_RE.sub(lambda m: "\\x%02x" % ord(m.group()), line.decode("utf-8", "replace"))
                log.info("worker of %s: %s%s", self.user, text, " [cut]" if cut else "")


def parse_answer(body, limit):
    """A worker's answer parsed, refused (503) when parsing it would take
    more than 4 x limit bytes: JSON of tiny values ([{},{},...]) costs up
    to ~25 times its size as Python objects, each value (one a ',' or ':')
    at most ~72 bytes. Real answers are far below (a listing of 5,000 files:
    about 6 times)."""
    if len(body) * 73 > 4 * limit and len(body) + 72 * (body.count(b",") + body.count(b":")) > 4 * limit:
        raise Unavailable("Your worker sent an answer too large to read (more than %d MB as objects); "
                          "try again." % (4 * limit >> 20))
    try:
        return parse_json(body)
    except ValueError:
        raise Unavailable("Your worker sent an answer that is not JSON; try again.")


def _fits(check, value):
    """Whether value is what check says: a type, or a callable's yes."""
    return isinstance(value, check) if isinstance(check, (type, tuple)) else bool(check(value))


def _shape(**checks):
    """A check that a value is a dict whose keys `checks` names hold what
    each says (_fits); its `shape_keys` say so to streamed_fits."""
    check = lambda v: isinstance(v, dict) and all(_fits(c, v.get(k)) for k, c in checks.items())  # noqa: E731
    check.shape_keys = checks
    return check


NOT_ITS_ANSWER = ("Your worker answered %s with something that is not its answer (replaced by template code?); "
                  "it was refused. Try again.")


def checked_answer(op, data):
    """A worker's answer to op, if it has the shape op answers (ANSWERS),
    else Unavailable saying so: the page or client never gets it."""
    if op in ANSWERS and not _fits(ANSWERS[op][1], data):
        raise Unavailable(NOT_ITS_ANSWER % op)
    return data


def _each(check):
    """A check that a value is a list whose every element is what check
    says; its `shape_each` says so to streamed_fits."""
    each = lambda v: isinstance(v, list) and all(check(x) for x in v)  # noqa: E731
    each.shape_each = check
    return each


# What each worker operation answers, as root checks it before a page shows
# it or a client gets it (a user's template code can replace an operation):
# the most bytes it may be (read no further; None: worker.max_message) and
# its shape. Records are held to the checks they are read with (JOB_META,
# SCRIPT_META). Anything else is a clear 503 for that user, never a 500.
SMALL_ANSWER = 1 << 20
# a download's piece: at most 1 MiB of data (jobs.file's chunk, ARCHIVE_PIECE)
# as base64, 1,398,104 characters, and its name: read in memory, never spooled
# (SPOOL), as a download's pieces come one after another
PIECE_ANSWER = 2 << 20
_JOB = _shape(id=str, **JOB_META)
_SCRIPT = _shape(id=str, etag=str, **SCRIPT_META)
_BROKEN = _shape(id=str, reason=str)
_WORDS = (str, type(None))
_TEMPLATE = _shape(id=str, name=str, synopsis=str, description=str, tags=list, unavailable=_WORDS)


def _job_defaults(value):
    """scripts.submission's job_defaults: {partition: {memory, exclusive: words or None, default}}."""
    return isinstance(value, dict) and all(_shape(memory=_WORDS, exclusive=_WORDS, default=bool)(d)
                                           for d in value.values())


_ARCHIVE_PIECE = _shape(token=str, data=str, eof=bool)
_COLUMN = (lambda v: isinstance(v, str) and v in JOB_COLUMNS)
ANSWERS = dict({op: (None, _JOB) for op in ("jobs.submit", "jobs.get", "jobs.cancel", "jobs.hold", "jobs.release",
                                              "jobs.time_limit", "jobs.cancel_task")},
               **{op: (None, _SCRIPT) for op in ("scripts.create", "scripts.get", "scripts.update", "scripts.copy",
                                                  "scripts.import", "scripts.answers")}, **{
    "templates.check": (SMALL_ANSWER, _shape(errors=dict)),
    "templates.list": (None, _shape(templates=_each(_TEMPLATE), problems=_each(_shape(id=str, error=str)))),
    "templates.get": (None, lambda v: _TEMPLATE(v) and _shape(questions=_each(_shape(id=str, type=str)))(v)),
    "scripts.list": (None, _shape(scripts=_each(lambda v: _SCRIPT(v) or _BROKEN(v)), query=dict)),
    "scripts.submission": (None, _shape(script=_SCRIPT, questions=_each(_shape(id=str, type=str)), scheduler=dict,
                                        job_defaults=_job_defaults)),
    "jobs.preview": (None, _shape(script=_SCRIPT, questions=list, answers=dict, options=_texts, command=_texts,
                                  outputs=dict, ignored_options=list, extra_options=_texts, job_defaults=_each(str))),
    "jobs.list": (None, _shape(jobs=_each(_JOB), broken=_each(_BROKEN), total=int, page=int, per_page=int, query=dict,
                               columns=_each(_COLUMN))),
    "jobs.columns": (SMALL_ANSWER, _shape(columns=_each(_COLUMN))),
    "jobs.overview": (None, _shape(jobs=_each(_JOB), total=int, broken=int, counts=dict, scripts=int,
                                   cluster=_or_none(_shape(partitions=list)))),
    "jobs.files": (None, _shape(path=str, files=_each(_shape(name=str, type=str)))),
    "jobs.file": (PIECE_ANSWER, _shape(name=str, size=int, offset=int, data=str, eof=bool)),
    "jobs.archive": (PIECE_ANSWER, lambda v: _shape(token=str, closed=bool)(v) or _ARCHIVE_PIECE(v)),
    "home.list": (None, _shape(path=str, entries=list)),
    "scripts.save_template": (None, dict),
    "jobs.activity": (SMALL_ANSWER, _shape(counts=dict, unfinished=_each(_shape(id=str, state=str)),
                                           watched=_each(_shape(id=str, state=str)))),
    "jobs.pick": (SMALL_ANSWER, _each(_shape(id=str, can=bool))),
    "jobs.bulk": (SMALL_ANSWER, _shape(action=str, jobs=list)),
    "jobs.ask_scheduler": (SMALL_ANSWER, dict), "jobs.take_statuses": (SMALL_ANSWER, dict),
    "whoami": (SMALL_ANSWER, dict), "probe": (SMALL_ANSWER, dict),
    "scripts.delete": (SMALL_ANSWER, _shape(deleted=str)), "jobs.delete": (SMALL_ANSWER, _shape(deleted=str))})


# An answer past SPOOL bytes goes on in an unlinked file as it arrives
# (Lines' spill), never in root's memory: its shape is checked a value at a
# time (SpooledJSON, streamed_fits: a _shape's values, a list's elements,
# each at most SMALL_ANSWER bytes of JSON) and a route sends it on from the
# file. Only a page that renders it, or a value past that bound, parses it
# whole: one such answer at a time (BIG_PARSE), waited for at most
# server.turn_wait. Three workers answering 8 MB at once stay out of root's
# memory (tests/test_hostile.py measures it).
SPOOL = 256 << 10
BIG_PARSE = threading.Lock()
DECODER = json.JSONDecoder()


class PastBound(Exception):
    """A value of a spooled answer longer than SpooledJSON's bound."""


class SpooledJSON:
    """A spooled answer's JSON text read a value at a time: decoded in
    pieces, no more than `most` characters of one value held at once."""

    SPACE = re.compile(r"[ \t\n\r]*")

    def __init__(self, f, most):
        self.f, self.most, self.text, self.pos, self.eof = f, most, "", 0, False
        self.decode = codecs.getincrementaldecoder("utf-8")("replace").decode

    def _more(self, n):
        chunk = self.f.read(n)
        self.eof = not chunk
        self.text, self.pos = self.text[self.pos:] + self.decode(chunk, final=self.eof), 0

    def peek(self):
        """The next character past white space ("" at the end)."""
        while True:
            self.pos = self.SPACE.match(self.text, self.pos).end()
            if self.pos < len(self.text) or self.eof:
                return self.text[self.pos:self.pos + 1]
            self._more(65536)

    def value(self):
        """The next JSON value; ValueError if it is not JSON, PastBound if
        it is longer than `most`, Unavailable if its piece of text would
        cost more than 2 x `most` as objects (parse_answer's reckoning: tiny
        values cost ~72 bytes each). Decoded from a piece of the text that
        doubles while the value goes on past it."""
        size = self.peek() and 4096
        while True:
            piece = self.text[self.pos:self.pos + size]
            if len(piece) + 72 * (piece.count(",") + piece.count(":")) > 2 * self.most:
                raise Unavailable("Your worker sent an answer too large to read (a value of more than %d MB "
                                  "as objects); try again." % (2 * self.most >> 20))
            whole = self.eof and len(piece) == len(self.text) - self.pos  # the text to its end
            try:
                value, end = DECODER.raw_decode(piece)
                if end < len(piece) or whole:  # a number may go on past the piece
                    self.pos += end
                    return value
            except RecursionError:
                raise ValueError("nested too deeply")
            except ValueError:
                if whole:
                    raise
            if size >= self.most:
                raise PastBound()
            size *= 2
            while len(self.text) - self.pos < size and not self.eof:
                self._more(size)


def streamed_fits(check, stream, depth=0):
    """Whether the next value in stream is what check says (_fits): the
    values of the answer's _shape and the elements of an _each in it read
    one at a time, each element whole (a job of jobs.list's), one of the wrong
    type refused unread; keys not in a _shape are read and let be, a key
    twice is refused."""
    keys, each, first = getattr(check, "shape_keys", None), getattr(check, "shape_each", None), stream.peek()
    if keys is not None and first != "{" or each is not None and first != "[":
        return False  # not even the right type: refused unread
    if depth > (0 if keys is not None else 1) or keys is None and each is None:
        return _fits(check, stream.value())
    stream.pos += 1
    seen, close = set(), "}" if keys is not None else "]"
    if stream.peek() == close:
        stream.pos += 1
    else:
        while True:
            if keys is not None:
                key = stream.value()
                if not isinstance(key, str) or key in seen or stream.peek() != ":":
                    return False
                stream.pos += 1
                seen.add(key)
            if not streamed_fits(keys.get(key, object) if keys is not None else each, stream, depth + 1):
                return False
            after = stream.peek()
            stream.pos += 1
            if after == close:
                break
            if after != ",":
                raise ValueError("not JSON")
    return keys is None or all(_fits(c, None) for k, c in keys.items() if k not in seen)


def spooled_answer(op, spooled, bound, raw, wait):
    """A spooled answer to op (see SPOOL), its shape checked a value at a
    time: with raw the file itself, from the answer's start, for a route
    to send on; else (or with a value past SMALL_ANSWER) parsed whole, one
    such answer at a time, Busy after `wait` seconds. An answer a page or
    download takes whole that holds no list and is at most 2 x SMALL_ANSWER
    (a download's piece, a script) is parsed whole at once, its objects
    held to 4 x SMALL_ANSWER (parse_answer)."""
    start, check = spooled.tell(), ANSWERS.get(op, (None, object))[1]
    size = os.fstat(spooled.fileno()).st_size - start
    listed = hasattr(check, "shape_each") or any(hasattr(c, "shape_each")
                                                 for c in getattr(check, "shape_keys", {}).values())
    quick = whole = not raw and not listed and size <= 2 * SMALL_ANSWER
    stream = SpooledJSON(spooled, SMALL_ANSWER)
    try:
        if not whole and not streamed_fits(check, stream):
            raise Unavailable(NOT_ITS_ANSWER % op)
        if not whole and stream.peek():
            raise ValueError("more after the answer")
    except ValueError:
        raise Unavailable("Your worker sent an answer that is not JSON; try again.")
    except PastBound:
        whole = True
    spooled.seek(start)
    if raw and not whole:
        return spooled
    if not BIG_PARSE.acquire(timeout=wait):
        raise Busy("Busy: the server is reading another large answer; try again in a moment.")
    try:
        data = parse_answer(spooled.read(), SMALL_ANSWER if quick else bound)
    finally:
        BIG_PARSE.release()
    if whole:  # else checked above
        checked_answer(op, data)
    return RawJSON(json.dumps(data)) if raw else data


def program_argv(config, mode):
    """The argv that runs this file in `mode` (--worker, --fork-server)
    with worker.python and worker.program: run_path, not `python FILE`, as
    CPython keeps a script's AST (~4 MB here) for its lifetime."""
    return [config["worker"]["python"] or sys.executable, "-c",
            "import sys, runpy; sys.argv = sys.argv[1:]; sys.path[0] = sys.argv[0]"
            ".rpartition('/')[0]; runpy.run_path(sys.argv[0], run_name='__main__')",
            config["worker"]["program"] or os.path.abspath(__file__), mode]


# The fork server (multi-user mode, worker.fork_server): a template process,
# this file loaded and its objects frozen, that forks each worker so the
# interpreter and imports stay shared copy-on-write. Root starts it as a
# fresh exec with nothing of its own but a SOCK_SEQPACKET socket on fd 0, so
# it never holds a session, secret or PAM state however late it is
# (re)started. Root sends one request a message, at most FORK_REQUEST bytes:
# {"user", "uid", "gid", "groups", "env"}; the answer is {"pid"} with four
# descriptors (SCM_RIGHTS): the worker's stdin, stdout and stderr pipe ends
# and a pidfd, by which root sees it end and kills it (the fork server reaps
# it); or {"error"} with none.
FORK_REQUEST = 65536


def fork_server_main():
    """The fork server's loop: one fork an answered request, each child
    reaped as soon as it ends (its own pidfd), the end when root closes the
    socket."""
    import gc
    sock = socket.socket(fileno=os.dup(0))
    _toml()  # what every worker loads later, loaded once here
    gc.freeze()  # the objects so far never touched by the collector: their pages stay shared
    waiting = selectors.DefaultSelector()
    waiting.register(sock, selectors.EVENT_READ)
    while True:
        for key, _ in waiting.select():
            if key.fileobj is not sock:  # a child ended
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(key.data, 0)
                waiting.unregister(key.fileobj)
                os.close(key.fileobj)
                continue
            try:
                data = sock.recv(FORK_REQUEST + 1)
            except OSError:
                return 0
            if not data:
                return 0
            answer, fds = _fork_worker(data)
            if fds:
                waiting.register(os.dup(fds[3]), selectors.EVENT_READ, answer["pid"])
            try:
                socket.send_fds(sock, [json.dumps(answer).encode()], fds)
            except OSError:
                return 0
            finally:
                for fd in fds:
                    os.close(fd)


def _fork_worker(data):
    """Fork the worker a request asks for: ({"pid"}, the root ends of its
    pipes and its pidfd), or ({"error"}, []) for a request over
    FORK_REQUEST bytes, malformed, for uid or gid 0, or a failed fork."""
    try:
        if len(data) > FORK_REQUEST:
            raise ValueError("request over %d bytes" % FORK_REQUEST)
        request = json.loads(data)
        ids = [request["uid"], request["gid"]] + request["groups"]
        if not all(type(i) is int and 0 < i < 1 << 32 for i in ids) or not isinstance(request["env"], dict) \
                or not all(isinstance(v, str) for kv in request["env"].items() for v in kv):
            raise ValueError("bad ids or environment")
    except (ValueError, KeyError, TypeError) as e:
        return {"error": "refused request: %s" % e}, []
    pipes = [os.pipe() for _ in range(3)]
    sys.stderr.flush()
    try:
        pid = os.fork()
    except OSError as e:
        pid, error = None, "fork: %s" % e.strerror
    if pid == 0:
        _become_worker(request, pipes)
    ours = [pipes[0][1], pipes[1][0], pipes[2][0]]
    for fd in (pipes[0][0], pipes[1][1], pipes[2][1]):
        os.close(fd)
    if pid is not None:
        try:
            return {"pid": pid}, ours + [os.pidfd_open(pid)]
        except (OSError, AttributeError) as e:  # Linux < 5.3 or Python < 3.9: the pool spawns
            os.kill(pid, signal.SIGKILL)
            error = "pidfd_open: %s" % e
    for fd in ours:
        os.close(fd)
    return {"error": error}, []


def _become_worker(request, pipes):
    """In the forked child: the pipes as 0, 1, 2 and every other descriptor
    closed, its own session, umask 077, the user's groups, gid and uid
    (checked: exit otherwise), exactly the environment root built; then
    worker_main. Never returns."""
    code = 1
    try:
        for target, fd in enumerate((pipes[0][0], pipes[1][1], pipes[2][1])):
            os.dup2(fd, target)
        for name in os.listdir("/proc/self/fd"):
            if int(name) > 2:
                with contextlib.suppress(OSError):
                    os.close(int(name))
        os.setsid()
        os.umask(0o077)
        uid, gid, groups = request["uid"], request["gid"], sorted(set(request["groups"]))
        os.setgroups(groups)
        os.setgid(gid)
        os.setuid(uid)
        if os.getresuid() != (uid,) * 3 or os.getresgid() != (gid,) * 3 or sorted(set(os.getgroups())) != groups:
            print("flightjobd: the forked worker of %s is not exactly uid %d, gid %d, groups %s: ended"
                  % (request["user"], uid, gid, groups), file=sys.stderr)
            return
        os.environ.clear()
        os.environ.update(request["env"])
        code = worker_main()
    except BaseException:
        import traceback
        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


class Forked:
    """A worker from the fork server, as much of Popen as Worker uses:
    pid, stdin, stdout, stderr, poll, wait, kill. It is the fork server's
    child, so root watches and kills it through its pidfd, and never learns
    its exit status: returncode is -1 once it has ended."""

    def __init__(self, pid, fds):
        stdin, stdout, stderr, self.pidfd = fds
        self.pid, self.returncode = pid, None
        self.stdin = open(stdin, "wb", buffering=0)
        self.stdout = open(stdout, "rb", buffering=0)
        self.stderr = open(stderr, "rb", buffering=0)
        self.lock = threading.Lock()  # the pidfd is closed once under it, never used after

    def _ended(self, wait):
        """Whether the process has ended, waiting up to `wait` seconds."""
        import select
        with self.lock:
            if self.returncode is not None:
                return True
            fd = os.dup(self.pidfd)  # a number no other thread's close can hand to another file
        try:
            poller = select.poll()
            poller.register(fd, select.POLLIN)
            ended = bool(poller.poll(None if wait is None else max(0, int(wait * 1000))))
        finally:
            os.close(fd)
        if ended:
            with self.lock:
                if self.returncode is None:
                    self.returncode = -1
                    os.close(self.pidfd)
        return ended

    def poll(self):
        self._ended(0)
        return self.returncode

    def wait(self, timeout=None):
        if not self._ended(timeout):
            raise subprocess.TimeoutExpired("worker %d" % self.pid, timeout)
        return self.returncode

    def kill(self):
        with self.lock:
            if self.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)

    def __del__(self):
        with contextlib.suppress(Exception):
            if self.returncode is None:
                os.close(self.pidfd)


# Worker: root side (Worker, WorkerPool) ####################################


class ForkServer:
    """Root's side of the fork server (see FORK_REQUEST): started at once,
    restarted when it has died or fails to answer by the deadline, and when
    that fails too, the pool spawns the worker the old way (logged)."""

    def __init__(self, config):
        self.config = config
        self.lock = threading.Lock()  # one request and its answer at a time
        self.proc = self.sock = None
        try:
            self._launch()
        except OSError as e:  # tried again at the first worker's start
            log.warning("the fork server did not start: %s", e)

    def _launch(self):
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.proc = subprocess.Popen(
                program_argv(self.config, "--fork-server"), stdin=theirs, stdout=subprocess.DEVNULL,
                cwd="/", env={"PATH": self.config["worker"]["path"], "LANG": self.config["worker"]["lang"]},
                start_new_session=True, close_fds=True)
        except OSError:
            ours.close()
            raise
        finally:
            theirs.close()
        self.sock = ours
        log.info("fork server started, pid %d", self.proc.pid)

    def _drop(self):
        if self.sock is not None:
            self.sock.close()
        if self.proc is not None:
            with contextlib.suppress(OSError):
                self.proc.kill()
            self.proc.wait()
        self.proc = self.sock = None

    def stop(self):
        with self.lock:
            self._drop()

    def fork(self, user, ids, env, deadline):
        """A Forked worker for `user` (ids as Worker.start gives Popen), or
        None when the fork server gave none by the deadline, even restarted
        (logged: the caller spawns one)."""
        request = json.dumps({"user": user, "uid": ids["user"], "gid": ids["group"],
                              "groups": ids["extra_groups"], "env": env}).encode()
        if len(request) > FORK_REQUEST or not self.lock.acquire(timeout=max(0, deadline - time.monotonic())):
            return None
        try:
            why = None
            for _ in range(2):
                try:
                    if self.proc is None or self.proc.poll() is not None:
                        if self.proc is not None:
                            log.warning("the fork server ended (%s); restarting it", self.proc.returncode)
                        self._drop()
                        self._launch()
                    self.sock.settimeout(max(0.001, deadline - time.monotonic()))
                    self.sock.send(request)
                    data, fds, _, _ = socket.recv_fds(self.sock, 4096, 4, socket.MSG_CMSG_CLOEXEC)
                except OSError as e:  # gone, or no answer in time (socket.timeout)
                    why = "no answer: %s" % e
                    self._drop()
                    continue
                try:
                    answer = json.loads(data)
                except ValueError:
                    answer = {}
                if len(fds) == 4 and isinstance(answer.get("pid"), int):
                    return Forked(answer["pid"], fds)
                for fd in fds:
                    os.close(fd)
                why = answer.get("error") or "no answer"
                if data:
                    break  # it answered: a fork that failed is not cured by a restart
                self._drop()
            log.warning("the fork server gave no worker for %s (%s): starting one as a new process", user, why)
            return None
        finally:
            self.lock.release()


class Worker:
    """The root side of one user's worker process. The user's own template
    code runs in that process, so it is treated as hostile: it gets nothing
    of root's but its pipes, everything it sends is bounded as it arrives
    (worker.max_message, STDERR_*), and every wait on it (lock, write,
    answer) ends by worker.request_timeout."""

    def __init__(self, user, config, switch_user, forks=None, role=None, metrics=None):
        self.user = user
        self.config = config
        self.switch_user = switch_user
        self.forks = forks  # the ForkServer workers come from; None: spawned (Popen)
        self.role = role  # None: the user's store; "status": the shared status poll's source
        self.metrics = metrics or Metrics(config)  # its starts, ends and scheduler failures counted
        self.proc = None
        self.ended = None  # the process last ended for misbehaving (no lock needed)
        self.stopped = None  # the process last asked to end (stop)
        self.lock = threading.Lock()  # held to start the process or write to it
        self.pending_lock = threading.Lock()  # held only to touch `pending`
        self.pending = {}
        self.serial = 0
        self.last_used = time.time()
        self.held = ([], [])  # when each call, each download in WorkerPool's slots began (the pool's lock)

    def alive(self):
        return self.proc is not None and self.proc is not self.ended and self.proc.poll() is None

    def start(self, deadline):
        try:
            pw = pwd.getpwnam(self.user)
        except KeyError:
            raise Unauthorized("No such user.")
        env = {"HOME": pw.pw_dir, "USER": pw.pw_name, "LOGNAME": pw.pw_name,
               "PATH": self.config["worker"]["path"], "SHELL": pw.pw_shell or "/bin/sh",
               "LANG": self.config["worker"]["lang"]}
        env.update(self.config["scheduler"]["environment"])
        ids = {}
        if self.switch_user:
            ids = {"user": pw.pw_uid, "group": pw.pw_gid,
                   "extra_groups": os.getgrouplist(pw.pw_name, pw.pw_gid)}
        self.proc = self.forks.fork(pw.pw_name, ids, env, deadline) if self.forks is not None else None
        try:
            self.proc = self.proc or subprocess.Popen(
                program_argv(self.config, "--worker"),
                # cwd "/": the child changes directory before it drops root, and
                # root may not enter a home (NFS root_squash); the worker enters it
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd="/", env=env,
                # nothing of root's but these pipes: its own session (no controlling
                # terminal to push keystrokes into), stderr to root's reader, every
                # other descriptor closed
                stderr=subprocess.PIPE, start_new_session=True,
                umask=0o077, close_fds=True, **ids)
        except OSError as e:
            raise Unavailable("Could not start your worker process: %s" % (e.strerror or e))
        os.set_blocking(self.proc.stdin.fileno(), False)  # writes wait in _send, to a deadline
        self.metrics.worker(self.role or "user", "started")  # and its end, by its reader
        self.pending = {}  # request id -> slot, in the order sent
        threading.Thread(target=self._read, args=(self.proc, self.pending), daemon=True).start()
        log.info("worker for %s started, pid %d", self.user, self.proc.pid)
        init = {"config": self.config.to_dict(), "user": pw.pw_name, "role": self.role}
        if not self._send(self.proc, (json.dumps(init) + "\n").encode(), deadline):
            self._end(self.proc)
            raise Unavailable("Your worker did not start in time; try again.")

    def stop(self, grace=2):
        """End the process: its stdin closed, killed if it lingers `grace`
        seconds (its reader reaps it)."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:  # its end is not a crash
            self.stopped = proc
        with contextlib.suppress(OSError):
            proc.stdin.close()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            self._end(proc)

    def _end(self, proc):
        """Kill a process that broke the protocol or stopped answering; the
        next call starts a fresh one. Waits at most a second for it to go
        (a process stuck in the kernel, on a hung NFS server, say, is left
        to its reader to reap)."""
        self.ended = proc
        with contextlib.suppress(OSError):
            proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(1)

    def _send(self, proc, data, deadline):
        """Write data to the process's non-blocking stdin by the deadline
        (monotonic); False if it would not take it all by then or is gone."""
        view, fd, waiting = memoryview(data), proc.stdin.fileno(), None
        try:
            while view:
                try:
                    view = view[os.write(fd, view):]
                    continue
                except BlockingIOError:
                    pass
                except OSError:  # it closed its stdin or died
                    return False
                if waiting is None:  # the pipe is full: wait for room, to the deadline
                    waiting = selectors.DefaultSelector()  # epoll: descriptors past 1024
                    waiting.register(fd, selectors.EVENT_WRITE)
                left = deadline - time.monotonic()
                if left <= 0 or not waiting.select(left):
                    return False
            return True
        finally:
            if waiting is not None:
                waiting.close()

    def call(self, op, args=None, timeout=None, touch=True, raw=False):
        """Send one request and wait for (its answer, whether the user has
        unfinished jobs: True, False or None), all by one deadline. The
        answer is RawJSON text with raw=True, for a route to send on unparsed
        (past SPOOL bytes: the file it was spooled to, see spooled_answer).
        Requests are pipelined: several threads may have one in flight, and
        the worker answers them in order. A worker that dies, sends too
        much or garbage gives 503; one that does not take the request or is
        stuck on it past the deadline is killed (503) so the next request
        gets a fresh worker; a request queued behind a slow one gives 503
        busy and leaves the worker alone."""
        timeout = timeout or self.config["worker"]["request_timeout"]
        deadline = time.monotonic() + timeout
        slot = queue.Queue()  # the reader puts the answer, or the error; and reads no more than its bound
        slot.bound = (ANSWERS.get(op, (None,))[0] or self.config["worker"]["max_message"]) + 64
        busy = "Your worker is busy with a request that is taking too long; try again."
        if not self.lock.acquire(timeout=timeout):  # another thread's write to a stuck worker
            raise Busy(busy)
        try:
            if time.monotonic() >= deadline:  # no time left to start or send anything
                raise Busy(busy)
            if touch:
                self.last_used = time.time()
            if not self.alive():
                self.stop(grace=0)
                self.start(deadline)
            self.serial += 1
            rid, proc, pending = self.serial, self.proc, self.pending
            with self.pending_lock:
                pending[rid] = slot
            request = (json.dumps({"id": rid, "op": op, "args": args or {}}) + "\n").encode()
            if not self._send(proc, request, deadline):
                with self.pending_lock:
                    pending.pop(rid, None)
                self._end(proc)
                raise Unavailable("Your worker did not take the request in %d seconds; it was ended "
                                  "and will be restarted. Try again." % timeout)
        finally:
            self.lock.release()
        try:
            reply = slot.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            with self.pending_lock:
                stuck = next(iter(pending), None) == rid
                answered = pending.pop(rid, None) is None  # just now, by the reader
            if answered:
                reply = slot.get()
            elif not stuck:
                raise Busy(busy)
            else:
                self._end(proc)
                raise Unavailable("Your worker did not answer in %d seconds (template code or a pattern "
                                  "that does not finish, or a file that blocks, such as a FIFO, can do "
                                  "this); it was ended and will be restarted. Try again." % timeout)
        if isinstance(reply, FlightJobError):
            raise reply
        kind, unfinished, body = reply
        unfinished = {b"1": True, b"0": False}.get(unfinished)
        if not isinstance(body, bytearray):  # past SPOOL bytes: in a file (errors are small)
            if kind != "ok":
                raise Unavailable("Your worker sent an error that is not one; try again.")
            return spooled_answer(op, body, slot.bound, raw, self.config["server"]["turn_wait"]), unfinished
        data = parse_answer(body, slot.bound)
        if kind == "ok":  # checked, then sent on as it came (raw) or as parsed
            checked_answer(op, data)
            return (RawJSON(body.decode("utf-8", "replace")) if raw else data), unfinished
        if not isinstance(data, dict):
            raise Unavailable("Your worker sent an error that is not one; try again.")
        raise error_from_dict(data)

    def _read(self, proc, pending):
        """The one reader of a process's stdout and stderr. Each answer line
        goes to the request waiting for it; a line is held only up to
        worker.max_message bytes, counted as they arrive, and a worker that
        sends more, or a line that is no answer, is ended. Stderr goes to
        StderrLog. When stdout ends (or the process has ended and a child
        it left holds the pipes), the process is killed and reaped and every
        request still waiting is woken with the reason."""
        limit = self.config["worker"]["max_message"]
        answers, stderr = Lines(limit, spill=SPOOL), StderrLog(self.user)
        failure = "Your worker ended unexpectedly; it will be restarted. Try again."
        waiting = selectors.DefaultSelector()
        waiting.register(proc.stdout, selectors.EVENT_READ, answers)
        stderr_open, reading_stderr, closing, broke = True, False, False, False
        buffer = bytearray(16384)  # read into, again and again: no allocation a read
        try:
            while True:
                pause = stderr.pause()
                if reading_stderr != (stderr_open and not pause):
                    reading_stderr = not reading_stderr
                    if reading_stderr:
                        waiting.register(proc.stderr, selectors.EVENT_READ, stderr)
                    else:
                        waiting.unregister(proc.stderr)
                # closing: only what stderr already holds (a traceback, say)
                events = waiting.select(0 if closing else min(pause or 1.0, 1.0))
                if not events and (closing or proc.poll() is not None):
                    return
                for key, _ in events:
                    chunk = buffer[:os.readv(key.fd, [buffer])]
                    if key.data is stderr:
                        stderr.feed(chunk)
                        stderr_open = bool(chunk)
                    elif not chunk:
                        waiting.unregister(proc.stdout)
                        closing = True
                    else:
                        with self.pending_lock:  # no answer held past the bound of what is awaited
                            answers.limit = max([slot.bound for slot in pending.values()] or [limit + 64])
                        answers.spill = SPOOL if answers.limit > PIECE_ANSWER + 64 else None
                        for line, cut in answers.push(chunk):
                            if cut or not self._deliver(pending, line):
                                failure = ("Your worker sent something that is not an answer; it was "
                                           "ended and will be restarted. Try again.")
                                broke = True
                                return
                        if answers.overflow:
                            broke = True
                            failure = ("Your worker sent an answer larger than %d bytes (worker.max_message, or "
                                       "less for what was asked); it was ended and will be restarted. Try again."
                                       % (answers.limit - 64))
                            log.warning("worker of %s ended: an answer past its bound", self.user)
                            return
        except OSError:
            pass
        finally:
            waiting.close()
            how = "killed" if broke or proc is self.ended else "stopped" if proc is self.stopped else "crashed"
            self._end(proc)
            self.metrics.worker(self.role or "user", how)
            with self.pending_lock:
                slots = list(pending.values())
                pending.clear()
            for slot in slots:
                slot.put(Unavailable(failure))
            proc.wait()
            for stream in (proc.stdout, proc.stderr):
                with contextlib.suppress(OSError):
                    stream.close()

    def _deliver(self, pending, line):
        """Hand one answer line to the request waiting for it, as (kind,
        unfinished, body), the header cut off the bytearray in place; False
        if the line is no answer."""
        spooled = not isinstance(line, bytearray)  # Lines' spill: a file, at its start
        try:
            rid, kind, unfinished, _ = (line.read(64) if spooled else bytes(line[:64])).split(b" ", 3)
            head = len(rid) + len(kind) + len(unfinished) + 3
            rid, kind = int(rid), kind.decode("ascii")
        except ValueError:
            return False
        if kind not in ("ok", "err", "fail") or unfinished not in (b"0", b"1", b"-"):
            return False
        if spooled:
            line.seek(head)
        else:
            del line[:head]
        if kind == "fail":
            return not spooled and self._failed(line)
        with self.pending_lock:
            slot = pending.pop(rid, None)
        if slot:
            slot.put((kind, unfinished, line))
        return True

    def _failed(self, line):
        """A "fail" line's scheduler failures (see FAILED_KINDS) counted for
        /metrics, their names mapped to the fixed sets there; False for
        one of another shape or size."""
        try:
            failed = json.loads(bytes(line)) if len(line) <= 64 * FAILED_KINDS else None
        except ValueError:
            return False
        if not isinstance(failed, list) or len(failed) > FAILED_KINDS or not all(
                isinstance(f, list) and len(f) == 3 and isinstance(f[0], str) and isinstance(f[1], str)
                and type(f[2]) is int and 0 < f[2] <= FAILED_MOST for f in failed):
            return False
        for command, kind, n in failed:
            self.metrics.scheduler_failed(command, kind, n)
        return True


class WorkerPool:
    """One worker per user, started on first need, ended when idle. In
    multi-user mode the threads are shared fairly (README: "a fair share"):
    each user's calls and downloads in flight bounded, all users' too; a
    request beyond waits its turn (_wait_turn); a user's stuck calls count
    only against that user."""

    def __init__(self, config, switch_user, metrics=None):
        self.config = config
        self.switch_user = switch_user
        self.metrics = metrics or Metrics(config)  # for /metrics: its workers', the poll's, the App's
        # started now, whatever the app holds later: a fresh exec that never sees root's memory
        self.forks = ForkServer(config) if switch_user and config["worker"]["fork_server"] else None
        self.workers = {}
        self.lock = threading.Lock()
        self.turns = threading.Condition(self.lock)  # notified whenever a slot or a place in the queue is freed
        self.waiting, self.tickets = [], itertools.count()  # (ticket, worker, download) of each waiting request
        self.active = set()  # users known to have unfinished jobs
        self.poll = None  # what watches every call (StatusPoll.around_call): the shared status poll, given by App
        self.busy = self.downloads = 0  # calls and downloads in flight, all users; downloads alone
        threads = config["server"]["threads"]
        self.limits = None  # (calls a user, downloads a user, all calls and downloads, all downloads)
        if config["server"]["multi_user"]:
            total = max(1, threads - config["server"]["reserved_threads"])
            self.limits = (config["worker"]["max_requests_per_user"] or max(2, threads // 16),
                           config["server"]["downloads_per_user"], total, max(1, total // 2))

    @contextlib.contextmanager
    def _slot(self, user, download=False):
        """The user's worker, this call (or download) counted in flight from its turn on."""
        with self.lock:
            worker = self.workers.get(user) or self.workers.setdefault(user, Worker(
                user, self.config, self.switch_user, self.forks, metrics=self.metrics))
            if self.limits:
                self._wait_turn(worker, download)
            held, began = worker.held[download], time.monotonic()
            held.append(began)
            self.busy, self.downloads = self.busy + 1, self.downloads + download
        try:
            yield worker
        finally:
            with self.lock:
                held.remove(began)
                self.busy, self.downloads = self.busy - 1, self.downloads - download
                self.turns.notify_all()

    def _wait_turn(self, worker, download):
        """Wait (the lock held) until this request is _next, at most server.turn_wait seconds; Busy at
        once when the user's own slots are held by calls older than that or their limit is waiting."""
        mine, wait, limit = worker.held[download], self.config["server"]["turn_wait"], self.limits[download]
        what = "downloads" if download else "requests"
        if sum(1 for e in self.waiting if e[1] is worker and e[2] == download) >= limit:
            raise Busy("Busy: you already have %d %s waiting; try again when they have finished." % (limit, what))
        entry, deadline = (next(self.tickets), worker, download), time.monotonic() + wait
        self.waiting.append(entry)
        try:
            while self._next() is not entry:
                now, full = time.monotonic(), len(mine) >= limit
                if full and now >= min(mine) + wait:
                    raise Busy("Busy: you already have %d %s in progress, the oldest for %d seconds; try again "
                               "when they have finished." % (len(mine), what, now - min(mine)))
                if now >= deadline:
                    raise Busy("Busy: the server is answering as many requests as it can; try again in a moment.")
                self.turns.wait(min(deadline, min(mine) + wait if full else deadline) - now)
        finally:
            self.waiting.remove(entry)
            self.turns.notify_all()

    def _next(self):
        """Of the waiting requests that may take a slot, the one whose user holds fewest, then the first."""
        ready = [e for e in self.waiting if self.busy < self.limits[2] and len(e[1].held[e[2]]) < self.limits[e[2]]
                 and (not e[2] or self.downloads < self.limits[3])]
        return min(ready, key=lambda e: (len(e[1].held[0]) + len(e[1].held[1]), e[0]), default=None)

    @contextlib.contextmanager
    def download(self, user):
        """A download's slot, held while it streams (its thread waits on the
        client as much as on the worker), in its turn: yields call(op, args),
        the user's worker called within this slot."""
        with self._slot(user, download=True) as worker:
            yield lambda op, args: worker.call(op, args)[0]

    def call(self, user, op, args=None, **kw):
        """Worker.call for `user`, in one of its slots; what the reply says
        of unfinished jobs keeps `active` up to date. The poll, when there
        is one, watches the call: it may add to args, and hears the reply."""
        watch = self.poll.around_call(user, op, args, kw.get("touch", True)) if self.poll else None
        args = next(watch) if watch else args
        with self._slot(user) as worker:
            result, unfinished = worker.call(op, args, **kw)
        if unfinished is not None:
            (self.active.add if unfinished else self.active.discard)(user)
        if watch:
            with contextlib.suppress(StopIteration):
                watch.send(unfinished)
        return result

    def reap(self):
        """End workers idle longer than worker.idle_timeout (none in use:
        a call holds its worker counted in flight, or waiting its turn)."""
        limit = time.time() - self.config["worker"]["idle_timeout"]
        with self.lock:
            idle = [u for u, w in self.workers.items()
                    if w.last_used < limit and not any(w.held) and all(e[1] is not w for e in self.waiting)]
            stopped = [self.workers.pop(u) for u in idle]
        for worker in stopped:
            worker.stop()
            log.info("worker for %s ended after being idle", worker.user)

    def refresh_active(self):
        """Background refresh for users with unfinished jobs, so jobs that end
        while nobody looks get their true final state (users whose jobs the
        shared status poll follows excepted)."""
        if self.config["server"]["multi_user"] and self.config["scheduler"]["shared_poll"]:
            return
        for user in list(self.active):
            try:
                self.call(user, "jobs.ask_scheduler", {}, touch=False)
            except FlightJobError as e:
                log.warning("background refresh for %s failed: %s", user, e.message)

    def stop_all(self):
        if self.poll:
            self.poll.close()
        with self.lock:
            workers, self.workers = list(self.workers.values()), {}
        for worker in workers:
            worker.stop()
        if self.forks is not None:
            self.forks.stop()

    def pids(self):
        return {u: w.proc.pid for u, w in self.workers.items() if w.alive()}


# Shared status poll #########################################################

# What a status from the poll's process may hold: field -> check (from
# JOB_FIELDS); a text at most STATUS_TEXT, at most MAX_TASKS tasks and one
# counting the rest. Anything else, and that job is left out of the round.
STATUS_FIELDS = dict({f.name: f.check for f in JOB_FIELDS if f.source == "status"}, tasks=_or_none(
    lambda v: _tasks(v) and len(v) <= MAX_TASKS + 1 and all(set(t) <= {"id", "state", "raw_state", "exit_code", "reason_text"}
                                                             and all(x is None or type(x) is int or isinstance(x, str)
                                                                     and len(x) <= STATUS_TEXT for x in t.values()) for t in v)))
POLL_TICK = 0.5  # seconds between two looks at whether a poll is due
POLL_WAIT = 10  # seconds a poll waits for workers to say which jobs to ask about
HAND_THREADS = 16  # threads handing workers their statuses (one per user at a time)
WATCHING = 30  # seconds a user's look at their jobs counts as someone watching


def _status_fault(st):
    """None for a status as STATUS_FIELDS says, else what is wrong with it."""
    if not isinstance(st, dict) or st.get("state") not in STATES:
        return "no state"
    return next(("its field %r" % k[:40] for k, v in st.items() if k not in STATUS_FIELDS or not STATUS_FIELDS[k](v)
                 or isinstance(v, str) and len(v) > STATUS_TEXT), None)


def checked_statuses(answer, ids):
    """The poll process's answer -> (statuses {id: status or None (polled,
    not found)} for the ids asked that it could decide, owners {id: uid},
    outside {uid: {job id: status}}, undecided {id: why}, refused {id: (uid
    or None, why)}), or ValueError for an answer that is no poll's answer.
    Each job is checked on its own, field by field: one that is not a
    status of a job asked for (a field too long or of a wrong type) is left
    out of this round, undecided, and said in refused; never the others."""
    parts = [answer.get(key, {}) if isinstance(answer, dict) else None
             for key in ("statuses", "owners", "outside", "undecided")]
    if not all(isinstance(part, dict) for part in parts) or "statuses" not in answer:
        raise ValueError("not the shared poll's answer")
    asked, refused, outside = set(ids), {}, {}
    for i, st in parts[0].items():
        if i in asked and _status_fault(st):
            refused[i] = (None, "job %s: the status the scheduler gave cannot be used (%s)" % (i, _status_fault(st)))
    statuses = {i: st for i, st in parts[0].items() if i in asked and i not in refused}
    owners = {i: uid for i, uid in parts[1].items() if i in statuses and type(uid) is int}
    for uid, jobs in parts[2].items():
        for i, st in (jobs.items() if isinstance(uid, str) and uid.isdigit() and isinstance(jobs, dict) else ()):
            if not (isinstance(i, str) and JOB_REF_RE.match(i)) or _status_fault(st):
                refused[str(i)[:20]] = (int(uid), "its job %r left out: %s" % (str(i)[:20], _status_fault(st) or "no job id"))
            else:
                outside.setdefault(int(uid), {})[i] = st
    undecided = {i: _cut(why) for i, why in parts[3].items() if i in asked and i not in statuses and _text(why)}
    undecided.update({i: why for i, (uid, why) in refused.items() if uid is None})
    return ({i: statuses.get(i) for i in ids if i not in undecided}, owners, outside, undecided, refused)


def _gist(statuses):
    """Statuses as compared with those a worker was handed last: a running
    job's run time grows every poll, but the pages count it on from its
    start, so it alone is no reason to hand them again (and write)."""
    return {i: st if st is None or st["state"] not in UNFINISHED else
            {k: v for k, v in st.items() if k != "elapsed_s"} for i, st in statuses.items()}


def _names(value):
    return value is None or isinstance(value, list) and len(value) <= MAX_RULE_NAMES and all(
        isinstance(n, str) and 0 < len(n) <= 256 for n in value)


def _amount(value):
    return type(value) is int and 0 <= value < 10 ** 9


# What a partition of the poll's summary may hold: field -> check.
PARTITION_FIELDS = dict({key: _names for key in ACCESS_RULES}, **{key: _amount for key in (
    "cpus_free", "cpus_total", "nodes_free", "nodes_total", "gpus_free", "gpus_total")},
    name=lambda v: isinstance(v, str) and bool(PARTITION_RE.match(v)), default=lambda v: isinstance(v, bool),
    state=lambda v: isinstance(v, str) and len(v) <= 20, waiting=_or_none(_amount),
    root_only=lambda v: isinstance(v, bool), exclusive=lambda v: isinstance(v, bool),
    def_mem_per_cpu=_or_none(_amount), def_mem_per_node=_or_none(_amount))


def checked_partitions(answer):
    """The poll process's partition summary, field by field, or ValueError."""
    found = answer.get("partitions") if isinstance(answer, dict) else None
    if not isinstance(found, list) or len(found) > MAX_PARTITIONS or not all(
            isinstance(p, dict) and set(p) == set(PARTITION_FIELDS)
            and all(check(p[key]) for key, check in PARTITION_FIELDS.items()) for p in found):
        raise ValueError("not a partition summary")
    return found


class StatusPoll:
    """The daemon's one status poll for every user's Slurm jobs (multi-user
    mode; DESIGN.md's one exception to "root never runs a scheduler
    command"). A thread looks every POLL_TICK seconds: when some user has
    unfinished jobs and a poll is due (scheduler.refresh_interval while
    someone has looked at their jobs in the last WATCHING seconds, else
    scheduler.background_refresh; never while nobody has unfinished jobs),
    one call to its process (StatusSource, a worker of status_user, bounded
    as any worker) gives the status of every user's unfinished jobs with
    one squeue and at most one sacct; each user's worker is then handed the
    statuses of its own jobs (only when they changed, or some job is
    missing: the UNKNOWN grace runs in the worker) and records them, as
    only it may write in the home. A poll that fails hands workers the
    notice instead and no job changes. Pages never wait on the scheduler:
    they read what the workers recorded. While the status user cannot see
    every user's jobs (PrivateData), each worker polls for itself on the
    same schedule (jobs.ask_scheduler), and the log says why; so does
    each worker on the local scheduler, whose states are files in the
    homes (no controller to spare, and root does not read there)."""

    def __init__(self, config, pool):
        self.config, self.pool = config, pool
        self.source = Worker(config["scheduler"]["status_user"], config, pool.switch_user, pool.forks, role="status",
                             metrics=pool.metrics)
        self.lock = threading.Lock()
        self.ids = {}  # user -> scheduler ids of their unfinished jobs; None: to ask their worker
        self.sent = {}  # user -> the statuses (or notice) their worker was last handed
        self.watched = {}  # user -> when (monotonic) they last looked at their jobs
        self.last = -1e9  # when the last poll began (monotonic)
        self.hidden = (None, 0)  # (why the status user cannot see every user's jobs, since):
        # meanwhile each worker polls for itself (jobs.ask_scheduler)
        self.counters = {"polls": 0, "failed": 0}  # and the scheduler commands the polls ran
        self.refused = set()  # the jobs whose statuses the last poll left out (logged when first left out)
        self.rounds = threading.Condition()  # notified after each poll that was due
        self.round, self.round_hands = 0, []
        self.thread, self.stopping = None, threading.Event()
        # workers are handed their statuses from a few threads, one call per
        # user at a time: a stopped or slow worker holds up its own user only
        self.hands = concurrent.futures.ThreadPoolExecutor(HAND_THREADS, thread_name_prefix="poll-hand")
        self.handing = set()  # users with a hand in flight
        # the partitions' summary for submit pages: {"partitions", "at"} or
        # None; made at most every refresh_interval while someone was shown
        # one in the last WATCHING seconds; failed: the last one is kept
        self.cluster, self.cluster_made, self.cluster_wanted = None, -1e9, -1e9

    def cluster_summary(self, want=True):
        """The partitions' summary a submit page shows (None until the poll
        has made one); want: keep it fresh for WATCHING seconds (a page
        shown, not an API submit). No scheduler call here: the poll's
        thread makes it."""
        if not want:
            return self.cluster
        self.cluster_wanted = time.monotonic()
        if self.thread is None and self.serving():
            with self.lock:
                if self.thread is None:
                    self.thread = threading.Thread(target=self._loop, daemon=True)
                    self.thread.start()
        return self.cluster

    def _cluster_tick(self, now):
        """One partition summary, when a page wanted one and it is due."""
        if now - self.cluster_wanted >= WATCHING or now - self.cluster_made < self.config["scheduler"]["refresh_interval"] \
                or not scheduler_class(self.config).SHARED_POLL:
            return
        self.cluster_made = now
        try:
            answer, _ = self.source.call("status.partitions", {}, touch=False)
            self.cluster = {"partitions": checked_partitions(answer), "at": now_iso()}
            self.counters["partitions"] = self.counters.get("partitions", 0) + 1
        except (FlightJobError, ValueError) as e:
            log.warning("partition summary failed: %s", getattr(e, "message", None) or e)

    def serving(self):
        """Whether this poll follows users' jobs (else their workers do)."""
        return self.config["scheduler"]["shared_poll"]

    def around_call(self, user, op, args, looked):
        """The pool's hook round a worker call (a generator): yields the args
        to send (the partition summary added for CLUSTER_OPS: only a page
        showing the questions keeps it coming), then hears the reply's word
        on unfinished jobs (send) -- but for its own calls (POLL_OPS)."""
        if op in CLUSTER_OPS and self.serving() and scheduler_class(self.config).SHARED_POLL:
            args = dict(args or {}, cluster=self.cluster_summary(want=op in CLUSTER_PAGES))
        unfinished = yield args
        if op not in POLL_OPS:
            self.heard(user, op, unfinished, looked)

    def heard(self, user, op, unfinished, looked):
        """A worker's answer to `op`: a user with unfinished jobs is followed
        (their ids asked again after anything but a look, a submit say);
        a look at their jobs makes polls fast, and brings their jobs
        submitted outside flightjobd in."""
        looking = looked and op.startswith("jobs.")
        if looking:
            self.watched[user] = time.monotonic()
        if unfinished and (op not in ("jobs.list", "jobs.get") or user not in self.ids):
            self.ids[user] = None
        if (unfinished or looking) and self.thread is None and self.serving():
            with self.lock:
                if self.thread is None:
                    self.thread = threading.Thread(target=self._loop, daemon=True)
                    self.thread.start()

    def close(self):
        self.stopping.set()
        self.source.stop(grace=0)
        self.hands.shutdown(wait=False)

    def wait_round(self, timeout):
        """Wait until a poll that begins after this call has ended and the
        workers have recorded what it handed them (for the tests and the
        bench); False if that did not happen in timeout seconds."""
        end = time.monotonic() + timeout
        with self.rounds:
            first = self.round
            if not self.rounds.wait_for(lambda: self.round >= first + 2, timeout):
                return False
            hands = self.round_hands
        return not concurrent.futures.wait(hands, timeout=max(0, end - time.monotonic())).not_done

    def _loop(self):
        while not self.stopping.wait(POLL_TICK):
            try:
                self.tick()
            except Exception:
                log.exception("status poll failed")

    def due(self, now):
        """The users a poll is for now ([] when none is due): those with
        unfinished jobs, and those looking at their jobs (whose jobs
        submitted outside flightjobd it may find)."""
        active = set(self.pool.active)
        watching = {u for u, at in list(self.watched.items()) if now - at < WATCHING}
        for table in (self.watched, self.ids, self.sent):  # forget who is gone
            for user in [u for u in list(table) if u not in active and u not in watching]:
                table.pop(user, None)
        if not (active or watching) or not self.serving():
            return []
        scheduler = self.config["scheduler"]
        interval = scheduler["refresh_interval"] if active & watching else scheduler["background_refresh"]
        if (not active & watching and not interval) or now - self.last < interval:
            return []
        return sorted(active | watching)

    def tick(self):
        """One poll, when one is due (and the partitions' summary, when due)."""
        self._cluster_tick(time.monotonic())
        users = self.due(time.monotonic())
        if not users:
            return
        self.last = time.monotonic()
        hands = []
        try:
            hands = self._poll(users)
        finally:
            with self.rounds:
                self.round += 1
                self.round_hands = [h for h in hands if h]
                self.rounds.notify_all()

    def _poll(self, users):
        """One poll for users; the hands it started (futures)."""
        active = [u for u in users if u in self.pool.active]
        if not scheduler_class(self.config).SHARED_POLL or (
                self.hidden[0] and time.monotonic() - self.hidden[1] < 600):
            # the local scheduler's states are files in each home, read by its
            # worker (no controller to spare): the same schedule, a pass each
            # ("auto" is resolved by serve(); unresolved, each worker knows)
            return [self._hand_soon(user, {}, "jobs.ask_scheduler") for user in active]
        # learn what to ask for from the workers that have not said (no scheduler call)
        asking = [self._hand_soon(user, {}) for user in active if self.ids.get(user) is None]
        concurrent.futures.wait([f for f in asking if f], timeout=POLL_WAIT)
        uids = {}
        for user in users:
            with contextlib.suppress(KeyError):
                uids[user] = pwd.getpwnam(user).pw_uid
        asked = self._fair_share({u: self.ids.get(u) or [] for u in users if u in uids})
        followed = {}
        for user, mine in asked.items():
            followed.setdefault(str(uids[user]), []).extend(mine)
        if not followed:
            return []
        self.counters["polls"] += 1
        try:
            answer, _ = self.source.call("status.poll", {"followed": followed}, touch=False)
            if isinstance(answer, dict) and answer.get("hidden"):
                self.hidden = (str(answer["hidden"])[:STATUS_TEXT], time.monotonic())
                log.warning("shared status poll off for 10 minutes, each user's worker polls: %s",
                            self.hidden[0])
                return [self._hand_soon(user, {}, "jobs.ask_scheduler") for user in active]
            self.hidden = (None, 0)
            statuses, owners, outside, undecided, refused = checked_statuses(
                answer, [i for mine in followed.values() for i in mine])
            for i, (uid, why) in refused.items():  # logged once while it lasts, naming the job and its owner
                if i not in self.refused:
                    log.warning("shared status poll: a job of %s left out: %s", next((
                        u for u, mine in asked.items() if i in mine and uid is None or uids[u] == uid), uid), why)
            self.refused = set(refused)
            for command, n in answer.get("calls", {}).items():
                if isinstance(n, int) and command in ("squeue", "sacct", "scontrol", "sacctmgr"):
                    self.counters[command] = self.counters.get(command, 0) + n
            self.pool.metrics.poll_round(True)
        except (FlightJobError, ValueError) as e:
            self.counters["failed"] += 1
            self.pool.metrics.poll_round(False)
            notice = getattr(e, "message", None) or "The status poll's answer was refused: %s." % e
            log.warning("shared status poll failed: %s", notice)
            for user in active:  # asked again next time: what they follow may be what failed
                self.ids[user] = None
            return [self._hand_soon(user, {"notice": notice}, sent=notice) for user in active
                    if self.sent.get(user) != notice]
        hands = []
        for user, theirs in asked.items():
            # a status is handed only to its owner: a record naming another
            # user's job id learns nothing of it (it is "not found")
            mine = {i: statuses[i] if owners.get(i) == uids[user] else None for i in theirs if i in statuses}
            others = {i: st for i, st in sorted(outside.get(uids[user], {}).items())
                      if st["state"] in UNFINISHED and i not in (self.ids.get(user) or ())}
            why = sorted({undecided[i] for i in theirs if i in undecided})
            args = {"statuses": mine, "outside": dict(list(others.items())[:OUTSIDE_IMPORTS])}
            if why:
                args["notice"] = "; ".join(why)[:STATUS_TEXT]
            gist = (_gist(mine), args.get("notice"))
            if others or (mine or why) and (self.sent.get(user) != gist or None in mine.values()):
                hands.append(self._hand_soon(user, args, sent=gist))
        return hands

    @staticmethod
    def _fair_share(wanted):
        """{user: ids} cut to MAX_POLL_IDS in all, taken from each user in
        turn (each user's list is newest first): the poll's ids, by user."""
        asked, taken = {u: [] for u in wanted}, 0
        for row in itertools.zip_longest(*[[(u, i) for i in ids] for u, ids in wanted.items()]):
            for item in row:
                if item is not None and taken < MAX_POLL_IDS:
                    asked[item[0]].append(item[1])
                    taken += 1
        return asked

    def _hand_soon(self, user, args, op="jobs.take_statuses", sent=None):
        """_hand in one of the hand threads, unless one for the user is in
        flight: the future, or None."""
        with self.lock:
            if user in self.handing or self.stopping.is_set():
                return None
            self.handing.add(user)

        def hand():
            try:
                self._hand(user, op, args, sent)
            finally:
                with self.lock:
                    self.handing.discard(user)
        try:
            return self.hands.submit(hand)
        except RuntimeError:  # shut down
            with self.lock:
                self.handing.discard(user)
            return None

    def _hand(self, user, op, args, sent=None):
        """Call the user's worker's op (one of POLL_OPS) with args: what it
        answers tells the ids of its unfinished jobs."""
        try:
            reply = self.pool.call(user, op, args, touch=False)
        except FlightJobError as e:
            log.warning("status poll: the worker of %s: %s", user, e.message)
            return
        self.sent[user] = sent
        ids = reply.get("ids") if isinstance(reply, dict) else None
        self.ids[user] = [i for i in ids if isinstance(i, str) and JOB_REF_RE.match(i)][:POLLED_IDS] \
            if isinstance(ids, list) else []


# Authentication and sessions ################################################

WRONG_LOGIN = "Wrong username or password."
SSO_ONLY = "This site signs you in through its single sign-on: open %s (passwords are not accepted here)."
SHADOW = "/etc/shadow"
# Forwarding headers other than X-Forwarded-For: dropped before Bottle sees them.
PROXY_HEADERS = ("HTTP_X_FORWARDED_HOST", "HTTP_X_FORWARDED_PROTO", "HTTP_X_FORWARDED_PORT",
                 "HTTP_X_FORWARDED_BY", "HTTP_FORWARDED")


def client_address(environ, proxies):
    """The client's address, as the throttle counts it: the TCP peer, unless
    the peer is in server.trusted_proxies; then X-Forwarded-For is read from
    the right, past every trusted proxy, and the first other address is the
    client. Entries further left were written by the client and are never
    used; from an untrusted peer the header is ignored."""
    addr = environ.get("REMOTE_ADDR") or "?"
    hops = environ.get("HTTP_X_FORWARDED_FOR", "").split(",")
    while hops and _trusted(addr, proxies):
        try:
            addr = str(ipaddress.ip_address(hops.pop().strip().strip("[]")))
        except ValueError:  # a proxy that wrote no or a garbled address: stop at the proxy
            break
    return addr


def _ip(addr):
    """addr as an ip_address (an IPv4-mapped one as IPv4), None for no address."""
    with contextlib.suppress(ValueError):
        ip = ipaddress.ip_address(addr.split("%")[0])
        return getattr(ip, "ipv4_mapped", None) or ip


def address_key(addr):
    """The address as the throttle and the login slots count it: one key for
    all of loopback (a local user may connect from any 127.x.y.z; bound_clients
    tells local users apart) and one for an IPv6 /64 (what one site or host
    is handed); an IPv4 address as it is."""
    ip = _ip(addr)
    if ip is None or ip.version == 4 and not ip.is_loopback:
        return str(addr if ip is None else ip)
    return "loopback" if ip.is_loopback else str(ipaddress.ip_network("%s/64" % ip, strict=False))


def _trusted(addr, proxies):
    ip = _ip(addr)
    return ip is not None and any(ip in net for net in proxies)


def is_local_address(addr):
    """Whether addr is loopback or one of this machine's own addresses, from
    which any local user can connect: asked by binding a socket to it. What
    cannot be told (no address, another error) counts as local."""
    ip = _ip(addr)
    if ip is None or ip.is_loopback:
        return True
    try:
        with socket.socket(socket.AF_INET6 if ip.version == 6 else socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((str(ip), 0))
        return True
    except OSError as e:
        return e.errno != errno.EADDRNOTAVAIL


def forwarded_for_only(app):
    """The WSGI app as waitress serves it. Waitress is told to pass proxy
    headers through (clear_untrusted_proxy_headers=False) so client_address
    can read X-Forwarded-For itself, with a list of proxies and networks
    (waitress trusts one address); the other forwarding headers are dropped
    here, as waitress would, so no URL is ever built from them."""
    def app_without_proxy_headers(environ, start_response):
        for name in PROXY_HEADERS:
            environ.pop(name, None)
        return app(environ, start_response)
    return app_without_proxy_headers


def shadow_entries(users, path=SHADOW):
    """user -> (password field, last-change day) of the shadow entry, for
    those of users that have one. Empty when the file cannot be read (not
    root; accounts in LDAP have no entry, and only PAM's account check
    applies to them). Parsed directly: the spwd module is gone in 3.13."""
    wanted = {u.encode("utf-8", "replace") for u in users}
    try:
        with open(path, "rb") as f:
            lines = f.read().split(b"\n")
    except OSError:
        return {}
    return {fields[0].decode("utf-8"): (fields[1], fields[2])
            for fields in (line.split(b":") for line in lines) if len(fields) > 2 and fields[0] in wanted}


def shadow_fingerprints(users, path=SHADOW, entries=None):
    """user -> a digest of the shadow entry (shadow_entries, or entries
    given): a new password, a lock (`!` before the hash) or a forced change
    alters it."""
    entries = shadow_entries(users, path) if entries is None else entries
    return {user: hashlib.sha256(b"\0".join([b"flightjob-shadow", *entry])).hexdigest()[:32]
            for user, entry in entries.items()}


def _changed(then, now):
    """Whether a shadow fingerprint changed (unknown either side: no)."""
    return then is not None and now is not None and then != now


class Throttle:
    """Failed logins, counted per (user name, address), per address and per
    user name, each as (count, time of the last failure), forgotten
    throttle_window seconds after that (throttle_cap, if longer). At most
    throttle_table records: past that, those whose last failure is oldest go
    first. Only the pair and the address ever refuse a login (refusal); the
    user name's count only slows its logins (slowdown), so failures from
    elsewhere never lock a user out of an address that did not fail."""

    def __init__(self, config):
        self.config = config
        self.records = {}  # key -> (count, last failure); in order of last failure
        self.lock = threading.Lock()

    def __len__(self):
        return len(self.records)

    def clear(self):
        with self.lock:
            self.records.clear()

    def _keep(self):
        return max(self.config["auth"]["throttle_window"], self.config["auth"]["throttle_cap"])

    def _get(self, key, now):
        record = self.records.get(key)
        return record if record and now - record[1] < self._keep() else (0, 0.0)

    def refusal(self, user, addr):
        """Seconds until this user name may be tried from this address (0:
        now): once the pair has failed more than throttle_free times, for
        throttle_delay seconds after its next failure, doubling with each
        further one up to throttle_cap; once the address has failed
        throttle_address times (any names), until throttle_window has passed
        since its last failure."""
        c, now = self.config["auth"], time.time()
        with self.lock:
            count, last = self._get(("pair", user, addr), now)
            over = count - c["throttle_free"]
            wait = last + min(c["throttle_cap"], c["throttle_delay"] * 2 ** min(over - 1, 30)) - now \
                if over > 0 else 0.0
            count, last = self._get(("addr", addr), now)
            if count >= c["throttle_address"]:
                wait = max(wait, last + c["throttle_window"] - now)
        return max(0.0, wait)

    def slowdown(self, user):
        """Seconds a login for this user name waits before its password is
        checked: throttle_user_delay once the name has failed throttle_user
        times, from any addresses."""
        c = self.config["auth"]
        with self.lock:
            count = self._get(("user", user), time.time())[0]
        return c["throttle_user_delay"] if count >= c["throttle_user"] else 0.0

    def failed(self, user, addr):
        now = time.time()
        with self.lock:
            for key in (("pair", user, addr), ("addr", addr), ("user", user)):
                count = self._get(key, now)[0]
                self.records.pop(key, None)
                self.records[key] = (count + 1, now)
            while len(self.records) > self.config["auth"]["throttle_table"]:
                del self.records[next(iter(self.records))]

    def has_failed(self, addr):
        """Whether this address failed a login within throttle_window."""
        with self.lock:
            return self._get(("addr", addr), time.time())[0] > 0

    def succeeded(self, user, addr):
        with self.lock:
            self.records.pop(("pair", user, addr), None)

    def expire(self):
        cutoff = time.time() - self._keep()
        with self.lock:
            while self.records:
                key = next(iter(self.records))
                if self.records[key][1] >= cutoff:
                    break
                del self.records[key]


SESSIONS_PER_USER = 32  # the most sessions one user holds in a daemon: a new one ends their oldest


class Session:
    """A login: the cookie's random id, the user, the CSRF token, when it was
    made and last used, and the user's shadow fingerprint then (None when
    unknown)."""

    __slots__ = ("id", "user", "csrf", "created", "seen", "shadow")

    def __init__(self, user, shadow=None, sid=None, csrf=None, created=None):
        self.id = sid or secrets.token_urlsafe(32)
        self.user = user
        self.csrf = csrf or secrets.token_urlsafe(32)
        self.created = self.seen = created or time.time()
        self.shadow = shadow


def session_dir(config):
    """auth.session_dir, or its default: /var/lib/flight-job/sessions in
    multi-user mode, the user's own $XDG_STATE_HOME/flight-job/sessions
    (~/.local/state/...) in single-user mode."""
    path = config["auth"]["session_dir"]
    if not path and config["server"]["multi_user"]:
        return "/var/lib/flight-job/sessions"
    if not path:
        path = os.path.join(os.environ.get("XDG_STATE_HOME") or "~/.local/state", "flight-job", "sessions")
    return os.path.expanduser(path)


class SessionStore:
    """Sessions as small files in a directory only the daemon's user can
    open (0700, files 0600), so they survive a restart and login nodes that
    share the directory share them. A file is named by the sha256 of the
    session id, never the id, is written once, atomically, and holds the
    user, the CSRF token, the creation time and the shadow fingerprint:
    nothing a reader can log in with. When the session was last used is the
    file's mtime, touched at most every minute: a touch cannot bring back a
    file another node has just removed, as a rewrite could."""

    def __init__(self, directory):
        self.dir = directory
        self.ready = False

    def path(self, sid):
        return os.path.join(self.dir, hashlib.sha256(sid.encode("utf-8", "replace")).hexdigest())

    def _ensure(self):
        if self.ready:
            return
        os.makedirs(self.dir, 0o700, exist_ok=True)
        st = os.lstat(self.dir)
        if os.path.islink(self.dir) or not os.path.isdir(self.dir) or st.st_uid != os.geteuid():
            raise OSError(errno.EPERM, "not a directory owned by the daemon's user", self.dir)
        if st.st_mode & 0o077:
            os.chmod(self.dir, 0o700)
        self.ready = True

    def write(self, session):
        self._ensure()
        atomic_write(self.path(session.id), json.dumps(
            {"format": FORMAT, "user": session.user, "csrf": session.csrf,
             "created": session.created, "shadow": session.shadow}))

    def read(self, sid):
        """The Session stored for sid, or None (missing, unreadable)."""
        try:
            data = read_json(self.path(sid))
            return Session(data["user"], data.get("shadow"), sid, data["csrf"], float(data["created"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def last_used(self, sid):
        """The file's mtime, or None when the session is gone."""
        try:
            return os.stat(self.path(sid)).st_mtime
        except OSError:
            return None

    def touch(self, sid, now):
        """Record a use; False when the file is gone (ended elsewhere)."""
        try:
            os.utime(self.path(sid), (now, now))
            return True
        except OSError:
            return False

    def remove(self, sid):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path(sid))

    def sweep(self, over, stale=None):
        """Remove the files of sessions over(created, last used) says are
        over, of sessions stale(users)(user, shadow fingerprint) says belong
        to an account that changed or may no longer log in, unreadable ones,
        and temporary files a crash left."""
        try:
            names = os.listdir(self.dir)
        except OSError:
            return
        now, kept = time.time(), []
        for name in names:
            path = os.path.join(self.dir, name)
            with contextlib.suppress(OSError):
                mtime = os.stat(path).st_mtime
                if name.startswith("."):
                    if now - mtime > 60:
                        os.unlink(path)
                    continue
                try:
                    data = read_json(path)
                    if not over(float(data["created"]), mtime):
                        kept.append((path, str(data["user"]), data.get("shadow")))
                        continue
                except (ValueError, KeyError, TypeError):
                    pass
                os.unlink(path)
        ended = stale({user for _, user, _ in kept}) if stale and kept else None
        for path, user, shadow in kept:
            if ended and ended(user, shadow):
                with contextlib.suppress(OSError):
                    os.unlink(path)


class Auth:
    """Who may log in, the PAM check with its throttle, fixed failure time
    and bounded slots, sessions (in a SessionStore, cached here by id), the
    Basic-auth cache, the scheduled re-check of logged-in accounts and the
    single-user one-time login token."""

    def __init__(self, config, daemon_user, metrics=None):
        self.config = config
        self.daemon_user = daemon_user
        self.metrics = metrics or Metrics(config)  # logins counted by outcome, nothing else of them
        self.sessions = {}  # session id -> Session: those this process has seen, a cache of the store
        self.store = SessionStore(session_dir(config))
        self.basic = {}  # sha256(secret + user + password) -> (user, expires, shadow fingerprint)
        self.failures = Throttle(config)
        self.in_flight = {}  # address_key -> logins being checked
        self.proxies = [ipaddress.ip_network(p, strict=False) for p in config["server"]["trusted_proxies"]]
        self.proxy_uids = {pwd.getpwnam(name).pw_uid for name in config["auth"]["proxy_users"]}  # checked: check_bounds
        self.secret = secrets.token_bytes(32)
        self.login_token = secrets.token_urlsafe(24)
        self.lock = threading.Lock()
        self.rechecked = time.time()
        self.swept = 0.0

    def allowed(self, user):
        """The password entry of a user who may log in, else None. Multi-user
        mode refuses unknown users, root, uids under min_uid, nobody, login
        shells in auth.deny_shells (system accounts such as Debian's slurm)
        and, when auth.allow_groups is set, users in none of those groups;
        single-user mode admits only the daemon's own user. Refusals are 401
        with the same words and time as a wrong password, PAM never asked."""
        try:
            pw = pwd.getpwnam(user)
        except (KeyError, ValueError, UnicodeError):
            return None
        if not self.config["server"]["multi_user"]:
            return pw if pw.pw_name == self.daemon_user else None
        c = self.config["auth"]
        # 65534 is nobody/nfsnobody (the overflow uid): a system account above min_uid
        if pw.pw_uid in (0, 65534) or pw.pw_uid < c["min_uid"] or pw.pw_shell in c["deny_shells"]:
            return None
        return None if c["allow_groups"] and not set(c["allow_groups"]) & self._groups(pw) else pw

    @staticmethod
    def _groups(pw):
        names = set()
        for gid in os.getgrouplist(pw.pw_name, pw.pw_gid):
            with contextlib.suppress(KeyError):
                names.add(grp.getgrgid(gid).gr_name)
        return names

    def check_password(self, user, password, addr):
        """The user's name if the account may log in (allowed) and PAM
        accepts the password and the account (pam_acct_mgmt: an expired
        account is refused). Otherwise, at once: Throttled (429) while this
        name from this address, or this address, is held back (Throttle);
        Unavailable (503) when all auth.login_slots are busy, so at most that
        many HTTP threads wait on logins. Or Unauthorized (401), whatever the
        cause, auth.failure_delay seconds after the check began (or when PAM
        answers, if later), so the time tells nothing."""
        self.refuse_passwords()
        if not isinstance(user, str) or not isinstance(password, str) or not user or len(user) > 256 \
                or len(password) > 4096 or "\0" in user + password:
            self.metrics.login("failure")
            raise Unauthorized(WRONG_LOGIN)
        addr = address_key(addr)
        wait = self.failures.refusal(user, addr)
        if wait:
            self.metrics.login("throttled")
            raise Throttled("Too many failed logins; try again in %d seconds." % (int(wait) + 1))
        try:
            with self._login_slot(addr):
                start = time.monotonic()
                time.sleep(self.failures.slowdown(user))
                pw = self.allowed(user)
                if pw and self._pam(user, password):
                    self.failures.succeeded(user, addr)
                    self.metrics.login("success")
                    return pw.pw_name
                self.failures.failed(user, addr)
                time.sleep(max(0.0, self.config["auth"]["failure_delay"] - (time.monotonic() - start)))
        except FlightJobError as e:  # no slot: throttled (one of this address's is checked) or busy
            self.metrics.login("throttled" if isinstance(e, Throttled) else "busy")
            raise
        self.metrics.login("failure")
        raise Unauthorized(WRONG_LOGIN)

    def refuse_passwords(self):
        """While auth.password_login is false, PasswordsOff (403), counted:
        no password is checked, nor its user name, so the proxy's
        multi-factor cannot be skipped by reaching the daemon directly. The
        message sends the user to server.base_url, from the config."""
        if not self.config["auth"]["password_login"]:
            self.metrics.login("password_off")
            raise PasswordsOff(SSO_ONLY % self.config["server"]["base_url"])

    @contextlib.contextmanager
    def _login_slot(self, addr):
        """One of auth.login_slots for a login from addr, or at once 503. One
        address (address_key) never holds the last slot; one that failed
        recently gets one login at a time (429 for a second) and never the
        last free slot, so a guesser, from however many addresses, cannot
        keep others from logging in."""
        slots = self.config["auth"]["login_slots"]
        with self.lock:
            busy = sum(self.in_flight.values())
            failing = self.failures.has_failed(addr)
            mine = self.in_flight.get(addr, 0)
            if (failing and mine) or (slots > 1 and mine >= slots - 1):
                raise Throttled("A login from your address is already being checked; try again in a moment.")
            if busy >= slots or (failing and slots > 1 and busy >= slots - 1):
                raise Unavailable("Too many logins in progress; try again in a moment.")
            self.in_flight[addr] = self.in_flight.get(addr, 0) + 1
        try:
            yield
        finally:
            with self.lock:
                self.in_flight[addr] -= 1
                if not self.in_flight[addr]:
                    del self.in_flight[addr]

    def _pam(self, user, password):
        import pamela
        try:
            pamela.authenticate(user, password, service=self.config["auth"]["pam_service"],
                                check=True)
            return True
        except pamela.PAMError as e:
            log.info("login refused for %s: %s", user, e)
            return False

    def _pam_account(self, user):
        """PAM's account check alone (pam_acct_mgmt: expired, or refused by
        the site's account stack)."""
        import pamela
        try:
            pamela.check_account(user, service=self.config["auth"]["pam_service"])
            return True
        except pamela.PAMError as e:
            log.info("account %s refused: %s", user, e)
            return False

    def _shadow(self, user):
        return None if not self.config["server"]["multi_user"] else shadow_fingerprints([user]).get(user)

    def usable(self, user, entries=None):
        """The password entry of a user who may log in now, no password
        asked: allowed, and in multi-user mode PAM's account check passes
        (pam_acct_mgmt: expired, or refused by the site's account stack) and
        the password is not locked (a shadow field starting "!": usermod -L,
        passwd -l; pam_acct_mgmt lets those through, as sshd with PAM does for
        keys). entries: shadow_entries already read. The check of a login the
        site's proxy vouches for, and of every session at the re-check."""
        pw = self.allowed(user)
        if pw is None or not self.config["server"]["multi_user"]:
            return pw
        entry = (shadow_entries([user]) if entries is None else entries).get(user)
        if entry is not None and entry[0].startswith(b"!"):
            log.info("account %s refused: its password is locked", user)
            return None
        return pw if self._pam_account(user) else None

    def _accounts(self, users):
        """(those of users who may no longer log in (usable), user -> shadow
        fingerprint now; none in single-user mode)."""
        entries = shadow_entries(users) if self.config["server"]["multi_user"] else {}
        dead = {u for u in users if not self.usable(u, entries)}
        return dead, shadow_fingerprints(users, entries=entries)

    def check_vouched(self, user):
        """The user the site's proxy signed in (App.proxy_user), if the
        account may log in now (usable: the same checks as a password's,
        PAM's account check, no lock); else Forbidden (403), logged. The
        proxy has checked who the person is; this checks the account."""
        valid = 0 < len(user) <= 256 and "\0" not in user and "," not in user and user == user.strip()
        pw = self.usable(user) if valid else None
        self.metrics.login("failure" if pw is None else "success")  # a vouched sign-in is a login too
        if not valid:
            raise SignInRefused("The site's sign-in named no valid user.")
        if pw is None:
            log.warning("the proxy signed in %r, whose account may not log in here", user)
            raise SignInRefused("The site's sign-in vouched for %s, but that account may not use Flight Job "
                                "here (unknown, locked, expired or not in an allowed group): ask the site's "
                                "administrators." % user)
        return pw.pw_name

    def check_basic(self, header, addr):
        """The user of an HTTP Basic header: checked as a login, then
        remembered auth.basic_cache seconds by a keyed hash of the name and
        password (never the password itself), unless recheck ends it first."""
        try:
            user, _, password = base64.b64decode(header.split(" ", 1)[1]).decode("utf-8").partition(":")
        except (ValueError, IndexError, UnicodeError):
            raise Unauthorized("Malformed Basic authorization header.")
        key = hashlib.sha256(self.secret + json.dumps([user, password]).encode()).hexdigest()
        hit = self.basic.get(key)
        if hit and hit[1] > time.time():
            return hit[0]
        name = self.check_password(user, password, addr)
        if self.config["auth"]["basic_cache"]:
            entry = (name, time.time() + self.config["auth"]["basic_cache"], self._shadow(name))
            with self.lock:
                self.basic[key] = entry
        return name

    def create(self, user):
        """A new session, written to the store (503 when it cannot be); past
        SESSIONS_PER_USER of that user's here, their oldest end (a client
        that keeps no cookie, through the site's proxy, would make one a
        request)."""
        session = Session(user, self._shadow(user))
        try:
            self.store.write(session)
        except OSError as e:
            log.error("cannot write the session store %s: %s", self.store.dir, e)
            raise Unavailable("Could not record your session; the site's administrators have been told.")
        with self.lock:
            self.sessions[session.id] = session
            theirs = sorted((s for s in self.sessions.values() if s.user == user), key=lambda s: s.created)
        for old in theirs[:-SESSIONS_PER_USER]:
            self.end(old.id)
        return session

    def _touch_every(self):
        """How often a session's last use is written: at most every minute,
        and often enough for short idle limits."""
        return min(60.0, self.config["auth"]["session_idle"] / 4.0)

    def _over(self, created, seen, now, grace=0.0):
        return (now - seen > self.config["auth"]["session_idle"] + grace
                or now - created > self.config["auth"]["session_max"])

    def get(self, sid):
        """The live session for a cookie value, or None: unknown, ended (here
        or by another process sharing the store), idle for session_idle or
        older than session_max. A session new to this process (after a
        restart, or made on another login node) is first checked as recheck
        would check it."""
        if not isinstance(sid, str) or not sid or len(sid) > 128:
            return None
        used = self.store.last_used(sid)
        with self.lock:
            if used is None:
                self.sessions.pop(sid, None)
                return None
            session = self.sessions.get(sid)
        if session is None:
            session = self.store.read(sid)
            if session is None:
                return None
            dead, shadow = self._accounts([session.user])
            if dead or _changed(session.shadow, shadow.get(session.user)):
                self.end(sid)
                return None
            with self.lock:
                session = self.sessions.setdefault(sid, session)
        now = time.time()
        session.seen = max(session.seen, used)
        if self._over(session.created, session.seen, now):
            self.end(sid)
            return None
        if now - used >= self._touch_every() and not self.store.touch(sid, now):
            self.end(sid)
            return None
        session.seen = now
        return session

    def end(self, sid):
        if not isinstance(sid, str) or not sid or len(sid) > 128:
            return
        with self.lock:
            self.sessions.pop(sid, None)
        self.store.remove(sid)

    def end_user(self, users, shadow=None):
        """End the sessions and forget the Basic checks of users, or only
        those made when the user's shadow fingerprint differed from shadow's."""
        def stale(user, then):
            return user in users and (shadow is None or _changed(then, shadow.get(user)))
        with self.lock:
            ended = [s.id for s in self.sessions.values() if stale(s.user, s.shadow)]
            self.basic = {k: v for k, v in self.basic.items() if not stale(v[0], v[2])}
        for sid in ended:
            self.end(sid)
        return len(ended)

    def watch(self, stop):
        """Until stop is set, every second: recheck, expire. Its own thread,
        started by App.background, so that a slow job refresh there never
        delays the re-check of accounts."""
        while not stop.wait(1):
            try:
                self.recheck()
                self.expire()
            except Exception:
                log.exception("session upkeep failed")

    def recheck(self):
        """Every auth.recheck_interval seconds, in multi-user mode: end the
        sessions and cached Basic checks of users who may no longer log in
        (allowed, PAM's account check: expired, or refused by the site's
        stack) or whose shadow entry changed since (a new password, usermod
        -L). So such a change ends them within recheck_interval + 1 s (31 s
        by default)."""
        now = time.time()
        if not self.config["server"]["multi_user"] or now - self.rechecked < self.config["auth"]["recheck_interval"]:
            return
        self.rechecked = now
        with self.lock:
            users = {s.user for s in self.sessions.values()} | {v[0] for v in self.basic.values()}
        dead, shadow = self._accounts(users)
        ended = self.end_user(dead) + self.end_user(users - dead, shadow)
        if ended:
            log.info("ended %d sessions of changed or refused accounts", ended)

    def use_login_token(self, token):
        """The single-user one-time login URL: valid once."""
        with self.lock:
            if self.login_token and isinstance(token, str) and hmac.compare_digest(token, self.login_token):
                self.login_token = None
                return True
        return False

    def expire(self):
        """Forget expired sessions, Basic checks and failed-login records;
        once a minute also sweep the store: files of sessions over on every
        process (idle, with the touch interval as grace), and temporary files
        a crash left."""
        now = time.time()
        with self.lock:
            for sid in [s.id for s in self.sessions.values() if self._over(s.created, s.seen, now)]:
                del self.sessions[sid]  # its file goes at the sweep, unless another node still uses it
            self.basic = {k: v for k, v in self.basic.items() if v[1] > now}
        self.failures.expire()
        if now - self.swept >= min(60, self.config["auth"]["recheck_interval"]):
            self.swept = now
            grace = self._touch_every()
            self.store.sweep(lambda created, seen: self._over(created, seen, now, grace),
                             self._stale if self.config["server"]["multi_user"] else None)
            with self.lock:
                cached = list(self.sessions)
            for sid in cached:
                if self.store.last_used(sid) is None:
                    with self.lock:
                        self.sessions.pop(sid, None)

    def _stale(self, users):
        """For the store's sweep: whether a stored session of one of users
        belongs to an account that may no longer log in or whose shadow entry
        changed since, so sessions no process has in memory (made before a
        restart, on another node) end too, and a lock lifted again later
        cannot bring them back. Those users' sessions in memory and Basic
        checks end first, as recheck would end them, so no request finds the
        one gone and the other still passing."""
        dead, shadow = self._accounts(users)
        self.end_user(dead)
        self.end_user(set(users) - dead, shadow)
        return lambda user, then: user in dead or _changed(then, shadow.get(user))


# Waitress internals #########################################################
# The one place that reaches past waitress's public adjustments (each use is
# checked by test_login_security.py::test_the_waitress_internals_used_are_there).


def waitress_channel(environ):
    """The waitress connection serving this request (None under another server)."""
    return getattr(environ.get("waitress.client_disconnected"), "__self__", None)


def socket_owner(sock):
    """The uid owning the other end of the accepted TCP socket sock, on this machine (a loopback client: an SSH
    tunnel's is its user's sshd), asked of the kernel (sock_diag); None if it cannot say (a closed client's)."""
    try:
        peer, local = sock.getpeername(), sock.getsockname()
        addrs = [_ip(peer[0]), _ip(local[0])]
        request = (struct.pack("=BBBxI", socket.AF_INET6 if addrs[0].version == 6 else socket.AF_INET,
                               socket.IPPROTO_TCP, 0, 0xffffffff) + struct.pack("!HH", peer[1], local[1])
                   + b"".join(a.packed.ljust(16, b"\0") for a in addrs) + struct.pack("=III", 0, 0xffffffff, 0xffffffff))
        with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, 4) as diag:  # NETLINK_SOCK_DIAG
            diag.settimeout(1)  # SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST; the answer's uid after its header and id
            diag.sendto(struct.pack("=IHHII", 16 + len(request), 20, 1, 0, 0) + request, (0, 0))
            answer = diag.recv(8192)
        uid, inode = struct.unpack_from("=II", answer, 80)  # no inode: closed already, in TIME_WAIT (uid 0: not root's)
        return uid if struct.unpack_from("=H", answer, 4)[0] == 20 and inode else None
    except (OSError, AttributeError, struct.error):  # AttributeError: no address (None)
        return None


def close_connection_later(environ, seconds, why):
    """Close this request's connection `seconds` from now, whatever its thread is doing then (waiting
    for a client that does not read: waitress waits without a bound once 16 MiB are buffered): the
    socket shut down, waitress's loop wakes the thread. Returns cancel(); elsewhere closes nothing."""
    channel = waitress_channel(environ)
    sock = getattr(channel, "socket", None)
    if sock is None:
        return lambda: None
    lock, done = threading.Lock(), []

    def close():
        with lock:
            if done:
                return
            done.append(True)
        log.warning("%s: closed after %d seconds", why, seconds)
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(Exception):
            channel.server.pull_trigger()  # the loop looks at the connection now

    def cancel():
        with lock:
            done.append(True)
        timer.cancel()
    timer = threading.Timer(seconds, close)
    timer.daemon = True
    timer.start()
    return cancel


def bound_clients(server, limits, proxies, proxy_uids=()):
    """Two bounds waitress lacks: a request arrives whole within server.request_read_timeout of its first
    byte (a trickle never idles), and one client (its address_key, trusted proxies excepted; on loopback,
    with server.loopback_users, "loopback uid N", the owner of its socket: the channel's key, which the
    login throttle counts too) holds at most server.connections_per_address connections. With
    auth.proxy_users, a connection from a trusted address on this machine is the proxy's only when its
    socket is one of theirs; any other is "ADDRESS uid N", counted as that user's, its X-Forwarded-For
    never read (App.client_addr)."""
    from waitress.channel import HTTPChannel

    class Channel(HTTPChannel):
        began = None  # when the first byte of the request now arriving came

        def received(self, data):
            if data and self.request is None:
                self.began = time.time()
            return HTTPChannel.received(self, data)

    accept, maintenance = server.handle_accept, server.maintenance

    def handle_accept():
        before = set(server.active_channels)
        accept()
        for fd in set(server.active_channels) - before:
            channel = server.active_channels[fd]
            peer = channel.addr[0] if isinstance(channel.addr, tuple) else ""
            trusted = _trusted(peer, proxies)
            if trusted and not (proxy_uids and is_local_address(peer)):
                continue
            channel.key = address_key(peer)
            uid = socket_owner(channel.socket) if trusted or channel.key == "loopback" and limits["loopback_users"] \
                else None
            if trusted and uid in proxy_uids:
                continue
            channel.key += " uid %s" % uid if trusted or uid is not None else ""
            if sum(1 for c in list(server.active_channels.values())
                   if getattr(c, "key", None) == channel.key) > limits["connections_per_address"]:
                channel.will_close = True  # closed by the loop, before a byte of it is read

    def bounded_maintenance(now):
        maintenance(now)
        cutoff = now - limits["request_read_timeout"]
        for channel in list(server.active_channels.values()):
            if channel.request is not None and (getattr(channel, "began", None) or now) < cutoff:
                channel.will_close = True

    server.channel_class = Channel
    server.handle_accept, server.maintenance = handle_accept, bounded_maintenance


# Web application ############################################################


# A path on this site, with its query: printable URL characters only (no
# tab, newline or backslash, which browsers and urljoin drop or turn into
# "/"), and not "//", which would name another host.
LOCAL_PATH_RE = re.compile(r"^/(?![/\\])[A-Za-z0-9._~!$&'()*+,;=:@/%-]*(?:\?[A-Za-z0-9._~!$&'()*+,;=:@/?%-]*)?$")


def safe_next(url):
    """Where to go after logging in: a path on this site, rebuilt by us with
    every other character percent-encoded (a tab, a backslash, a quote),
    else /."""
    try:
        url = urllib.parse.quote(url, safe="/?=&;:@!$'()*+,~%-._")
    except (TypeError, UnicodeError):
        return "/"
    return url if len(url) < 4096 and LOCAL_PATH_RE.match(url) else "/"


def see_other(path, url=None):
    """A 303 to a path on this site that we built: relative, or under
    server.base_url when set; never a host taken from the request. url:
    instead, a whole URL from the config (auth.proxy_logout_url)."""
    assert url or LOCAL_PATH_RE.match(path), path
    response = bottle.response.copy(cls=bottle.HTTPResponse)  # with the cookies set so far
    response.status, response.body = 303, ""
    response.set_header("Location", url or bottle.request.app.config["flightjob.base"] + path)
    raise response


COOKIE = "flightjob_session"
PRE_COOKIE = "flightjob_login"
LOGIN_FIELDS = ("login_csrf", "next", "username", "password")  # the login form's own
CSP = "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'"
SECURITY_HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY",
                    "Referrer-Policy": "same-origin"}
SURROGATE_RE = re.compile(r"[\ud800-\udfff]")  # what no UTF-8 page can say (render)


def ago(iso, now=None):
    """'3 minutes ago' / 'in 5 minutes' for an ISO time; '' for none."""
    ts = parse_iso(iso) if iso else None
    if ts is None:
        return ""
    delta = (now or time.time()) - ts
    future, delta = delta < 0, abs(delta)
    for size, unit in ((86400, "day"), (3600, "hour"), (60, "minute"), (1, "second")):
        if delta >= size or size == 1:
            n = int(delta // size)
            words = "%d %s%s" % (n, unit, "" if n == 1 else "s")
            return ("in " + words) if future else (words + " ago")


def duration(seconds):
    """'1 h 5 min' for a number of seconds; '' for none (or, in a record
    edited by hand, what is not a number)."""
    try:
        seconds = int(seconds)
    except (TypeError, ValueError, OverflowError):
        return ""
    parts = [(seconds // 86400, "d"), (seconds % 86400 // 3600, "h"),
             (seconds % 3600 // 60, "min"), (seconds % 60, "s")]
    shown = [("%d %s" % (n, u)) for n, u in parts if n][:2]
    return " ".join(shown) or "0 s"


def visible_questions(questions, answers):
    """Ids of the questions asked, given raw answers (None: the defaults),
    so pages without JavaScript show exactly the questions that apply."""
    values, shown = {}, set()
    for q in questions:
        raw = q["default"] if answers is None else answers.get(q["id"], q["default"])
        if question_applies(q, values):
            shown.add(q["id"])
        else:
            raw = q["default"]
        try:
            # pattern=None: a template's pattern is user code that may never end; never in root
            values[q["id"]] = convert_answer(dict(q, required=False, options_from=None, pattern=None), raw, "/")
        except ValueError:
            values[q["id"]] = raw
    return shown


def state_label(job):
    """'Running', 'Running · suspended' or 'Failed · timeout' where the
    scheduler's own state says more (SHOWN_RAW_STATES), 'Ending' while it
    ends the job (ENDING); the same words as app.js's stateLabel."""
    raw = job.get("raw_state")
    label = "Ending" if raw in ENDING else STATE_LABELS.get(job["state"], job["state"].capitalize())
    return label + (" · " + raw.replace("_", " ").lower() if raw in SHOWN_RAW_STATES else "")


def state_text(job):
    """'Failed — ran out of time': the label and why, for a job's page; the
    same words as app.js's stateText."""
    reason = job.get("reason_text") if job["state"] != "COMPLETED" else None
    return (("Ending" if job.get("raw_state") in ENDING else STATE_LABELS.get(job["state"], job["state"].capitalize()))
            + (" — " + reason if reason else "") + (" (its final figures are still coming)" if job.get("detail_pending")
                                                     else ""))


def confirm_question(action, name):
    return CONFIRM[action][2] % name


def seconds_between(start, end):
    """Seconds from one ISO time to another; None if either is missing."""
    try:
        return parse_iso(end) - parse_iso(start)
    except (TypeError, ValueError):
        return None


def time_tag(iso):
    """A <time> saying 'N minutes ago' (app.js keeps it ticking); '' for none."""
    if not iso:
        return ""
    return '<time datetime="%s" title="%s" data-ago>%s</time>' % (html.escape(iso), html.escape(iso),
                                                                   html.escape(ago(iso)))


def numbered_lines(text):
    """A script as HTML lines that style.css numbers, escaped."""
    return "".join('<span class="line">%s\n</span>' % line for line in html.escape(text).split("\n"))


VIEW_HELPERS = {"time_tag": time_tag, "duration": duration, "human_size": human_size, "mem_words": mem_words,
                "quote": urllib.parse.quote, "shell_words": lambda words: " ".join(map(shlex.quote, words)),
                "visible": visible_questions, "question_steps": question_steps, "state_label": state_label,
                "state_text": state_text,
                "confirm_question": confirm_question, "seconds_between": seconds_between, "now_iso": now_iso,
                "numbered_lines": numbered_lines, "STATE_LABELS": STATE_LABELS, "UNFINISHED": UNFINISHED, "job_label": job_label,
                "DEPENDENCY_TYPES": DEPENDENCY_TYPES, "EXTRA_ALLOWED": sorted(EXTRA_ALLOWED)}
VOCABULARY = json.dumps({"labels": STATE_LABELS, "shown_raw": SHOWN_RAW_STATES, "finished": FINISHED, "ending": ENDING})


def security_headers():
    """Set the headers every response carries, error pages and static files
    included: the Content-Security-Policy (no inline script or style, no
    framing, forms post only here), no MIME sniffing, no framing, no
    Referer to other sites. An after_request hook, and called again by the
    error handlers: Bottle answers an exception that escapes a route with a
    fresh HTTPError whose headers replace those the hook set."""
    for name, value in SECURITY_HEADERS.items():
        bottle.response.set_header(name, value)


PLAIN_ERRORS = {404: ("not_found", "There is no such page."),
                405: ("method_not_allowed", "That method is not allowed here."),
                500: ("internal", "Something went wrong on the server; it has been logged.")}


def form_limit(config):
    """The largest page form accepted, in bytes: percent-encoding takes at
    most three bytes for each byte of the JSON that the API takes in
    server.max_body (a newline: %0D%0A for a browser, \\n in JSON), so every
    text the API accepts fits, with 4 KiB for the form's other fields.
    Waitress refuses larger bodies before they are read."""
    return 3 * config["server"]["max_body"] + 4096


def plain_error(status):
    """The domain error for a status of PLAIN_ERRORS, which no handler chose."""
    code, message = PLAIN_ERRORS[status]
    err = FlightJobError(message)
    err.status, err.code = status, code
    return err


class App:
    """The HTTP side: settings, logins and sessions, request parsing,
    rendering; every user action goes to the user's worker. make_app(config)
    builds one with its routes bound; handlers reach it as `app`."""

    def __init__(self, config, pool=None, daemon_user=None):
        self.config = config
        self.daemon_user = daemon_user or pwd.getpwuid(os.getuid()).pw_name
        switch = config["server"]["multi_user"] and os.getuid() == 0
        self.pool = pool or WorkerPool(config, switch)
        self.metrics = self.pool.metrics
        if config["server"]["multi_user"] and self.pool.poll is None:
            self.pool.poll = StatusPoll(config, self.pool)
        self.auth = Auth(config, self.daemon_user, self.metrics)
        self.started = time.time()
        self.health = (0.0, None)  # (when, the last scheduler check) for probe
        self.probing = threading.Lock()  # held by the one thread that checks
        self.traceback_quota = Quota(TRACEBACKS_PER_MINUTE)
        self.bottle = bottle.Bottle()
        self.bottle.add_hook("after_request", security_headers)
        self.views = [os.path.join(HERE, "templates")]
        self.secure = (config["auth"]["secure_cookies"] == "always" or (
            config["auth"]["secure_cookies"] == "auto"
            and config["server"]["base_url"].startswith("https://")))

    # requests

    def client_addr(self):
        """client_address, or for a tunnelled user the channel's key ("loopback uid N": bound_clients)."""
        key = getattr(waitress_channel(bottle.request.environ), "key", None) or ""
        return key if " uid " in key else client_address(bottle.request.environ, self.auth.proxies)

    def from_proxy(self):
        """Whether this request came from the site's proxy: its peer is in
        server.trusted_proxies and, when that peer is on this machine
        (loopback, or one of its own addresses, from which every local user
        can connect), the kernel says its socket is of an account in
        auth.proxy_users (socket_owner: a user's own connection, an SSH
        tunnel's, one closed before we look, are not)."""
        environ = bottle.request.environ
        peer = environ.get("REMOTE_ADDR") or ""
        if not _trusted(peer, self.auth.proxies):
            return False
        if not is_local_address(peer):
            return True
        sock = getattr(waitress_channel(environ), "socket", None)
        return sock is not None and socket_owner(sock) in self.auth.proxy_uids

    def proxy_user(self):
        """The user named in auth.proxy_header, None when the request has
        none, or an empty one (a proxy's way of saying nobody signed in
        there), or the mode is off. Only the site's proxy may send it
        (from_proxy): from anyone else the request is refused outright (403,
        logged with the peer), never served as if the header were not there,
        so a forged header is seen for what it is and no cookie or password
        sent beside it counts either."""
        name = self.config["auth"]["proxy_header"]
        value = bottle.request.headers.get(name) if name else None
        if not value or not value.strip():
            return None
        if not self.from_proxy():
            environ = bottle.request.environ
            sock = getattr(waitress_channel(environ), "socket", None)
            log.warning("refused a request carrying %s from %s (socket of uid %s): not the site's proxy", name,
                        environ.get("REMOTE_ADDR"), socket_owner(sock) if sock is not None else None)
            raise SignInRefused("%s is accepted only from the site's sign-in proxy." % name)
        return value

    def user_for(self, api):
        """(user, session) for this request. The user the site's proxy
        names (proxy_user) has a session of their own: this one if it is
        theirs, else a new one (cookie set), once check_vouched passes.
        Otherwise pages take the session cookie, only from the proxy while
        auth.password_login is false (a session a password made before, a
        cookie carried off to the daemon directly, go no further); the API
        also takes HTTP Basic (then session is None). None when not logged in."""
        vouched = self.proxy_user()
        session = self.auth.get(bottle.request.get_cookie(COOKIE))
        if vouched is not None:
            if session and session.user == vouched:
                return vouched, session
            if session:  # the proxy now names another: this browser's session is over, whether they may or not
                self.auth.end(session.id)
                bottle.response.delete_cookie(COOKIE, path="/")
            name = self.auth.check_vouched(vouched)
            return name, self.login(name)
        if session and (self.config["auth"]["password_login"] or self.from_proxy()):
            return session.user, session
        header = bottle.request.headers.get("Authorization", "")
        if api and header.lower().startswith("basic "):
            return self.auth.check_basic(header, self.client_addr()), None
        return None, None

    def check_csrf(self, session, api):
        """Refuse a state-changing request (403) whose CSRF token is missing or
        wrong. API calls authenticated by HTTP Basic carry no cookie and
        need none."""
        if session is None:
            return
        given = (bottle.request.headers.get("X-CSRF-Token") if api
                 else self.form().get("csrf")) or ""
        if not hmac.compare_digest(given.encode("utf-8", "replace"), session.csrf.encode()):
            raise Forbidden("The request's CSRF token is missing or wrong: reload the page and try again.")

    def body_json(self):
        """The request's JSON object: 413 when too large, 400 when it is not
        UTF-8 JSON, 415-style 400 when not sent as JSON."""
        limit = self.config["server"]["max_body"]
        raw = bottle.request.body.read(limit + 1) if bottle.request.content_length <= limit else None  # said larger
        if raw is None or len(raw) > limit:
            raise TooLarge("The request body is larger than %d bytes." % limit)
        if not raw:
            return {}
        # application/json exactly, charset at most: never a type that merely
        # contains the word (text/plain;a=json is sent cross-site unasked)
        media, _, params = (bottle.request.content_type or "").partition(";")
        params = params.strip().lower().replace(" ", "")
        if media.strip().lower() != "application/json" or params not in ("", "charset=utf-8"):
            raise BadRequest("Send the body as JSON (Content-Type: application/json).")
        try:
            data = json.loads(raw.decode("utf-8"))
            json.dumps(data, ensure_ascii=False).encode("utf-8")  # "\ud800" parses, but is no text
        except (ValueError, UnicodeError, RecursionError) as e:
            raise BadRequest("The body is not valid JSON text: %s" % str(e)[:200])
        if not isinstance(data, dict):
            raise BadRequest("The body must be a JSON object.")
        return data

    def form(self, limit=None):
        """The page form posted with this request, parsed once (the CSRF
        check and the route share it), its values UTF-8 text with the
        browser's CRLF newlines made LF. A logged-in user's form may be as
        large as form_limit says, so a page accepts every text the API
        accepts (anyone's, the login form: server.max_body); beyond, 413
        with a clear page (never Bottle's bare one: its own parser stops
        at 100 KB). 400 when it is not UTF-8, is multipart or has more
        than 10,000 fields."""
        environ = bottle.request.environ
        if "flightjob.form" not in environ:
            limit = limit or (form_limit(self.config) if self.who()[0] else self.config["server"]["max_body"])
            if (bottle.request.content_type or "").lower().startswith("multipart/"):
                raise BadRequest("Send the form url-encoded (application/x-www-form-urlencoded).")
            request = type("FormRequest", (bottle.BaseRequest,), {"MEMFILE_MAX": limit})(environ)  # this form's limit
            try:
                form = request.forms.decode()  # each value the UTF-8 text its bytes are
            except bottle.HTTPError:  # its 413: over the limit (Bottle reads no more than that)
                raise TooLarge("The form is larger than %d bytes." % limit)
            except UnicodeError:
                raise BadRequest("The form is not valid UTF-8.")
            if sum(map(len, form.dict.values())) > 10000:
                raise BadRequest("The form has more than 10,000 fields.")
            for values in form.dict.values():  # the browser's CRLF newlines
                values[:] = [value.replace("\r\n", "\n") for value in values]
            environ["flightjob.form"] = form
        return environ["flightjob.form"]

    def call(self, user, op, **args):
        return self.pool.call(user, op, args)

    def login(self, user):
        """A fresh session (never one the client chose), cookie set, and
        this request's from now on (a page rendered after shows it)."""
        old = bottle.request.get_cookie(COOKIE)
        if old:
            self.auth.end(old)
        session = self.auth.create(user)
        bottle.response.set_cookie(COOKIE, session.id, path="/", httponly=True, samesite="lax", secure=self.secure,
                                   max_age=self.config["auth"]["session_max"])
        bottle.request.environ["flightjob.who"] = (user, session)
        return session

    def logout(self):
        """End this request's session, if any, and forget its cookie. Where
        to go next: through the site's proxy (from_proxy, with proxy_header
        set) its auth.proxy_logout_url, from the config, so the proxy ends
        its own sign-in too (else it would sign the user in again at once);
        None otherwise."""
        session = self.who()[1]
        if session:
            self.auth.end(session.id)
        bottle.response.delete_cookie(COOKIE, path="/")
        if self.config["auth"]["proxy_header"] and self.from_proxy():
            return self.config["auth"]["proxy_logout_url"]
        return None

    def request_target(self):
        """This request's path and query, as sent (for safe_next to rebuild)."""
        query = bottle.request.query_string
        return bottle.request.fullpath + ("?" + query if query else "")

    def identify(self, api):
        """(user, session) of this request, as user_for finds them,
        remembered for render and the error pages."""
        bottle.request.environ["flightjob.who"] = who = self.user_for(api)
        return who

    def who(self):
        """(user, session) found for this request; (None, None) before."""
        return bottle.request.environ.get("flightjob.who", (None, None))

    # rendering

    def render(self, view, status=200, **values):
        """An HTML page: the view with values, the helpers every view may
        call, and `page` (title, crumbs, and this request's user and CSRF
        token, for the frame in base.tpl)."""
        user, session = self.who()
        values["crumbs"] = crumbs = list(values.get("crumbs", ()))
        if crumbs:  # the last is this page: not a link
            crumbs[-1] = (crumbs[-1][0], None)
        values.update(VIEW_HELPERS)
        values["page"] = {"title": values.get("title", "Flight Job"), "user": user,
                          "csrf": session.csrf if session else "", "crumbs": crumbs,
                          "version": __version__, "vocabulary": VOCABULARY}
        bottle.response.status = status
        bottle.response.set_header("Content-Type", "text/html; charset=utf-8")
        # text read from a user's files may carry lone surrogates (a hand-edited
        # meta.json's "\ud800"): no UTF-8 says them, so U+FFFD says there was one
        try:
            return SURROGATE_RE.sub("\ufffd", bottle.template(view, template_lookup=self.views, **values))
        except (KeyError, TypeError, AttributeError, IndexError, ValueError):  # ANSWERS checks what pages use most
            log.exception("page %s not made from the worker's answers for %s", view, user)
            raise Unavailable("This page could not be made from what your worker answered; try again.")

    def login_page(self, error=None, status=200, next_url="/", kept=()):
        """The login form, with its own CSRF token in a cookie only /login
        gets. kept: the fields of a form whose session had ended, carried
        through the login to next_url (see keep_form)."""
        token = secrets.token_urlsafe(16)
        bottle.response.set_cookie(PRE_COOKIE, token, path="/login", httponly=True,
                                   samesite="strict", secure=self.secure)
        return self.render("login", status=status, error=error, login_csrf=token, next_url=next_url,
                           kept=kept, title="Log in", multi_user=self.config["server"]["multi_user"],
                           proxy=bool(self.config["auth"]["proxy_header"]), base_url=self.config["server"]["base_url"],
                           passwords=self.config["auth"]["password_login"])

    def resume_page(self, kept, action, why, status=200):
        """The page that asks to send again a form that could not be done
        (see keep_form): its fields, shown and in hidden inputs, with this
        session's CSRF token, posting to action, a path on this site."""
        return self.render("resume", status=status, kept=kept, action=safe_next(action), why=why,
                           title="Send what you typed?")

    def keep_form(self, session_ended):
        """The answer to a page's form post that cannot be done now, so
        that nothing typed into it is lost; None when it holds nothing but
        its CSRF token (a logout, a delete) or cannot be read (too large,
        not UTF-8), to be answered as before.

        session_ended (no valid session: a restart without the session
        store, an expiry, a logout in another tab): the login page (401)
        carrying the fields (escaped, at most server.max_body, as the form
        was) and the form's own path; logging in then shows resume_page.
        Otherwise (a session, but the token of an earlier one: logged out
        and in again elsewhere): resume_page at once (403: nothing done).
        Either way nothing is done until the user presses Send on our page
        with the token of the session now: a login CSRF cannot become a
        write, and a forged form is shown before anything happens."""
        try:
            kept = kept_fields(self.form())
        except FlightJobError:
            return None
        if not kept:
            return None
        target = self.request_target()
        if session_ended:
            return self.login_page(None, 401, safe_next(target), kept)
        return self.resume_page(kept, target, "This form came from a page of an earlier session (its CSRF "
                                "token is no longer valid), so what you sent was not saved or done.", 403)

    def json(self, data, status=200):
        bottle.response.status = status
        bottle.response.set_header("Content-Type", "application/json")
        bottle.response.set_header("Cache-Control", "no-store")
        if hasattr(data, "read"):  # a spooled answer (spooled_answer), sent on from its file
            bottle.response.set_header("Content-Length", str(os.fstat(data.fileno()).st_size - data.tell()))
            return data
        return data if isinstance(data, RawJSON) else json.dumps(data)

    def no_content(self):
        bottle.response.status = 204
        return ""

    def error_json(self, err):
        body = {"error": err.as_dict()}
        if isinstance(err, Unauthorized):
            # Not "Basic": a browser would prompt and then replay cached Basic
            # credentials on cross-site requests, which carry no CSRF token.
            # curl -u sends Basic without being asked.
            bottle.response.set_header("WWW-Authenticate", 'Session realm="flight-job"')
        return self.json(body, err.status)

    def error_response(self, err, api):
        bottle.request.environ["flightjob.error"] = err.code  # what a 5xx was, for /metrics
        return self.error_json(err) if api else self.render("error", status=err.status, error=err, title="Error")

    def served(self):
        """The WSGI application that serves: the Bottle one, each request
        counted for /metrics when it is on (its route's pattern, status,
        time to answer and, for a 5xx, what it was)."""
        if self.metrics.registry is None:
            return self.bottle

        def counted(environ, start_response):
            began, status = time.monotonic(), []

            def start(line, headers, exc_info=None):
                status[:] = [line]
                return start_response(line, headers, exc_info)
            try:
                return self.bottle(environ, start)
            finally:
                route = environ.get("bottle.route")
                self.metrics.request(environ.get("REQUEST_METHOD"), route.rule if route else None,
                                     int(status[0][:3]) if status else 500, time.monotonic() - began,
                                     environ.get("flightjob.error"))
        return counted

    def bottle_error(self, error):
        """The answer to an error Bottle meets itself: no route (404), a
        wrong method (405), an exception outside RoutePlugin (500)."""
        security_headers()
        api = bottle.request.path.startswith("/api/")
        if not api:
            with contextlib.suppress(Exception):  # the page frame shows who is logged in
                self.identify(False)
        return self.error_response(plain_error(error.status_code), api)

    def background(self, stop):
        """Reap idle workers, expire sessions, refresh users with unfinished
        jobs; until stop is set."""
        last_refresh = time.time()
        every = self.config["scheduler"]["background_refresh"]
        threading.Thread(target=self.auth.watch, args=(stop,), daemon=True).start()
        while not stop.wait(min(5, self.config["worker"]["idle_timeout"])):
            self.pool.reap()
            if every and time.time() - last_refresh >= every:
                last_refresh = time.time()
                self.pool.refresh_active()

    def scheduler_health(self):
        """The scheduler check for /api/health, run in a worker (root never
        runs a scheduler command), cached 30 s. When it is due, one thread
        checks while the others answer at once with the last result. A
        check that could not be made because the worker was busy (503 busy)
        says so and is not cached: the next request checks again."""
        at, result = self.health
        if result is not None and time.time() - at <= 30:
            return result
        unknown = {"type": self.config["scheduler"]["type"], "answers": False}
        if not self.probing.acquire(blocking=False):  # another thread is checking
            return result or dict(unknown, message="The scheduler is being checked; ask again in a moment.")
        try:
            user = self.daemon_user if not self.config["server"]["multi_user"] \
                else self.config["scheduler"]["probe_user"]
            try:
                result = self.pool.call(user, "probe", {}, timeout=self.config["scheduler"]["timeout"] + 5)
            except Busy as e:
                return result or dict(unknown, message=e.message)
            except FlightJobError as e:
                result = dict(unknown, message=e.message)
            self.health = (time.time(), result)
            return result
        finally:
            self.probing.release()


class Quota:
    """At most `limit` events a key in each minute: allow(key) says whether
    this one may happen (a bounded table, oldest keys forgotten)."""

    def __init__(self, limit, keys=10000):
        self.limit, self.keys, self.counts, self.lock = limit, keys, {}, threading.Lock()

    def allow(self, key):
        minute = int(time.time() // 60)
        with self.lock:
            if len(self.counts) >= self.keys:
                self.counts = {k: v for k, v in self.counts.items() if v[0] == minute}
            at, n = self.counts.get(key, (minute, 0))
            n = n + 1 if at == minute else 1
            self.counts[key] = (minute, n)
        if n == self.limit + 1:
            log.warning("more failures for %s this minute: their tracebacks are not logged", key)
        return n <= self.limit


TRACEBACKS_PER_MINUTE = 10


class RoutePlugin:
    """Logins, CSRF and errors for every route, as the route's own config
    asks (bottle.py's JSONPlugin reads route.config the same way):

    - login (default True): without a session a page redirects to
      /login?next=..., an API call is 401; False: open to anyone.
    - api (default False): errors are JSON, HTTP Basic is accepted, and a
      state-changing call made with a session cookie carries its CSRF token
      in the X-CSRF-Token header (pages: the form field `csrf`); 403 when
      it is missing or wrong. Basic-auth calls need none.
    - A page's form post without a session, or with the token of an
      earlier one, is not done, but what was typed into it is kept: see
      App.keep_form.

    The handler is called as handler(app, user, **url_args). Domain errors
    become JSON or an error page with their status; anything unexpected is
    logged with its traceback and answered with a plain 500."""

    name = "flightjob"
    api = 2

    def __init__(self, app):
        self.app = app

    def apply(self, callback, route):
        app = self.app
        api, login = route.config.get("api", False), route.config.get("login", True)

        def wrapper(**url_args):
            bottle.request.environ["flightjob.who"] = (None, None)
            try:
                user = None
                if login:
                    user, session = app.identify(api)
                    if user is None:
                        if api:
                            raise Unauthorized("Log in first (session cookie or HTTP Basic).")
                        kept = app.keep_form(True) if route.method != "GET" else None
                        if kept is not None:
                            return kept
                        return see_other("/login?next=" + urllib.parse.quote(app.request_target()))
                    if route.method != "GET":
                        try:
                            app.check_csrf(session, api)
                        except Forbidden:
                            kept = None if api else app.keep_form(False)
                            if kept is None:
                                raise
                            return kept
                return callback(app, user, **url_args)
            except bottle.HTTPResponse:
                raise
            except FlightJobError as e:
                return app.error_response(e, api)
            except Exception:
                # a user's worker may answer anything: its tracebacks are
                # logged at most TRACEBACKS_PER_MINUTE a user, so no one floods the log
                who = user or app.client_addr()
                if app.traceback_quota.allow(who):
                    log.exception("request %s %s of %s failed", route.method, bottle.request.path, who)
                return app.error_response(plain_error(500), api)
        return wrapper


ROUTES = []  # (path, method, config, handler), in the order declared below


def api_call(method, path, op, body=(), status=200, query=dict):
    """Declare an API route that is one worker operation: its arguments the
    URL's, the JSON body's fields named in body and what query() makes of
    the query string; its answer the operation's JSON with status (204: none)."""
    def handler(app, user, **args):
        data = app.body_json() if body else {}
        answer = app.pool.call(user, op, dict(args, **query(), **{key: data.get(key) for key in body}), raw=True)
        return app.no_content() if status == 204 else app.json(answer, status)
    handler.__name__ = "api_" + op.replace(".", "_")
    route(path, method, api=True)(handler)


def page_call(path, op, then):
    """Declare a page's POST route that is one worker operation, with the
    URL's arguments, then a 303 to then % those arguments."""
    def handler(app, user, **args):
        app.call(user, op, **args)
        return see_other(then % args)
    handler.__name__ = "page_" + op.replace(".", "_")
    route(path, "POST")(handler)


def route(path, method="GET", **config):
    """Declare a handler, handler(app, user, **url_args), for make_app to
    bind to each new App; config (api, login) is read by RoutePlugin."""
    def declare(handler):
        ROUTES.append((path, method, config, handler))
        return handler
    return declare


def _int_query(name, default):
    value = bottle.request.query.get(name)
    if value in (None, ""):
        return default
    if not re.match(r"^\d{1,9}$", value):
        raise BadRequest("%s must be a whole number." % name, {name: "must be a whole number"})
    return int(value)


def _query_texts(name, strict=True):
    """Every value of a query parameter, as the UTF-8 text it is (Bottle
    gives each URL-decoded byte as a character): 400 naming it when one is
    not UTF-8 (strict), else with U+FFFD for what is not (to show it)."""
    values = bottle.request.query.getall(name)
    try:
        return [value.encode("latin-1").decode("utf-8") for value in values]
    except UnicodeError:
        if strict:
            raise BadRequest("%s is not valid UTF-8." % name, {name: "not valid UTF-8"})
        return [value.encode("latin-1").decode("utf-8", "replace") for value in values]


def _text_query(name, strict=True):
    """A query parameter as text (its last value, as bottle.request.query.get
    gives it), None when absent; not UTF-8: see _query_texts."""
    values = _query_texts(name, strict)
    return values[-1] if values else None


# A list's query parameters -> the worker's argument (see jobs.list, scripts.list)
JOBS_QUERY = {"q": "q", "state": "state", "from": "since", "to": "until", "sort": "sort", "order": "order"}
SCRIPTS_QUERY = {"q": "q", "sort": "sort", "order": "order"}
PER_PAGE = (25, 50, 100, 200, 500)  # what the jobs page offers


def list_args(names, paged=False):
    """The worker's arguments for a list from the request's query
    parameters (names: JOBS_QUERY or SCRIPTS_QUERY); 400 naming a bad one."""
    args = {arg: _text_query(name) or None for name, arg in names.items()}
    if paged:
        args.update(page=_int_query("page", 1), per_page=_int_query("per_page", 50))
    return args


def list_page(app, user, op, names, path, paged=False):
    """What the list page at path renders: the list, the parameters as
    typed, the error, and link(**changes) to the page with the parameters
    typed changed by changes (a value None leaves it out). With a bad
    parameter: the list as it is by default, what was typed kept for the
    form, the error naming the parameter, status 400 and links from the
    default list."""
    typed = {name: _text_query(name, strict=False) or "" for name in list(names) + ["page", "per_page"]}
    try:
        listing, error = app.call(user, op, **list_args(names, paged)), None
    except BadRequest as e:
        listing, error = app.call(user, op), e

    def link(**changes):
        values = dict({} if error else typed, **changes)
        query = urllib.parse.urlencode([(k, v) for k, v in values.items() if v not in (None, "")])
        return path + ("?" + query if query else "")
    return dict(listing, status=400 if error else 200, typed=typed, error=error, link=link)


def kept_fields(form):
    """The fields of a form post worth keeping when it cannot be done now
    (App.keep_form): every one, in order, but the CSRF token and the login
    form's own."""
    return [(k, v) for k, v in form.allitems() if k != "csrf" and k not in LOGIN_FIELDS]


def known_fields(data, fields, hint):
    """A JSON body whose fields are all of fields; else 400 naming the first other, with hint."""
    extra = sorted(set(data) - set(fields))
    if extra:
        raise BadRequest("Unknown field %r: %s." % (extra[0], hint))
    return data


def form_errors(e):
    """An Invalid's messages by field, for a form shown again ('': the form's)."""
    return e.fields or {"": e.message}


def _answers_from_form(form, questions):
    """Answers as typed in a page's form: checkboxes send 'false' then
    'true' when ticked, so the last value wins; multiselects send a list."""
    answers = {}
    for q in questions:
        values = form.getall("q_" + q["id"])
        if q["type"] == "multiselect":
            answers[q["id"]] = [v for v in values if v]
        elif values:
            answers[q["id"]] = values[-1]
    return answers


def make_app(config, pool=None, daemon_user=None):
    """A fresh App, its Bottle application (app.bottle, the WSGI app) with
    RoutePlugin installed, every route of the "Routes" banners bound and
    the error pages Bottle sends itself: a test builds one each."""
    app = App(config, pool, daemon_user)
    app.bottle.config["flightjob.base"] = urllib.parse.urlsplit(config["server"]["base_url"])._replace(
        path="", query="", fragment="").geturl()  # "" (relative Locations) or "https://host[:port]"
    app.bottle.install(RoutePlugin(app))
    for path, method, route_config, handler in ROUTES:
        app.bottle.route(path, method, handler, **route_config)
    for status in PLAIN_ERRORS:
        app.bottle.error_handler[status] = app.bottle_error
    return app


# Routes: static and health ##################################################


@route("/static/<path:path>", login=False)
def page_static(app, user, path):
    return bottle.static_file(check_relpath(path), root=os.path.join(HERE, "share", "static"))


@route("/api/health", api=True, login=False)
def api_health(app, user):
    probe = app.scheduler_health()
    return app.json({"status": "ok", "version": __version__, "scheduler": probe["type"],
                     "scheduler_answers": probe["answers"], "scheduler_message": probe.get("message"),
                     "multi_user": app.config["server"]["multi_user"],
                     "uptime_s": int(time.time() - app.started)})


@route("/metrics", login=False)
def page_metrics(app, user):
    """Prometheus's scrape, in its text format: no login (Prometheus has no
    session), a GET that changes nothing, only for clients in metrics.allow
    (their address: X-Forwarded-For only from the site's proxy, from_proxy,
    whose request naming no client is refused; a local user's own socket is
    its own address); to everyone else, and to all while metrics are off,
    the same 404 as a page that does not exist, so it tells nothing."""
    environ = bottle.request.environ
    peer, told = environ.get("REMOTE_ADDR") or "", client_address(environ, app.auth.proxies)
    if app.from_proxy():  # the client it names; none (or the proxy itself) is no one allowed
        addr = _ip(told) if told != peer else None
    elif app.auth.proxy_uids and is_local_address(peer):  # a local user's own socket: its X-Forwarded-For unread
        addr = _ip(peer)
    else:
        addr = _ip(told)
    if not app.metrics.allowed(addr):
        raise bottle.HTTPError(404)
    body, kind = app.metrics.text()
    bottle.response.set_header("Content-Type", kind)
    bottle.response.set_header("Cache-Control", "no-store")
    return body


# Routes: login ##############################################################


@route("/login", login=False)
def page_login(app, user):
    if app.config["auth"]["proxy_header"] and app.identify(False)[0]:  # the site's proxy signed them in
        return see_other(safe_next(bottle.request.query.get("next")))
    token = bottle.request.query.get("token")
    if token is not None:
        if not app.config["server"]["multi_user"] and app.config["auth"]["password_login"] \
                and app.auth.use_login_token(token):
            app.login(app.daemon_user)
            return see_other("/")
        return app.login_page("That login link has already been used or is not valid; "
                              "log in with your password.", 401)
    return app.login_page(next_url=safe_next(bottle.request.query.get("next")))


@route("/login", "POST", login=False)
def page_login_post(app, user):
    """Log in. A form kept through the login (App.keep_form) is shown to
    be sent again (resume_page), never sent from here; it stays in the
    login page while the login fails."""
    form = app.form(form_limit(app.config))  # it may carry a kept page form (App.keep_form)
    next_url = safe_next(form.get("next"))
    kept = kept_fields(form)
    pre = bottle.request.get_cookie(PRE_COOKIE) or ""
    try:
        app.auth.refuse_passwords()  # while off, that is the answer, whatever else the form holds
        if not pre or not hmac.compare_digest(pre.encode(), (form.get("login_csrf") or "").encode()):
            return app.login_page("Your login form had expired; please try again.", 403, next_url, kept)
        name = app.auth.check_password(form.get("username", "").strip(), form.get("password", ""),
                                       app.client_addr())
    except (Unauthorized, Throttled, Unavailable, PasswordsOff) as e:  # Unavailable: all login slots busy
        return app.login_page(e.message, e.status, next_url, kept)
    app.login(name)
    if kept:
        return app.resume_page(kept, next_url, "You are logged in again. What you sent before was not "
                               "saved or done, because your session had ended.")
    return see_other(next_url)


@route("/logout", "POST")
def page_logout(app, user):
    return see_other("/login", app.logout())


@route("/api/login", "POST", api=True, login=False)
def api_login(app, user):
    data = app.body_json()
    name = app.auth.check_password(data.get("username"), data.get("password"), app.client_addr())
    session = app.login(name)
    return app.json({"user": name, "csrf_token": session.csrf})


@route("/api/logout", "POST", api=True)
def api_logout(app, user):
    then = app.logout()
    return app.json(dict({"logged_out": True}, **({"logout_url": then} if then else {})))


@route("/api/session", api=True)
def api_session(app, user):
    session = app.who()[1]
    return app.json({"user": user, "csrf_token": session.csrf if session else None})


@route("/")
def page_home(app, user):
    return app.render("home", title="Job manager", **app.call(user, "jobs.overview"))


# Routes: templates and scripts ##############################################


api_call("GET", "/api/templates", "templates.list")
api_call("GET", "/api/templates/<id>", "templates.get")
api_call("POST", "/api/templates/<id>/check", "templates.check", body=("answers",))


@route("/templates")
def page_templates(app, user):
    return app.render("templates", title="Script templates", crumbs=[("Templates", None)],
                      **app.call(user, "templates.list"))


def create_form(app, template, answers=None, name="", notes=None, errors=None, status=200, auto=None):
    """The create page; auto: the job name it shows as made from the name
    (not the user's), or None."""
    return app.render("create", status=status, template=template, answers=answers, name=name, auto=auto,
                      notes=notes, errors=errors or {}, title="Create script: " + template["name"],
                      crumbs=[("Templates", "/templates"), (template["name"], None)])


@route("/templates/<id>/create")
def page_create(app, user, id):
    t = app.call(user, "templates.get", id=id)
    answers = {q["id"]: job_name_of(t["name"]) or q["default"] for q in t["questions"] if q["id"] == JOB_NAME_QUESTION}
    return create_form(app, t, answers, name=t["name"], notes=t["notes"], auto=answers.get(JOB_NAME_QUESTION))


@route("/templates/<id>/create", "POST")
def page_create_post(app, user, id):
    form = app.form()
    t = app.call(user, "templates.get", id=id)
    answers = _answers_from_form(form, t["questions"])
    name, notes, auto = form.get("name", ""), form.get("notes"), form.get("job_name_auto")
    sent = dict(answers)
    if JOB_NAME_QUESTION in answers and answers[JOB_NAME_QUESTION] == auto:  # as the page made it from the name
        del sent[JOB_NAME_QUESTION]  # made again from the name sent
        answers[JOB_NAME_QUESTION] = auto = job_name_of(name) or auto
    else:
        auto = None  # the user's own: kept
    if form.get("action") == "update":  # no-JavaScript: re-show with ask_when applied
        return create_form(app, t, answers, name, notes, auto=auto)
    try:
        script = app.call(user, "scripts.create", template=id, name=name, answers=sent, notes=notes)
    except Invalid as e:
        return create_form(app, t, answers, name, notes, form_errors(e), 422, auto)
    return see_other("/scripts/%s" % script["id"])


SCRIPT_FIELDS = ("content", "notes", "name")  # what a user may edit in a script


def script_json(app, script, status=200):
    """A script as JSON, its ETag (for If-Match) in the header too."""
    bottle.response.set_header("ETag", script["etag"])
    return app.json(script, status)


api_call("GET", "/api/scripts", "scripts.list", query=lambda: list_args(SCRIPTS_QUERY))


@route("/api/scripts", "POST", api=True)
def api_script_create(app, user):
    data = app.body_json()
    script = app.call(user, "scripts.create", template=data.get("template"), name=data.get("name"),
                      answers=data.get("answers"), notes=data.get("notes"))
    return script_json(app, script, 201)


@route("/api/scripts/<id>", api=True)
def api_script(app, user, id):
    return script_json(app, app.call(user, "scripts.get", id=id))


@route("/api/scripts/<id>", "PATCH", api=True)
def api_script_update(app, user, id):
    data = known_fields(app.body_json(), SCRIPT_FIELDS, "give content, notes or name")
    script = app.call(user, "scripts.update", id=id, content=data.get("content"), notes=data.get("notes"),
                      name=data.get("name"), if_match=bottle.request.headers.get("If-Match"))
    return script_json(app, script)


api_call("DELETE", "/api/scripts/<id>", "scripts.delete", status=204)


api_call("GET", "/api/scripts/<id>/submission", "scripts.submission",
         query=lambda: {"from_job": bottle.request.query.get("from_job") or None})


@route("/api/scripts/<id>/copy", "POST", api=True)
def api_script_copy(app, user, id):
    return script_json(app, app.call(user, "scripts.copy", id=id, name=app.body_json().get("name")), 201)


@route("/api/scripts/<id>/save-as-template", "POST", api=True)
def api_save_as_template(app, user, id):
    data = known_fields(app.body_json(), ("name", "id"), "give name and, if you like, id")
    return app.json(app.call(user, "scripts.save_template", id=id, name=data.get("name"),
                             template_id=data.get("id")), 201)


@route("/api/scripts/<id>/preview", "POST", api=True)
def api_preview(app, user, id):
    data = app.body_json()
    return app.json(app.call(user, "jobs.preview", script=id, answers=data.get("answers"), after=data.get("after"),
                             extra_options=data.get("extra_options")))


@route("/scripts")
def page_scripts(app, user):
    return app.render("scripts", title="Scripts", crumbs=[("Scripts", None)],
                      **list_page(app, user, "scripts.list", SCRIPTS_QUERY, "/scripts"))


SCRIPT_FORMS = SCRIPT_FIELDS + ("copy", "template")  # ?edit=: a field, or the copy / save-as-template form


def script_page(app, user, id, edit=None, draft=None, conflict=None, status=200, error=None, fields=None):
    """A script's page; edit: the form of SCRIPT_FORMS shown, draft what
    was typed into it; fields: the copy / save-as-template form's values
    and errors (errors: field -> message)."""
    script = app.call(user, "scripts.get", id=id)
    return app.render("script", status=status, script=script, edit=edit, draft=draft, conflict=conflict,
                      error=error, fields=fields or {}, title=script["name"],
                      crumbs=[("Scripts", "/scripts"), (script["name"], None)])


@route("/scripts/<id>")
def page_script(app, user, id):
    edit = bottle.request.query.get("edit")
    return script_page(app, user, id, edit if edit in SCRIPT_FORMS else None)


@route("/scripts/<id>/edit", "POST")
def page_script_edit(app, user, id):
    form = app.form()
    field = form.get("field")
    if field not in SCRIPT_FIELDS:
        raise BadRequest("Unknown field to edit.")
    text = form.get("text", "")
    try:
        app.call(user, "scripts.update", id=id, if_match=form.get("etag"), **{field: text})
    except PreconditionFailed as e:
        return script_page(app, user, id, field, text, e.message, 409)
    except (Invalid, TooLarge) as e:
        return script_page(app, user, id, field, text, None, e.status, e.message)
    return see_other("/scripts/%s" % id)


def _script_form(app, user, id, edit, op, args):
    """Do a copy (edit "copy") or save-as-template ("template") form of the
    script page, args(form values) giving the operation's: on to what it
    made, or the page again with what was typed and the errors beside it."""
    form = app.form()
    values = {key: form.get(key, "") for key in ("name", "id")}
    try:
        made = app.call(user, op, id=id, **args(values))
    except (Invalid, Conflict) as e:
        return script_page(app, user, id, edit, status=e.status, fields=dict(values, errors=form_errors(e)))
    return see_other("/scripts/%s" % made["id"] if edit == "copy" else "/templates")


@route("/scripts/<id>/copy", "POST")
def page_script_copy(app, user, id):
    return _script_form(app, user, id, "copy", "scripts.copy", lambda v: {"name": v["name"]})


@route("/scripts/<id>/save-as-template", "POST")
def page_script_save_as_template(app, user, id):
    return _script_form(app, user, id, "template", "scripts.save_template",
                        lambda v: {"name": v["name"], "template_id": v["id"]})


def answers_page(app, user, id, answers=None, errors=None, status=200, message=None, diverged=None):
    """A script's "Edit answers" page: its template's questions with answers
    (None: the script's own); message: why the form is back (stale);
    diverged: the Diverged to choose from (both texts, and the answers
    sent, kept in the form)."""
    script = app.call(user, "scripts.get", id=id)
    if script.get("origin"):
        raise Conflict("This script was imported, not made from a template: it has no answers to change.")
    try:
        t = app.call(user, "templates.get", id=script["template_id"])
    except NotFound:
        raise Conflict("The template this script was made from (%s) is gone, so its questions cannot be asked "
                       "again. Edit the script's text instead." % script["template_id"])
    diff = None
    if diverged is not None:
        if not (_SCRIPT(diverged.current) and isinstance(diverged.current.get("content"), str)
                and isinstance(diverged.rendered, str)):
            raise Unavailable(NOT_ITS_ANSWER % "scripts.answers")
        script = diverged.current
        mine, new = script["content"].split("\n"), diverged.rendered.split("\n")
        if len(mine) + len(new) <= 4000:  # difflib's time grows faster than the text: beyond, both texts only
            diff = list(difflib.unified_diff(mine, new, "your text", "from the new answers", lineterm=""))[2:]
    return app.render("answers", status=status, script=script, template=t,
                      answers=script["answers"] if answers is None else answers, errors=errors or {},
                      message=message, diverged=diverged, diff=diff, title="Edit answers: " + script["name"],
                      crumbs=[("Scripts", "/scripts"), (script["name"], "/scripts/%s" % id), ("Edit answers", None)])


@route("/scripts/<id>/answers")
def page_answers(app, user, id):
    return answers_page(app, user, id)


@route("/scripts/<id>/answers", "POST")
def page_answers_post(app, user, id):
    form = app.form()
    script = app.call(user, "scripts.get", id=id)
    t = app.call(user, "templates.get", id=script["template_id"]) if not script.get("origin") else {"questions": []}
    answers = _answers_from_form(form, t["questions"])
    if form.get("action") == "update":  # no-JavaScript: re-show with ask_when applied
        return answers_page(app, user, id, answers)
    try:
        app.call(user, "scripts.answers", id=id, answers=answers, if_match=form.get("etag"),
                 text=form.get("text") or None)
    except Diverged as e:
        return answers_page(app, user, id, answers, status=409, diverged=e)
    except PreconditionFailed as e:
        return answers_page(app, user, id, answers, status=409, message=e.message + (
            " Your answers are below: save them again to apply them to the version saved now."))
    except Invalid as e:
        return answers_page(app, user, id, answers, form_errors(e), 422)
    return see_other("/scripts/%s" % id)


@route("/api/scripts/<id>/answers", "PUT", api=True)
def api_script_answers(app, user, id):
    data = known_fields(app.body_json(), ("answers", "text"), "give answers and, after a 409, text")
    script = app.call(user, "scripts.answers", id=id, answers=data.get("answers"), text=data.get("text"),
                      if_match=bottle.request.headers.get("If-Match"))
    return script_json(app, script)


def confirm_page(app, action, name, url, crumbs):
    """The page that asks before url acts (CONFIRM[action]), for browsers
    without JavaScript (app.js asks the same in a dialog); "Keep it" goes
    back to the last of crumbs."""
    title, button, question = CONFIRM[action]
    return app.render("confirm", title=title, question=question % name, button=button, action=url,
                      back=crumbs[-1][1], crumbs=crumbs + [(button, None)])


@route("/scripts/<id>/delete")
def page_script_delete_confirm(app, user, id):
    script = app.call(user, "scripts.get", id=id)
    return confirm_page(app, "delete", script["name"], "/scripts/%s/delete" % id,
                        [("Scripts", "/scripts"), (script["name"], "/scripts/%s" % id)])


page_call("/scripts/<id>/delete", "scripts.delete", "/scripts")


# Routes: import #############################################################


api_call("GET", "/api/import/files", "home.list", query=lambda: {"path": _text_query("path") or ""})


IMPORT_FIELDS = ("path", "content", "name", "in_place")


@route("/api/import", "POST", api=True)
def api_import(app, user):
    data = known_fields(app.body_json(), IMPORT_FIELDS, "give path or content, and if you like name and in_place")
    script = app.call(user, "scripts.import", path=data.get("path"), content=data.get("content"),
                      name=data.get("name"), in_place=data.get("in_place", False))
    return script_json(app, script, 201)


def import_page(app, user, path="", chosen=None, values=None, errors=None, status=200):
    """The import page: a directory of the home (path) as links, the form
    for the file chosen (its path in the home) and the form for pasted
    text; values and errors: what was typed into a form sent back, and
    the messages beside its fields."""
    listing = app.call(user, "home.list", path=path)
    entry = next((e for e in listing["entries"] if e["path"] == chosen), None) if chosen else None
    return app.render("import", status=status, listing=listing, chosen=chosen, entry=entry,
                      values=values or {}, errors=errors or {}, title="Import a script",
                      crumbs=[("Scripts", "/scripts"), ("Import", None)])


@route("/import")
def page_import(app, user):
    chosen = _text_query("file") or None  # a name of any UTF-8 text (e.g. café/run.sh), as the page links it
    path = _text_query("path") or (chosen.rpartition("/")[0] if chosen else "")
    return import_page(app, user, path, chosen)


@route("/import", "POST")
def page_import_post(app, user):
    """Import the file chosen (source=file) or the text pasted
    (source=paste): on to the new script, or the page again with what was
    typed and the errors beside the fields."""
    form = app.form()
    values = {key: form.get(key, "") for key in ("source", "path", "content", "name")}
    values["in_place"] = form.get("in_place") in ("on", "true", "yes", "1")
    pasted = values["source"] == "paste"
    try:
        script = app.call(user, "scripts.import", path=None if pasted else values["path"],
                          content=values["content"] if pasted else None, name=values["name"],
                          in_place=False if pasted else values["in_place"])
    except (Invalid, TooLarge, Forbidden, Conflict) as e:
        chosen = None if pasted else values["path"] or None
        where = chosen.rpartition("/")[0] if chosen else ""
        try:
            return import_page(app, user, where, chosen, values, form_errors(e), e.status)
        except (NotFound, Forbidden):  # the file's directory cannot be listed: the home then
            return import_page(app, user, "", chosen, values, form_errors(e), e.status)
    return see_other("/scripts/%s" % script["id"])


# Routes: submit #############################################################


def submit_page(app, user, id, answers=None, errors=None, status=200, from_job=None, after=None, extra=None):
    """The submission questions; from_job (a job of this script): its
    answers (and extra options) are the values, and the page says so, with
    a way back to the defaults. after: the "start after" choice as typed;
    extra: the extra options as typed."""
    sub = app.call(user, "scripts.submission", id=id, from_job=from_job or None)
    source = sub.get("from_job") or {}
    name, refused = sub["script"]["name"], source.get("refused")
    if refused and errors is None:  # the way back from a refusal: its words beside the question they are about
        about = {o for words, o in REFUSAL_OPTIONS if words in refused.lower()}
        errors = {q["id"]: refused for q in sub["questions"] if q.get("option") in about}
        own = source.get("extra_options") if isinstance(source.get("extra_options"), str) else ""
        if own and (not errors or any("--" + n in refused for n in re.findall(r"--([a-z-]+)", own))):
            errors = {"extra_options": refused}  # the user's own options', else the form's
        errors = errors or {"": refused}
    return app.render("submit", status=status, sub=sub, answers=answers, errors=errors or {},
                      after=after or {"job": "", "type": "afterok"},
                      extra=extra if extra is not None else source.get("extra_options") if isinstance(
                          source.get("extra_options"), str) else "",
                      title="Submit " + name,
                      crumbs=[("Scripts", "/scripts"), (name, "/scripts/%s" % id), ("Submit", None)])


@route("/scripts/<id>/submit")
def page_submit(app, user, id):
    return submit_page(app, user, id, from_job=bottle.request.query.get("from_job"))


@route("/scripts/<id>/submit", "POST")
def page_submit_post(app, user, id):
    """The questions (update: re-shown), then the summary, then submit."""
    form = app.form()
    sub = app.call(user, "scripts.submission", id=id)
    answers = _answers_from_form(form, sub["questions"])
    after = {"job": form.get("after_job") or "", "type": form.get("after_type") or "afterok"}  # "start after" as typed
    extra, action = form.get("extra_options") or "", form.get("action")
    if action == "update":
        return submit_page(app, user, id, answers, from_job=form.get("from_job"), after=after, extra=extra)
    problem = None
    try:
        if action == "submit":
            try:
                job = app.call(user, "jobs.submit", script=id, answers=answers, after=after, extra_options=extra,
                               make_folders=form.get("make_folders") == "yes")
                return see_other("/jobs/%s" % job["id"])
            except Invalid as e:  # it would fail at launch: the summary again, saying why
                if "make_folders" not in e.fields:
                    raise
                problem = e.message
        plan = app.call(user, "jobs.preview", script=id, answers=answers, after=after, extra_options=extra)
    except Invalid as e:
        return submit_page(app, user, id, answers, form_errors(e), 422, form.get("from_job"), after, extra)
    name = plan["script"]["name"]
    return app.render("summary", status=422 if problem else 200, plan=plan, problem=problem, raw_answers=answers,
                      after=after, extra=extra, title="Summary: " + name,
                      crumbs=[("Scripts", "/scripts"), (name, "/scripts/%s" % id),
                              ("Submit", "/scripts/%s/submit" % id), ("Summary", None)])


# Routes: jobs and files #####################################################


# The user's unfinished jobs in brief, and the state now of the jobs in
# ?watch=ID (repeatable): what a page's tab polls for its title, icon and
# notifications (share/static/app.js).
api_call("GET", "/api/activity", "jobs.activity", query=lambda: {"watch": _query_texts("watch")})


api_call("GET", "/api/jobs", "jobs.list", query=lambda: list_args(JOBS_QUERY, paged=True))


@route("/api/jobs/bulk", "POST", api=True)
def api_jobs_bulk(app, user):
    data = app.body_json()
    ids, action = data.get("ids"), data.get("action")
    bulk_ids(ids, action)  # bounded here too: no more than BULK_IDS reach the worker
    return app.json(app.call(user, "jobs.bulk", ids=ids, action=action))


api_call("POST", "/api/jobs/columns", "jobs.columns", ("columns",))
api_call("POST", "/api/jobs", "jobs.submit", ("script", "answers", "after", "make_folders", "extra_options"), 201)


api_call("GET", "/api/jobs/<id>", "jobs.get", query=lambda: {"script": bottle.request.query.get("script") == "1"})


api_call("DELETE", "/api/jobs/<id>", "jobs.delete", status=204)
api_call("POST", "/api/jobs/<id>/cancel", "jobs.cancel")
api_call("POST", "/api/jobs/<id>/hold", "jobs.hold")
api_call("POST", "/api/jobs/<id>/release", "jobs.release")
api_call("POST", "/api/jobs/<id>/time-limit", "jobs.time_limit", ("time_limit",))
api_call("POST", "/api/jobs/<id>/tasks/<task>/cancel", "jobs.cancel_task")
api_call("GET", "/api/jobs/<id>/files", "jobs.files")


def with_text(piece):
    """A piece of a file from the worker, with its bytes as text to show."""
    return dict(piece, text=base64.b64decode(piece["data"]).decode("utf-8", "replace"))


def start_download(app, user, op, args, what):
    """(held, call, its first piece, the deadline) of a download: held (one of the user's download slots, and
    the timer closing the connection, named `what` in the log, after server.download_timeout) and call."""
    held = contextlib.ExitStack()
    call = held.enter_context(app.pool.download(user))
    try:
        piece = call(op, args)
    except BaseException:
        held.close()
        raise
    seconds = app.config["server"]["download_timeout"]
    held.callback(close_connection_later(bottle.request.environ, seconds, what))
    return held, call, piece, time.monotonic() + seconds


def send_file(app, user, id, download, **where):
    """A job's file (where: path=, or which= stdout/stderr) as it is when
    asked (Content-Length: its size then), streamed from the worker in its
    1 MiB pieces, or with ?tail=N its last N bytes; as an attachment for
    download, else as UTF-8 text. A whole file is a download: it holds
    one of the user's download slots (WorkerPool.download; 503 busy beyond)
    and its thread for at most server.download_timeout seconds, then its
    connection is closed (the client sees fewer bytes than announced)."""
    if bottle.request.query.get("tail") is not None:
        piece = app.call(user, "jobs.file", id=id, tail=_int_query("tail", 0), **where)
        chunks = iter([base64.b64decode(piece["data"])])
    else:
        what = "download of %s's %s %s" % (user, id, name_text(where.get("path") or where.get("which")))  # no control chars logged
        held, call, piece, deadline = start_download(app, user, "jobs.file", dict(where, id=id, offset=0), what)
        chunks = streamed(held, call, piece, dict(where, id=id), deadline)
        bottle.response.set_header("Content-Length", str(piece["size"]))
    bottle.response.set_header("Content-Type", "application/octet-stream" if download
                               else "text/plain; charset=utf-8")
    bottle.response.set_header("X-File-Size", str(piece["size"]))
    if download:
        bottle.response.set_header("Content-Disposition", "attachment; filename*=UTF-8''%s"
                                   % urllib.parse.quote(piece["name"]))
    return chunks


def streamed(held, call, piece, args, deadline):
    """The pieces of a file from its first, asked of the worker one after
    another (call), up to the size the first gave or the deadline; held
    (the download's slot and timer) is released when it ends however it
    ends (its last piece, an error, the connection closed)."""
    with held:
        offset, size = 0, piece["size"]
        while piece["offset"] == offset:  # else the file shrank meanwhile: the client sees it cut short
            data = base64.b64decode(piece["data"])[:size - offset]
            yield data
            offset += len(data)
            if piece["eof"] or not data or offset >= size or time.monotonic() > deadline:
                return
            piece = call("jobs.file", dict(args, offset=offset, length=size - offset))


def send_archive(app, user, id, paths):
    """A .zip of a job's results (paths: chosen names relative to its
    results directory; none: all of it), written by the worker as the user
    (jobs.archive) and relayed a piece (at most 1 MiB) at a time, never held
    whole; its size is not known ahead, so no Content-Length. As a file
    download it holds one of the user's download slots and its thread for
    at most server.download_timeout seconds. Refused before a byte is sent:
    a chosen name the path gate refuses or that is not there (404), over
    storage.max_archive_bytes in all (413)."""
    held, call, piece, deadline = start_download(app, user, "jobs.archive", {"id": id, "paths": paths},
                                                 "archive of %s's %s" % (user, name_text(id)))
    if not _shape(name=str, files=int)(piece) or not _ARCHIVE_PIECE(piece):  # a first piece names the archive
        held.close()
        raise Unavailable(NOT_ITS_ANSWER % "jobs.archive")
    bottle.response.set_header("Content-Type", "application/zip")
    bottle.response.set_header("Content-Disposition", "attachment; filename*=UTF-8''%s"
                               % urllib.parse.quote(piece["name"]))
    bottle.response.set_header("X-Archive-Files", str(piece["files"]))
    return archive_pieces(held, call, piece, deadline)


def archive_pieces(held, call, piece, deadline):
    """The pieces of an archive from its first, asked of the worker one
    after another up to its last or the deadline; held (the download's slot
    and timer) released when it ends however it ends, and the worker told
    to drop an archive left unfinished (the connection closed)."""
    with held:
        try:
            while True:
                data = base64.b64decode(piece["data"])
                if data:  # an empty piece (a sparse stretch read) is no end: waitress would end on it
                    yield data
                if piece["eof"] or time.monotonic() > deadline:
                    return
                piece = call("jobs.archive", {"token": piece["token"]})
                if not _ARCHIVE_PIECE(piece):  # a hostile worker's own download ends there
                    log.warning("archive ended: its worker answered a piece with %.100r", piece)
                    return
        finally:
            if not piece.get("eof"):
                with contextlib.suppress(FlightJobError):
                    call("jobs.archive", {"token": piece["token"], "close": True})


@route("/api/jobs/<id>/archive", api=True)
def api_archive(app, user, id):
    return send_archive(app, user, id, _query_texts("path"))


@route("/api/jobs/<id>/archive", "POST", api=True)
def api_archive_chosen(app, user, id):
    return send_archive(app, user, id, app.body_json().get("paths"))


@route("/api/jobs/<id>/files/<path:path>", api=True)
def api_file(app, user, id, path):
    listing = bottle.request.query.get("list") == "1"
    if listing:
        return app.json(app.call(user, "jobs.files", id=id, path=path))
    return send_file(app, user, id, True, path=path)


@route("/api/jobs/<id>/output/<which:re:stdout|stderr>", api=True)
def api_output(app, user, id, which):
    return send_file(app, user, id, False, which=which)


@route("/jobs")
def page_jobs(app, user):
    values = list_page(app, user, "jobs.list", JOBS_QUERY, "/jobs", paged=True)
    return app.render("jobs", title="Jobs", states=STATES, crumbs=[("Jobs", None)], page_no=values["page"],
                      per_pages=PER_PAGE, sorts=JOB_SORTS, column_names=JOB_COLUMNS, **values)


@route("/jobs/columns", "POST")
def page_jobs_columns(app, user):
    """The jobs page's column choice (its form, ticked columns shown), kept;
    then the list again, with the search it was chosen on."""
    form = app.form()
    app.call(user, "jobs.columns", columns=form.getall("column"))
    query = urllib.parse.urlencode([(k, form.get(k)) for k in list(JOBS_QUERY) + ["page", "per_page"] if form.get(k)])
    return see_other("/jobs" + ("?" + query if query else ""))


def bulk_page(app, action, picks, results):
    """The bulk action's page: the jobs it will act on (results None) or acted on, and how each went."""
    return app.render("bulk", title=BULK_WORDS[action][0], action=action, words=BULK_WORDS[action], picks=picks,
                      results=results, crumbs=[("Jobs", "/jobs"), (BULK_WORDS[action][0], None)])


@route("/jobs/bulk")
def page_jobs_bulk_confirm(app, user):
    """The page that asks before a bulk action (the jobs page's selection,
    sent with GET so it works without JavaScript; all=1, the list's
    select-all, takes every job of the page, page_id): which of the jobs it
    will act on, and which it cannot, and why."""
    action = _text_query("action")
    ids = bulk_ids(_query_texts("page_id" if _text_query("all") == "1" else "id"), action)  # 400 before the worker
    return bulk_page(app, action, app.call(user, "jobs.pick", ids=ids, action=action), None)


@route("/jobs/bulk", "POST")
def page_jobs_bulk(app, user):
    form = app.form()
    action = form.get("action")
    done = app.call(user, "jobs.bulk", ids=bulk_ids(form.getall("id"), action), action=action)
    return bulk_page(app, action, done["jobs"], True)


def job_crumbs(job):
    return [("Jobs", "/jobs"), (job_label(job), "/jobs/%s" % job["id"])]


@route("/jobs/<id>")
def page_job(app, user, id, status=200, archive_error=None, chosen=(), problem=None, limit=None):
    """A job's page; after a refused archive (status, archive_error: the
    error) with the files that were chosen still ticked; problem: why
    another action just asked for was not done ({field or "": message}),
    limit: the time limit as typed, kept."""
    job = app.call(user, "jobs.get", id=id, script=True)
    files = None
    # a cancelled job has no results, unless it is an array some of whose tasks ran to their end
    job["no_results"] = job["state"] == "CANCELLED" and not any(
        t.get("state") in ("COMPLETED", "FAILED") for t in job.get("tasks") or [])
    if job.get("results_dir") and not job["no_results"]:
        with contextlib.suppress(FlightJobError):
            files = app.call(user, "jobs.files", id=id)
    outputs = {}  # stdout, and stderr if it is another file: its tail, None while unreadable
    for which in ("stdout", "stderr"):
        if job.get(which + "_path") and (which == "stdout" or job["stderr_path"] != job["stdout_path"]):
            outputs[which] = None
            with contextlib.suppress(FlightJobError):
                outputs[which] = with_text(app.call(user, "jobs.file", id=id, which=which, tail=16384))
    return app.render("job", status=status, job=job, files=files, outputs=outputs, archive_error=archive_error,
                      chosen=set(chosen), problem=problem or {}, limit=limit, done=bottle.request.query.get("done"),
                      title=job_label(job), crumbs=job_crumbs(job))


@route("/jobs/<id>/<action:re:cancel|remove>")
def page_job_confirm(app, user, id, action):
    job = app.call(user, "jobs.get", id=id)
    return confirm_page(app, action, job.get("scheduler_id") or id, "/jobs/%s/%s" % (id, action),
                        job_crumbs(job))


page_call("/jobs/<id>/cancel", "jobs.cancel", "/jobs/%(id)s")


@route("/jobs/<id>/<action:re:hold|release>", "POST")
def page_hold(app, user, id, action):
    try:
        app.call(user, "jobs." + action, id=id)
    except (Conflict, SchedulerRefused) as e:
        return page_job(app, user, id, e.status, problem={"": e.message})
    return see_other("/jobs/%s" % id)


@route("/jobs/<id>/time-limit", "POST")
def page_time_limit(app, user, id):
    typed = app.form().get("time_limit") or ""
    try:
        app.call(user, "jobs.time_limit", id=id, time_limit=typed)
    except (Invalid, Conflict, SchedulerRefused) as e:
        return page_job(app, user, id, e.status, problem=e.fields or {"time_limit": e.message}, limit=typed)
    return see_other("/jobs/%s?done=time_limit" % id)  # the page says it is done


@route("/jobs/<id>/tasks/<task>/cancel")
def page_task_confirm(app, user, id, task):
    job = app.call(user, "jobs.get", id=id)
    return confirm_page(app, "cancel_task", "%s_%s" % (job.get("scheduler_id"), check_id(task, "task")),
                        "/jobs/%s/tasks/%s/cancel" % (id, task), job_crumbs(job))


page_call("/jobs/<id>/tasks/<task>/cancel", "jobs.cancel_task", "/jobs/%(id)s")
page_call("/jobs/<id>/remove", "jobs.delete", "/jobs")


@route("/jobs/<id>/archive")
def page_archive(app, user, id):
    return send_archive(app, user, id, _query_texts("path"))


@route("/jobs/<id>/archive", "POST")
def page_archive_chosen(app, user, id):
    """The files ticked on the job's page as one .zip; none ticked, or a
    refusal (a name not there, over the size limit): the page again, saying
    why, with the same files ticked."""
    chosen = app.form().getall("path")
    try:
        if not chosen:
            raise Invalid("Choose at least one file to download.", {"path": "choose at least one file"})
        return send_archive(app, user, id, chosen)
    except (Invalid, NotFound, TooLarge) as e:
        return page_job(app, user, id, e.status, e.message, chosen)


@route("/jobs/<id>/files/<path:path>")
def page_file_view(app, user, id, path):
    job = app.call(user, "jobs.get", id=id)
    whole = bottle.request.query.get("all") == "1"
    try:
        listing = app.call(user, "jobs.files", id=id, path=path)
    except NotFound:
        listing = None
    piece = None
    if listing is None:
        piece = with_text(app.call(user, "jobs.file", id=id, path=path,
                                   **({"offset": 0} if whole else {"tail": 65536})))
    return app.render("file", job=job, path=path, listing=listing, piece=piece, title=path,
                      crumbs=job_crumbs(job) + [(path, None)])


@route("/jobs/<id>/download/<path:path>")
def page_download(app, user, id, path):
    return send_file(app, user, id, True, path=path)


# Main #######################################################################


def main(argv=None):
    parser = argparse.ArgumentParser(prog="flightjobd", description="A web job manager for HPC login nodes.")
    parser.add_argument("--config", help="TOML configuration file (default %s)" % DEFAULT_CONFIG)
    parser.add_argument("--check-config", action="store_true", help="validate the configuration and exit")
    parser.add_argument("--version", action="version", version="flightjobd " + __version__)
    parser.add_argument("--listen", metavar="HOST:PORT", help="address to serve on (server.listen)")
    parser.add_argument("--multi-user", action="store_true", help="serve every user of the machine (root only)")
    parser.add_argument("--scheduler", choices=("auto",) + tuple(SCHEDULERS), help="scheduler.type")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--fork-server", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--local-job", metavar="DIR", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s flightjobd[%(process)d] %(levelname)s %(message)s")
    give_back_memory()  # run as a script, this file is compiled at every start: its freed syntax tree (~8 MB)
    if args.worker:
        return worker_main()
    if args.fork_server:
        return fork_server_main()
    if args.local_job:
        return local_job_main(args.local_job)
    overrides = {"server": {}, "scheduler": {}}  # only what was given
    if args.listen:
        overrides["server"]["listen"] = args.listen
    if args.multi_user:
        overrides["server"]["multi_user"] = True
    if args.scheduler:
        overrides["scheduler"]["type"] = args.scheduler
    path = args.config or os.environ.get("FLIGHTJOB_CONFIG") or DEFAULT_CONFIG
    try:
        config = load_config(path, overrides, required=bool(args.config))
        check_bounds(config)
        if config["metrics"]["allow"]:
            prometheus_library()
    except ConfigError as e:
        print("flightjobd: %s" % e, file=sys.stderr)
        return 2
    if args.check_config:
        print("%s: configuration is valid" % (path if os.path.exists(path) else "defaults"))
        return 0
    if config["server"]["multi_user"] and os.getuid() != 0:
        print("flightjobd: multi-user mode needs root (it starts workers as each user)", file=sys.stderr)
        return 2
    if not config["server"]["multi_user"] and os.getuid() == 0:
        log.warning("single-user mode as root: only root may log in; use --multi-user to serve users")
    return serve(config)


def check_bounds(config):
    """The bounds that involve two keys (ConfigError naming them): a
    reserve of threads below the threads, room in a worker's answer for
    the largest script and notes."""
    server, worker = config["server"], config["worker"]
    if server["reserved_threads"] >= server["threads"]:
        raise ConfigError("server.reserved_threads (%d) must be less than server.threads (%d)"
                          % (server["reserved_threads"], server["threads"]))
    check_proxy_sign_in(config)
    least = 6 * config["storage"]["max_script_bytes"] + (1 << 20)
    if worker["max_message"] < least:
        raise ConfigError("worker.max_message (%d) must be at least 6 x storage.max_script_bytes + 1 MiB "
                          "(%d): a script and its notes, escaped as JSON" % (worker["max_message"], least))


def check_proxy_sign_in(config):
    """With auth.proxy_header set: a proxy to trust it from
    (server.trusted_proxies), a logout URL to hand over to, every account of
    auth.proxy_users known, and, when a trusted network includes loopback,
    at least one of them (else the header would be refused from there).
    auth.password_login = false: the proxy sign-in, and server.base_url
    for the login page to send users to."""
    auth, proxies = config["auth"], config["server"]["trusted_proxies"]
    for name in auth["proxy_users"]:
        try:
            pwd.getpwnam(name)
        except KeyError:
            raise ConfigError("auth.proxy_users: no such account: %r" % name)
    if not auth["password_login"] and not (auth["proxy_header"] and config["server"]["base_url"]):
        raise ConfigError("auth.password_login = false needs %s" % (
            "server.base_url: the login page sends users there, to the proxy" if auth["proxy_header"] else
            "auth.proxy_header: with no password and no proxy sign-in nobody could log in"))
    if not auth["proxy_header"]:
        return
    loopback = [ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")]
    if not proxies:
        raise ConfigError("auth.proxy_header needs server.trusted_proxies: the proxy's addresses")
    if not auth["proxy_logout_url"]:
        raise ConfigError("auth.proxy_header needs auth.proxy_logout_url: logging out must end the "
                          "proxy's sign-in too, or the proxy signs the user in again at once")
    if not auth["proxy_users"] and any(ipaddress.ip_network(p, strict=False).version == net.version and
                                       ipaddress.ip_network(p, strict=False).overlaps(net)
                                       for p in proxies for net in loopback):
        raise ConfigError("server.trusted_proxies includes loopback, where every local user can connect: "
                          "auth.proxy_header there needs auth.proxy_users, the proxy's account")


def raise_file_limit(wanted):
    """Let this process open `wanted` descriptors (client connections, three
    pipes a worker) as far as the hard limit allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if target < wanted:
        log.warning("the file descriptor limit (%d) is below server.connection_limit plus room for "
                    "workers (%d): raise LimitNOFILE", hard, wanted)


def serve(config):
    from waitress import create_server
    with contextlib.suppress(Exception):  # glibc's M_MMAP_THRESHOLD fixed, not raised by each free: large
        __import__("ctypes").CDLL(None).mallopt(-3, 256 << 10)  # buffers (downloads) unmapped, not kept by arenas
    raise_file_limit(config["server"]["connection_limit"] + 4096)
    if config["server"]["multi_user"] and not config["auth"]["proxy_users"] and any(
            ipaddress.ip_network(p, strict=False).overlaps(ipaddress.ip_network("127.0.0.0/8"))
            for p in config["server"]["trusted_proxies"] if ":" not in p):
        log.warning("server.trusted_proxies includes a loopback address: every local user can reach "
                    "the daemon there and name any client address in X-Forwarded-For, past the login "
                    "throttle. Set auth.proxy_users to the proxy's account, listen on an address only the "
                    "proxy reaches, or trust the proxy's own.")
    a = make_app(config)
    probe = a.scheduler_health()
    config["scheduler"]["type"] = probe["type"]  # 'auto' resolved once, by a worker
    log.info("scheduler: %s (%s)", probe["type"], "answers" if probe["answers"] else
             "does not answer: %s" % probe.get("message"))
    host, _, port = config["server"]["listen"].rpartition(":")
    limits = config["server"]
    # a slow or idle client costs a connection, never a thread: waitress reads
    # requests whole before a thread sees them; poll(), not select(), so
    # descriptors past 1024 work
    server = create_server(forwarded_for_only(a.served()), host=host.strip("[]"), port=int(port), ident="flightjobd",
                           clear_untrusted_proxy_headers=False, asyncore_use_poll=True,
                           max_request_body_size=form_limit(config), max_request_header_size=limits["max_header_bytes"],
                           **{key: limits[key] for key in ("threads", "connection_limit", "channel_timeout",
                                                           "cleanup_interval", "backlog")})  # waitress's own names
    bound_clients(server, limits, a.auth.proxies, a.auth.proxy_uids)
    stop = threading.Event()
    threading.Thread(target=a.background, args=(stop,), daemon=True).start()

    def shutdown(signum, frame):
        stop.set()
        server.close()
        raise SystemExit(0)
    signal.signal(signal.SIGTERM, shutdown)
    base = config["server"]["base_url"].rstrip("/") or "http://%s:%s" % (host, server.effective_port)
    log.info("serving on %s:%s (%s mode)", host, server.effective_port,
             "multi-user" if config["server"]["multi_user"] else "single-user")
    if not config["server"]["multi_user"] and config["auth"]["password_login"]:
        print("flightjobd: log in as %s at %s/login?token=%s" % (a.daemon_user, base, a.auth.login_token),
              flush=True)
    else:  # a line on stdout in both modes, for whoever waits for the start
        print("flightjobd: serving at %s (%s mode)" % (base, "multi-user" if config["server"]["multi_user"]
                                                       else "single-user, passwords off"), flush=True)
    try:
        server.run()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        stop.set()
        a.pool.stop_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())

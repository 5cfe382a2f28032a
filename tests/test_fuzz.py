"""Property-based fuzz of every route (Hypothesis): random and hostile path
parameters, query strings, headers, JSON and form bodies. Whatever comes in,
the answer is never a 500 (or any 5xx), never carries a traceback, an API
error is always the documented JSON shape, and nothing is written outside
the user's state directory (and the job's own results directory)."""
import io
import json
import os
import re
import secrets
import shutil
import sys
import urllib.parse

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import flightjobd
from support import client_of, config_in

ROUTES = [(r.method, r.rule) for r in flightjobd.make_app(flightjobd.Config(
    {"scheduler": {"type": "local"}})).bottle.routes]

HOSTILE = ["..", "../..", "../../etc/passwd", "%2e%2e", "%2e%2e%2fetc", ".", "/", "//", "\\..\\",
           "a/../../b", "\x00", "a\x00b", "%00", "\r\nX-Injected: 1", "\u202e\u0000", "😀" * 40,
           "A" * 5000, "-1", "0", "99999999999999999999999", "1e400", "NaN", "null", "true", "[]", "{}",
           "<script>alert(1)</script>", '"><img src=x onerror=alert(1)>', "$(id)", "`id`", "${IFS}",
           "~root", "/etc/shadow", "/root/.bashrc", ".new-x", ".gone-x", ".lock", "meta.json",
           "serial", "con", "\ud800", "\udcff", "é", "ﬁ", "\u0130", " ", "\t", "a b", "%", "%%",
           "%ff%fe", "?x=1", "#frag", ";", "'", '"', "{{7*7}}", "% import os", "\\x00"]
# bait paths: a file with this token in its name anywhere it is looked for (World.outside) is an escape
TOKEN = "fjfuzz%s" % secrets.token_hex(4)
HOSTILE += ["/tmp/" + TOKEN, "/dev/shm/" + TOKEN, "/var/tmp/" + TOKEN, "~/" + TOKEN, "../../../../../dev/shm/" + TOKEN,
            "$(touch /dev/shm/%s)" % TOKEN, "/var/tmp/%s/x" % TOKEN]
SHARED_DIRS = ("/tmp", "/dev/shm", "/var/tmp")  # where any user may write: scanned for the token

text = st.one_of(st.sampled_from(HOSTILE), st.text(max_size=80),
                 st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x10FFFF,
                                                blacklist_categories=()), max_size=40))
numbers = st.one_of(st.integers(), st.integers(min_value=-2**70, max_value=2**70),
                    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0, -1, 2**63, -2**63, 10**30]))
scalars = st.one_of(st.none(), st.booleans(), numbers, text)
json_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(text, inner, max_size=4)), max_leaves=12)

FIELDS = {  # keys the routes read, so hostile values reach the checks behind them
    "/api/login": ["username", "password"],
    "/api/scripts": ["template", "name", "answers", "notes"],
    "/api/scripts/<id>": ["content", "notes", "name"],
    "/api/scripts/<id>/preview": ["answers"],
    "/api/jobs": ["script", "answers"],
    "/api/jobs/bulk": ["action", "ids"],
    "/api/jobs/columns": ["columns"],
}
ANSWER_KEYS = ["working_dir", "job_name", "output_file", "merge_output", "error_file",
               "partition", "time", "mem", "account", "nodes", "ntasks", "array", "cpus", "x" * 70]
FORM_FIELDS = ["csrf", "login_csrf", "username", "password", "next", "name", "notes", "field",
               "text", "etag", "action", "id", "q_working_dir", "q_job_name", "q_output_file",
               "q_merge_output", "q_time", "q_partition", "q_mem", "q_array", "column", "page_id"]
QUERY = ["state", "page", "per_page", "tail", "list", "script", "all", "edit", "next", "token", "q", "sort", "order",
         "from", "to", "id", "action", "page_id"]


def deep(n):
    return ("[" * n + "]" * n).encode()


def answers_like():
    return st.dictionaries(st.one_of(st.sampled_from(ANSWER_KEYS), text), json_values, max_size=6)


def json_body(rule):
    keys = FIELDS.get(rule, [])
    known = st.fixed_dictionaries({}, optional={k: (answers_like() if k == "answers" else json_values)
                                                for k in keys}) if keys else st.just({})
    return st.one_of(
        known.map(lambda d: json.dumps(d).encode()),
        json_values.map(lambda v: json.dumps(v).encode()),
        st.binary(max_size=200),
        st.sampled_from([b"\xff\xfe\xfd", b'{"name": "\xff"}', b'{"name": "\\ud800"}', b"{", b"",
                         b'{"a": 1e999999}', b'{"content": "a\\u0000b"}', b"\x00" * 100,
                         deep(500), deep(990), deep(5000), deep(300000),
                         b'{"answers": ' + deep(2000) + b"}",
                         b'{"content": "' + b"x" * (1 << 20) + b'"}']),
    )


def form_body():
    value = st.one_of(text.map(lambda s: s.encode("utf-8", "surrogatepass")), st.binary(max_size=60),
                      st.just(b"x" * 70000))
    return st.dictionaries(st.sampled_from(FORM_FIELDS), st.lists(value, min_size=1, max_size=3), max_size=8)


def encode_form(fields, csrf):
    parts = []
    for k, values in fields.items():
        for v in values:
            if k == "csrf" and v == b"<good>":
                v = csrf.encode()
            parts.append("%s=%s" % (urllib.parse.quote(k), urllib.parse.quote_from_bytes(v, safe="")))
    return "&".join(parts).encode("ascii")


class World:
    """The app, a logged-in cookie session, a script and a finished job with
    a results directory inside tmp_path/out (made, or given by ids: the
    state and results of a world made before, copied back)."""

    def __init__(self, client, tmp_path, ids=None):
        self.client, self.app, self.tmp = client, client.app, tmp_path
        self.out = tmp_path / "out"
        if ids is None:
            self.out.mkdir()
            (self.out / "data.txt").write_text("results\n")
            self.script = client.create_script("serial", name="fuzz")["id"]
            client.api("PATCH", "/api/scripts/" + self.script, {"content": (
                "#!/bin/bash\n#SBATCH --chdir=%s\n#SBATCH --output=job.out\necho fuzz\n") % self.out})
            self.other = client.create_script("serial", name="patch me")["id"]
            self.job = client.submit(self.script)["id"]
            assert client.wait_job(self.job)["state"] == "COMPLETED"
        else:
            self.script, self.other, self.job = ids
        self.before = self.outside()

    def outside(self):
        """Every path under tmp_path outside the state and results
        directories, and the top of the user's home."""
        found = set()
        for root, dirs, files in os.walk(self.tmp):
            rel = os.path.relpath(root, self.tmp)
            if rel.split(os.sep)[0] in ("state", "out") or rel.startswith("sessions-"):  # the session store
                continue
            found.update(os.path.join(rel, n) for n in dirs + files)
        # the top of the home too (other programs' dot-files and job output
        # in the default working directory are no concern of this test)
        found.update("~/" + n for n in os.listdir(os.path.expanduser("~"))
                     if not n.startswith(".") and not re.match(r"^(job|slurm)-[\d_]+\.(out|err)$", n))
        for top in SHARED_DIRS + (os.path.expanduser("~"),):  # where the baits point
            found.update(os.path.join(top, n) for n in os.listdir(top) if TOKEN in n)
        return found

    def fresh_session(self):
        """A new cookie session each example, so a fuzzed logout does not end
        the rest of the run."""
        session = self.app.auth.create(self.app.daemon_user)
        self.sid = session.id
        self.app.auth.failures.clear()  # a fuzzed login must not throttle the next
        return session.csrf

    def ids(self):
        return st.one_of(st.sampled_from([self.script, self.other, self.job, "serial", "stdout"]), text)


def make_path(rule, params):
    def fill(m):
        name, kind = m.group(1), m.group(2) or ""
        value = params[name]
        if kind.startswith("path") and params.get("raw"):
            return urllib.parse.quote(value.encode("utf-8", "surrogatepass"), safe="/")
        return urllib.parse.quote(value.encode("utf-8", "surrogatepass"), safe="")
    return re.sub(r"<(\w+)(?::([^>]*))?>", fill, rule)


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.status_int = int(status.split()[0])
        self.headers = dict((k.lower(), v) for k, v in headers)
        self.content_type = self.headers.get("content-type", "").split(";")[0]
        self.body = body

    @property
    def json(self):
        return json.loads(self.body.decode("utf-8"))


def wsgi(app, method, path, headers, body, ctype, sid):
    """One raw WSGI call: the path goes in as the bytes a server would pass
    (latin-1 decoded, so invalid UTF-8 arrives as it would)."""
    raw_path, _, query = path.partition("?")
    environ = {"REQUEST_METHOD": method, "SCRIPT_NAME": "",
               "PATH_INFO": urllib.parse.unquote_to_bytes(raw_path).decode("latin-1"),
               "QUERY_STRING": query, "SERVER_NAME": "localhost", "SERVER_PORT": "80",
               "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1", "wsgi.version": (1, 0),
               "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(body or b""), "wsgi.errors": sys.stderr,
               "wsgi.multithread": True, "wsgi.multiprocess": False, "wsgi.run_once": False,
               "HTTP_COOKIE": "%s=%s" % (flightjobd.COOKIE, sid), "CONTENT_LENGTH": str(len(body or b""))}
    if ctype:
        environ["CONTENT_TYPE"] = ctype
    for k, v in headers.items():
        environ["HTTP_" + k.upper().replace("-", "_")] = v
    got = {}

    def start_response(status, headers, exc_info=None):
        got.update(status=status, headers=headers)
    chunks = app(environ, start_response)
    try:
        out = b"".join(chunks)
    finally:
        if hasattr(chunks, "close"):
            chunks.close()
    return Response(got["status"], got["headers"], out)


def check(resp, method, path):
    where = "%s %s -> %s" % (method, path[:200], resp.status)
    assert resp.status_int < 500, where + "\n" + resp.body[:2000].decode("utf-8", "replace")
    assert b"Traceback" not in resp.body and b'File "/' not in resp.body, where
    if path.startswith("/api/") and resp.status_int >= 400 and resp.status_int != 404 or \
            path.startswith("/api/") and resp.status_int in (400, 403, 409, 412, 413, 422):
        assert resp.content_type == "application/json", where
        err = resp.json["error"]
        assert isinstance(err["code"], str) and isinstance(err["message"], str), where


SETTINGS = settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "60")), deadline=None, database=None,
                    suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def made_world(tmp_path_factory):
    """The world made once a module (its job run and waited for): where it
    lives, a copy of its state and results set aside, and its ids."""
    where, kept = tmp_path_factory.mktemp("fuzz-world"), tmp_path_factory.mktemp("fuzz-world-made")
    app = flightjobd.make_app(config_in(where))
    try:
        w = World(client_of(app), where)
    finally:
        app.pool.stop_all()
    for d in ("state", "out"):
        shutil.copytree(str(where / d), str(kept / d), symlinks=True)
    return where, kept, (w.script, w.other, w.job)


@pytest.fixture
def world(made_world):
    """A fresh app on a fresh copy of the made world's state and results."""
    where, kept, ids = made_world
    for d in ("state", "out"):
        shutil.rmtree(str(where / d))
        shutil.copytree(str(kept / d), str(where / d), symlinks=True)
    app = flightjobd.make_app(config_in(where, auth={"failure_delay": 0}))  # a fuzzed failed login answers at once
    try:
        w = World(client_of(app), where, ids)
        yield w
    finally:
        app.pool.stop_all()
    assert w.outside() == w.before, "files appeared outside the state directory"


@pytest.mark.parametrize("method,rule", ROUTES, ids=["%s %s" % r for r in ROUTES])
def test_fuzz_route(world, method, rule):
    run_fuzz(world, method, rule)


def draw_path(data, rule, ids, text=text, output="job.out"):
    """A path for rule, its parameters and query string drawn: ids for
    <id>, file names (output: the job's output file) or text for paths."""
    params = {n: data.draw(ids if n == "id" else
                           st.one_of(st.sampled_from(["stdout", "stderr", output, "data.txt",
                                                      "../../../etc/passwd", "a/../../x", "", "sub/"]),
                                     text), label=n) for n in re.findall(r"<(\w+)", rule)}
    params["raw"] = data.draw(st.booleans(), label="raw path")
    if "which" in params:
        params["which"] = data.draw(st.sampled_from(["stdout", "stderr"]))
    path = make_path(rule, params)
    query = data.draw(st.dictionaries(st.sampled_from(QUERY), text, max_size=3), label="query")
    if query:
        path += "?" + urllib.parse.urlencode({k: v.encode("utf-8", "surrogatepass") for k, v in query.items()})
    return path


def run_fuzz(world, method, rule):
    @SETTINGS
    @given(st.data())
    def one(data):
        csrf = world.fresh_session()
        path = draw_path(data, rule, world.ids())
        headers = {}
        if data.draw(st.booleans(), label="with csrf"):
            headers["X-CSRF-Token"] = csrf
        if data.draw(st.booleans(), label="if-match"):
            headers["If-Match"] = data.draw(st.one_of(st.sampled_from(['"1"', '"2"', "*", "", "W/\"1\""]),
                                                      text.map(lambda s: s.encode("utf-8", "surrogatepass")
                                                               .decode("latin-1"))))
        body, ctype = None, None
        if method in ("POST", "PATCH", "DELETE", "PUT"):
            if rule.startswith("/api/"):
                body = data.draw(json_body(rule), label="body")
                ctype = data.draw(st.sampled_from(["application/json", "application/json; charset=utf-8",
                                                   "text/plain", "application/x-www-form-urlencoded"]))
            else:
                fields = data.draw(form_body(), label="form")
                if data.draw(st.booleans(), label="good form csrf"):
                    fields["csrf"] = [b"<good>"]
                body = encode_form(fields, csrf)
                ctype = "application/x-www-form-urlencoded"
        resp = wsgi(world.app.bottle, method, path, headers, body, ctype, world.sid)
        check(resp, method, path)

    one()


def documented_api_routes():
    """The README's API table, its first column: (method, path) with ID, N
    and PATH as <>, and ".../stderr" written out."""
    with open(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")) as f:
        table = f.read().split("| method and path | does |", 1)[1].split("\n\n", 1)[0]
    routes, last = set(), None
    for line in table.splitlines()[2:]:  # past the header's rule
        for entry in line.split("|")[1].split(","):
            entry = entry.strip()
            if entry.startswith(".../"):
                method, path = last[0], last[1].rsplit("/", 1)[0] + entry[3:]
            else:
                method, path = entry.split(" ", 1)
            last = (method, path)
            routes.add((method, re.sub(r"/(ID|N|PATH)(?=/|$)", "/<>", path)))
    return routes


def test_routes_are_all_fuzzed():
    """The fuzz takes its routes from the app (ROUTES), so it reaches new
    ones by itself; the README's API table, written by hand, is the
    independent list: each route it documents is one the fuzz sends to,
    and each API route of the app is documented."""
    fuzzed = set()
    for method, rule in ROUTES:
        alternatives = re.search(r"<\w+:re:([^>]*)>", rule)
        for one in alternatives.group(1).split("|") if alternatives else [None]:
            path = re.sub(r"<\w+:re:[^>]*>", one, rule) if one else rule
            fuzzed.add((method, re.sub(r"<[^>]*>", "<>", path)))
    documented = documented_api_routes()
    assert len(documented) >= 30, documented
    assert documented - fuzzed == set(), "documented, but the fuzz sends nothing there"
    assert {r for r in fuzzed if r[1].startswith("/api/")} - documented == set(), "API routes the README omits"


def test_state_dir_is_never_escaped_by_names(client, tmp_path):
    """Names, notes and answers that look like paths stay data: each bait
    as a name and notes, and nothing named after one in /tmp, /dev/shm,
    /var/tmp or the home."""
    baits = [h for h in HOSTILE if TOKEN in h]
    for evil in ["../../../escaped", "/tmp/escaped-%d" % os.getpid(), "..\\..\\x", "a/b/c"] + baits:
        s = client.create_script("serial", name=evil, notes=evil)
        assert s["name"] == evil and flightjobd.ID_RE.match(s["id"])
    assert not os.path.exists("/tmp/escaped-%d" % os.getpid())
    assert [n for top in SHARED_DIRS + (os.path.expanduser("~"),) for n in os.listdir(top) if TOKEN in n] == []
    assert set(os.listdir(tmp_path / "state")) <= {".lock", "scripts", "jobs"}
    for name in os.listdir(tmp_path / "state" / "scripts"):
        assert flightjobd.ID_RE.match(name)

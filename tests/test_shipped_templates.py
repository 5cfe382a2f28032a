"""The job-script templates shipped in share/job-templates/.

Checks each template's template.toml against the template format (stricter
than the daemon's loader: the shipped ones are examples), loads it and
renders its script with the daemon's own functions (`load_template`,
`check_answers`, `render_script`), and checks the result with bash (syntax,
and that the placeholder work runs) and with sbatch's own directive rules.
"""

import os
import re
import subprocess
from pathlib import Path

import pytest

import flightjobd

try:
    import tomllib
except ImportError:  # Python < 3.11
    import tomli as tomllib


TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "share" / "job-templates"
SHIPPED = ["serial", "array", "smp", "mpi", "exclusive", "gpu"]

TEMPLATE_KEYS = flightjobd.TEMPLATE_KEYS
SUBMISSION_KEYS = flightjobd.QUESTION_KEYS
QUESTION_KEYS = SUBMISSION_KEYS - {"option", "options_from"}  # generation questions set no option
TYPES = set(flightjobd.QUESTION_TYPES)
# Names the script template sees besides the answers (ours and Bottle's).
RESERVED_IDS = {"answers", "q", "sq", "get", "setdefault", "defined", "include",
                "rebase"}

# sbatch long options a submission question may set, and the ones the
# scripts' "#SBATCH" lines may use.
SUBMISSION_OPTIONS = {"partition", "time", "mem", "account", "nodes", "ntasks",
                      "cpus-per-task", "gpus", "array", "exclusive"}
DIRECTIVE_OPTIONS = {"chdir", "job-name", "output", "error", "mail-user",
                     "mail-type", "nodes", "ntasks"}

# Slurm time limits: M, M:S, H:M:S, D-H, D-H:M, D-H:M:S.
SLURM_TIME = re.compile(r"^(\d+|\d+:\d+|\d+:\d+:\d+|\d+-\d+(:\d+){0,2})$")

ODD_DIR = "/tmp/my \"odd\" dir's"

# Values for optional text questions in the "filled" case, by question id.
SAMPLE_TEXT = {
    "job_name": "my-job_1.0",
    "modules": "gcc/12.2 openmpi/4.1",
    "program": "echo",
    "program_args": "-n 5 --out result$1.txt & ; x",
}


# --- Rendering: the daemon's own functions ##################################

sq = flightjobd.sbatch_quote
render_script = flightjobd.render_script


def loaded(template_id):
    """The shipped template as the daemon loads it (checked, normalised)."""
    return flightjobd.load_template(str(TEMPLATES_DIR / template_id), "shipped")


def answer_set(template, home, overrides=None):
    """The typed answers the daemon keeps for `overrides` (defaults for the
    rest, and for the questions not asked); Invalid if one is refused."""
    return flightjobd.check_answers(template["questions"], overrides or {}, str(home))


# --- sbatch's directive rules (src/sbatch/opt.c) ############################

def sbatch_split(text):
    """Split the rest of an #SBATCH line into arguments as sbatch does.

    Whitespace separates arguments; double or single quotes group; a
    backslash escapes the next character (inside quotes too); an unquoted,
    unescaped # starts a comment. An unmatched quote is an error. Quirks
    kept: a backslash does not escape whitespace outside quotes, and an
    empty argument ends the line.
    """
    args, i, n = [], 0, len(text)
    while True:
        while i < n and text[i].isspace():
            i += 1
        if i >= n:
            return args
        arg, quote, escaped = [], None, False
        while i < n and (quote or not text[i].isspace()):
            char = text[i]
            i += 1
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
                continue
            elif quote:
                if char == quote:
                    quote = None
                    continue
            elif char in "\"'":
                quote = char
                continue
            elif char == "#":
                i = n
                break
            arg.append(char)
        if quote:
            raise ValueError(f"unmatched {quote} in {text!r}")
        if not arg:
            return args
        args.append("".join(arg))


def sbatch_directives(script):
    """The (option, value) pairs sbatch reads from a script's #SBATCH lines.

    Like sbatch, reading stops at the first line that is neither blank nor a
    comment. Also returns how many #SBATCH lines the script has in total, so
    a test can see that none come after a command (where sbatch ignores them).
    """
    pairs, reading = [], True
    lines = script.splitlines()
    total = sum(1 for line in lines if line.startswith("#SBATCH"))
    for line in lines:
        if line.startswith("#SBATCH"):
            if reading:
                for arg in sbatch_split(line[len("#SBATCH"):]):
                    assert arg.startswith("--"), f"not a long option: {arg!r}"
                    name, sep, value = arg[2:].partition("=")
                    pairs.append((name, value if sep else None))
            continue
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            reading = False
    return pairs, total


def test_sbatch_split_follows_sbatch():
    assert sbatch_split(' --chdir="/a b" --x=1') == ["--chdir=/a b", "--x=1"]
    assert sbatch_split(r' --o="a \"q\" b\\c" # comment') == ['--o=a "q" b\\c']
    assert sbatch_split(" --o='it''s'") == ["--o=its"]
    assert sbatch_split(r" --o=a\ b") == ["--o=a", "b"]  # sbatch's quirk
    assert sbatch_split(' --o=1 "" --p=2') == ["--o=1"]  # empty ends the line
    assert sbatch_split(' --o="x#y"#z') == ["--o=x#y"]
    with pytest.raises(ValueError):
        sbatch_split(' --o="open')


def test_sq_round_trips_through_sbatch():
    for value in [ODD_DIR, "a\\b", 'x"#"y', "", "trailing\\"]:
        assert sbatch_split("--chdir=" + sq(value)) == ["--chdir=" + value]


# --- Fixtures ###############################################################

def load(template_id):
    with open(TEMPLATES_DIR / template_id / "template.toml", "rb") as f:
        return tomllib.load(f)


@pytest.fixture(params=SHIPPED)
def template(request):
    """(id, directory, parsed template.toml) of one shipped template."""
    return request.param, TEMPLATES_DIR / request.param, load(request.param)


@pytest.fixture
def home(tmp_path):
    path = tmp_path / "home"
    path.mkdir()
    return path


def bash_syntax_ok(script, tmp_path):
    path = tmp_path / "rendered.sh"
    path.write_text(script)
    result = subprocess.run(["bash", "-n", str(path)], check=False, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def run_script(script, cwd, extra_env=None):
    """Run a rendered script with bash outside Slurm; returns the result."""
    path = cwd / "job.sh"
    path.write_text(script)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env.update({"HOME": str(cwd)}, **(extra_env or {}))
    return subprocess.run(["bash", str(path)], check=False, cwd=str(cwd), env=env,
                          capture_output=True, text=True, timeout=60)


# --- template.toml ##########################################################

def test_all_templates_shipped():
    found = sorted(p.name for p in TEMPLATES_DIR.iterdir() if p.is_dir())
    assert found == sorted(SHIPPED)


def test_metadata(template):
    template_id, directory, meta = template
    assert re.fullmatch(r"[a-z0-9-]+", template_id)
    assert set(meta) <= TEMPLATE_KEYS, set(meta) - TEMPLATE_KEYS
    for key in ("name", "synopsis", "description"):
        assert isinstance(meta[key], str) and meta[key].strip(), key
    assert "\n" not in meta["synopsis"]
    assert isinstance(meta["priority"], int)
    assert meta["tags"] and all(isinstance(t, str) and t for t in meta["tags"])
    assert (directory / meta.get("script", "script.sh")).is_file()


def test_priorities_distinct():
    priorities = [load(t)["priority"] for t in SHIPPED]
    assert len(set(priorities)) == len(priorities)


def check_default(question):
    kind, default = question["type"], question["default"]
    where = question["id"]
    if kind == "boolean":
        assert isinstance(default, bool), where
    elif kind == "integer":
        assert isinstance(default, int) and not isinstance(default, bool), where
    elif kind == "number":
        assert isinstance(default, (int, float)) and not isinstance(default, bool), where
    elif kind == "multiselect":
        assert isinstance(default, list) and all(isinstance(v, str) for v in default), where
    else:
        assert isinstance(default, str), where
    if "min" in question:
        assert default >= question["min"], where
    if "max" in question:
        assert default <= question["max"], where
    if kind in ("select", "multiselect") and "options" in question:
        values = [o["value"] if isinstance(o, dict) else o for o in question["options"]]
        assert len(set(values)) == len(values), where
        chosen = default if kind == "multiselect" else [default] if default else []
        assert set(chosen) <= set(values), where
    if kind == "time" and default:
        assert SLURM_TIME.match(default), where
    if "pattern" in question:
        pattern = re.compile(question["pattern"])
        assert question.get("pattern_error"), where
        if default:
            assert pattern.search(default), where
    if question.get("required") and "ask_when" not in question:
        assert default not in ("", []), f"required {where} needs a default"


@pytest.mark.parametrize("kind", ["question", "submission_question"])
def test_questions_well_formed(template, kind):
    _, _, meta = template
    questions = meta.get(kind, [])
    allowed = QUESTION_KEYS if kind == "question" else SUBMISSION_KEYS
    seen = []
    for question in questions:
        where = question.get("id")
        assert set(question) <= allowed, (where, set(question) - allowed)
        for key in ("id", "text", "description", "type", "default"):
            assert key in question, (where, key)
        assert re.fullmatch(r"[a-z][a-z0-9_]*", question["id"])
        assert question["id"] not in RESERVED_IDS, where
        assert question["text"].strip() and len(question["description"]) > 20, where
        assert question["type"] in TYPES, where
        if question["type"] in ("select", "multiselect"):
            assert ("options" in question) != ("options_from" in question), where
        if "options_from" in question:
            assert question["options_from"] == "partitions", where
        check_default(question)
        if "ask_when" in question:
            cond = question["ask_when"]
            assert cond["question"] in seen, f"{where}: ask_when needs an earlier question"
            assert len(set(cond) & {"equals", "one_of"}) == 1 and len(cond) == 2, where
        if kind == "submission_question":
            assert question["option"] in SUBMISSION_OPTIONS, where
            if question["type"] == "boolean":
                assert question["option"] == "exclusive", where
        seen.append(question["id"])


def test_ids_unique_across_both_lists(template):
    _, _, meta = template
    ids = [q["id"] for q in meta["question"] + meta["submission_question"]]
    assert len(ids) == len(set(ids))
    options = [q["option"] for q in meta["submission_question"]]
    assert len(options) == len(set(options))


COMMON_GENERATION = {
    "working_dir": ("path", "~"),
    "job_name": ("text", None),
    "output_file": ("text", None),
    "merge_output": ("boolean", True),
    "error_file": ("text", None),
    "notify": ("boolean", False),
    "email": ("email", ""),
    "mail_events": ("multiselect", ["END", "FAIL"]),
}
EXTRA_SUBMISSION = {
    "serial": set(),
    "array": {"array"},
    "smp": {"cpus_per_task"},
    "mpi": {"nodes", "ntasks"},
    "exclusive": {"nodes", "exclusive"},
    "gpu": {"gpus"},
}


def test_common_questions(template):
    template_id, _, meta = template
    generation = {q["id"]: q for q in meta["question"]}
    for qid, (kind, default) in COMMON_GENERATION.items():
        assert generation[qid]["type"] == kind, qid
        if default is not None:
            assert generation[qid]["default"] == default, qid
    assert generation["error_file"]["ask_when"] == {"question": "merge_output", "equals": False}
    for qid in ("email", "mail_events"):
        assert generation[qid]["ask_when"] == {"question": "notify", "equals": True}
        assert generation[qid]["required"] is True
    assert {o["value"] for o in generation["mail_events"]["options"]} == {"BEGIN", "END", "FAIL"}
    submission = {q["id"]: q for q in meta["submission_question"]}
    assert submission["partition"]["options_from"] == "partitions"
    assert submission["time"]["type"] == "time"
    assert submission["mem"]["option"] == "mem"
    assert EXTRA_SUBMISSION[template_id] <= set(submission)
    if template_id == "array":
        assert "%A" in generation["output_file"]["default"]
        assert "%a" in generation["output_file"]["default"]
    else:
        assert "%j" in generation["output_file"]["default"]


@pytest.mark.parametrize("value, ok", [
    ("500M", True), ("4G", True), ("1T", True), ("2048", True), ("", True),
    ("4 G", False), ("4GB", False), ("1.5G", False),
])
def test_memory_pattern(value, ok):
    for template_id in SHIPPED:
        mem = next(q for q in load(template_id)["submission_question"] if q["id"] == "mem")
        assert bool(re.search(mem["pattern"], value)) == ok, (template_id, value)


@pytest.mark.parametrize("value, ok", [
    ("1-10", True), ("1,3,5", True), ("1-100%10", True), ("0-20:2", True),
    ("1-3,7,9-11%2", True), ("", False), ("1-", False), ("a-b", False), ("1 - 3", False),
])
def test_array_pattern(value, ok):
    array = next(q for q in load("array")["submission_question"] if q["id"] == "array")
    assert bool(re.search(array["pattern"], value)) == ok, value


# --- Rendering ##############################################################

def rendered_cases(template, home):
    """(label, answers) pairs covering defaults, edge answers and filled ones."""
    questions = template["questions"]
    yield "defaults", answer_set(template, home)
    empty = {q["id"]: "" for q in questions
             if not q.get("required") and q["type"] in ("text", "path")}
    yield "edge", answer_set(template, home, dict(
        empty, working_dir=ODD_DIR, merge_output=False, notify=True,
        email="someone@example.org", mail_events=["BEGIN", "END", "FAIL"]))
    filled = {q["id"]: SAMPLE_TEXT.get(q["id"], ODD_DIR + "/inputs.txt")
              for q in questions if not q.get("required") and q["type"] in ("text", "path")}
    for question in questions:
        if question["type"] == "select":
            for option in question["options"]:
                yield (f"{question['id']}={option['value']}",
                       answer_set(template, home, dict(filled, **{question["id"]: option["value"]})))
        elif question["type"] == "boolean" and question["id"] not in COMMON_GENERATION:
            yield (f"{question['id']}=flipped", answer_set(
                template, home, dict(filled, **{question["id"]: not question["default"]})))
    yield "filled", answer_set(template, home, filled)


def test_renders_valid_scripts(template, home, tmp_path):
    template_id = template[0]
    for label, answers in rendered_cases(loaded(template_id), home):
        script = render_script(loaded(template_id), answers)
        assert script.startswith("#!/bin/bash\n"), label
        assert "{{" not in script and "}}" not in script, label
        bash_syntax_ok(script, tmp_path)

        pairs, total = sbatch_directives(script)
        assert len(pairs) == total, f"{label}: #SBATCH after a command is ignored"
        names = [name for name, _ in pairs]
        assert len(names) == len(set(names)), (label, names)
        assert set(names) <= DIRECTIVE_OPTIONS, (label, names)
        directives = dict(pairs)

        assert directives["chdir"] == answers["working_dir"], label
        assert directives.get("job-name") == (answers["job_name"] or None), label
        assert directives["output"] == answers["output_file"], label
        if answers["merge_output"]:
            assert "error" not in directives, label
        else:
            assert directives["error"] == answers["error_file"], label
        if answers["notify"]:
            assert directives["mail-user"] == answers["email"], label
            assert directives["mail-type"] == ",".join(answers["mail_events"]), label
        else:
            assert "mail-user" not in directives and "mail-type" not in directives, label


def test_answers_reach_the_script_quoted(home, tmp_path):
    """Shell words built from answers come back unchanged when bash reads them."""
    mpi = loaded("mpi")
    answers = answer_set(mpi, home, {
        "modules": "gcc/12 openmpi", "program": "printf", "program_args": "[%s] $HOME a;b"})
    script = render_script(mpi, answers)
    result = run_script(script, home)
    assert result.returncode == 0, result.stderr
    assert "[$HOME][a;b]" in result.stdout


# --- The placeholder work runs anywhere #####################################

@pytest.mark.jobs
def test_default_script_runs(template, home):
    shipped = loaded(template[0])
    for label in ("defaults", "edge"):
        answers = dict(rendered_cases(shipped, home))[label]
        script = render_script(shipped, answers)
        result = run_script(script, home, {"SLURM_CPUS_PER_TASK": "3"})
        assert result.returncode == 0, (label, result.stdout, result.stderr)
        assert "finished" in result.stdout, label


def test_array_task_reads_its_line(home):
    array = loaded("array")
    inputs = home / "inputs.txt"
    inputs.write_text("first.dat\nsecond.dat\nthird.dat\n")
    answers = answer_set(array, home, {"task_list": "inputs.txt"})
    script = render_script(array, answers)
    result = run_script(script, home, {"SLURM_ARRAY_TASK_ID": "2"})
    assert result.returncode == 0, result.stderr
    assert "This task's input: second.dat" in result.stdout
    result = run_script(script, home, {"SLURM_ARRAY_TASK_ID": "7"})
    assert result.returncode == 1 and "line 7" in result.stderr


def test_mpi_missing_program_fails_clearly(home):
    mpi = loaded("mpi")
    answers = answer_set(mpi, home, {"program": "./no-such-solver"})
    result = run_script(render_script(mpi, answers), home)
    assert result.returncode == 1
    assert "cannot find the MPI program ./no-such-solver" in result.stderr

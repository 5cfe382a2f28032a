"""#SBATCH lines read as sbatch reads them, proved on the real cluster: for
each line of the table, what `scontrol show job` reports of the job sbatch
made equals what flightjobd's parse_directives expected (issue 24)."""
import os
import shutil
import subprocess
import tempfile

import pytest

import flightjobd

pytestmark = [pytest.mark.slurm, pytest.mark.root]

# (the directive lines, as they stand in the script), a quote, a comment, a
# space or a backslash in each; the script's commands follow them.
TABLE = [
    "#SBATCH --job-name=named # a comment",
    "#SBATCH --output='my file.out'",
    '#SBATCH --job-name="two words" --comment=\'single "inner"\'',
    "#SBATCH --job-name 'space form'",
    "#SBATCH -J short",
    "#SBATCH -Jglued",
    "#SBATCH -J=eq",
    "#SBATCH --comment=a#b",
    '#SBATCH --comment="a#b"  # and a comment',
    "#SBATCH --comment=it\\'s",
    '#SBATCH --comment="say \\"hi\\""',
    "#SBATCH --comment=x'y z'\"w\"",
    "#SBATCH --time=5 --partition=long",
    "#SBATCH -t 7 -p long",
    '#SBATCH --comment="a\\ b" -e err.%j',
    "#SBATCH   \t--job-name=lead\t ",
    "#SBATCH --comment=ünïcode✓€ --error='odd ,;=&$ name'",
    "#SBATCH --comment='' --job-name=after",
    "#SBATCH--job-name=nospace",
    "  #SBATCH --job-name=indented\n#SBATCH --comment=kept",
    "#SLURM --job-name=old-word",
    "#SBATCH --chdir='{tmp}/a dir' --output=o.txt",
    "#SBATCH -J one\necho hi\n#SBATCH -J too-late",
    "#SBATCH -J first\n#SBATCH hetjob\n#SBATCH -J second",
    "#SBATCH --jo=abbreviated --comm='as getopt_long takes it'",
    "#SBATCH --outp=abbr.%j --part long -t 9",
]


def expected(opts, cwd, job_id):
    """What scontrol should report, from the daemon's reading of the lines."""
    workdir = opts.get("chdir", cwd)

    def path(value):
        return os.path.join(workdir, value.replace("%j", job_id))
    limit = opts.get("time")
    out = path(opts.get("output", "slurm-%j.out"))
    return {"JobName": opts.get("job-name", "job.sh"), "Comment": opts.get("comment", ""),
            "Partition": opts.get("partition", "debug"), "WorkDir": workdir, "StdOut": out,
            "StdErr": path(opts["error"]) if "error" in opts else out,
            "TimeLimit": flightjobd.format_duration(flightjobd.time_limit_seconds(limit)).zfill(8)
            if limit else "01:00:00"}


def test_directive_table_against_sbatch(slurm_cluster):
    cluster = slurm_cluster.ensure()
    tmp = tempfile.mkdtemp(prefix="fj-directives-")
    os.mkdir(os.path.join(tmp, "a dir"))
    env = dict(os.environ, SLURM_CONF=cluster.conf)
    mismatches, ids = [], []
    try:
        for n, lines in enumerate(TABLE):
            lines = lines.format(tmp=tmp)
            cwd = os.path.join(tmp, str(n))
            os.mkdir(cwd)
            script = "#!/bin/bash\n%s\nsleep 1\n" % lines
            with open(os.path.join(cwd, "job.sh"), "w", encoding="utf-8") as f:
                f.write(script)
            r = subprocess.run(["sbatch", "--parsable", "--hold", "job.sh"], cwd=cwd, env=env,
                               capture_output=True, text=True, timeout=60)
            assert r.returncode == 0, (lines, r.stderr)
            job_id = flightjobd.parse_sbatch(r.stdout)
            ids.append(job_id)
            shown = flightjobd.parse_scontrol(subprocess.run(
                ["scontrol", "show", "job", job_id], env=env, capture_output=True, text=True,
                timeout=60, check=True).stdout)
            shown["Comment"] = shown.get("Comment", " ")[:-1]  # that line ends with a space; none without one
            want = expected(dict(flightjobd.parse_directives(script)), cwd, job_id)
            got = {key: shown.get(key) for key in want}
            if got != want:
                mismatches.append((lines, want, got))
        assert not mismatches, "\n".join("%r:\n  expected %s\n  scontrol %s" % m for m in mismatches)
        assert len(TABLE) >= 15
    finally:
        subprocess.run(["scancel"] + ids, env=env, capture_output=True, timeout=60)
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.mark.parametrize("text, words", [
    (" --job-name=named # a comment", ["--job-name=named"]),
    (" --output='my file.out'", ["--output=my file.out"]),
    (" a#b c", ["a"]),
    (" '' --job-name=x", []),
    (' "a \\" b"\\\' x', ['a " b\'', "x"]),
    (" a\\ b", ["a", "b"]),
    (" 'unmatched", ["unmatched"]),
])
def test_split_directive(text, words):
    assert flightjobd.split_directive(text) == words


def test_parse_options_forms():
    args = ["--time", "10", "-Jfoo", "-J=bar", "--hold", "-p", "debug", "--exclusive", "-H", "--x=1"]
    assert flightjobd.parse_options(args) == [
        ("time", "10"), ("job-name", "foo"), ("job-name", "=bar"), ("hold", True),
        ("partition", "debug"), ("exclusive", True), ("hold", True), ("x", "1")]

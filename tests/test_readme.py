"""The README's guarantee table points at real tests: every row names the
tests that prove it as `tests/FILE.py::TEST` (or says plainly what is not
tested), and every test it names exists, so a rename cannot leave a
promise without its proof."""
import os
import re

from support import ROOT

NAMED = re.compile(r"`(tests/[\w/]+\.py)::(\w+)")


def guarantee_rows():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        text = f.read()
    table = text.split("What is guaranteed, and the test that shows it:", 1)[1].split("\n## ", 1)[0]
    return [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| guarantee |")]


def test_every_guarantee_names_tests_that_exist():
    rows = guarantee_rows()
    assert len(rows) >= 15
    for row in rows:
        named = NAMED.findall(row)
        assert named or "not tested" in row.lower(), "names no test: " + row[:150]
        for path, name in named:
            with open(os.path.join(ROOT, path), encoding="utf-8") as f:
                source = f.read()
            assert re.search(r"^def %s\(" % name, source, re.M), "%s::%s does not exist" % (path, name)

"""Submissions that try to earn points they did not earn, or to harm the grader: all fail.

Each crafted notebook is the untouched review exercise (worth 0) plus attack cells, graded by
the real grader (`make grade`'s code path) with a short cell limit. Every attack must score 0
(or keep exactly the honest points it has), leave no process of a sandbox user alive, and
change no file of the course.
"""

from __future__ import annotations

import hashlib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pandas as pd
import psutil
import pytest

from opslab import grade_class
from opslab.sandbox import confine

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900), pytest.mark.skipif(
    confine.unavailable() is not None, reason=str(confine.unavailable()))]  # fmt: skip

EXERCISE = grade_class.EXERCISES / "review.ipynb"
ZIP = grade_class.AUTOGRADER / "review-autograder.zip"
SOLUTIONS_ZIP = str(ZIP)
KEY = "{'A', 'C', 'F'}"


def attack(cells: list[str], *, q1a: str = "...") -> nbformat.NotebookNode:
    """The exercise with `q1a` answered as given and the attack cells at its end."""
    notebook = nbformat.read(EXERCISE, as_version=4)
    index = next(i for i, c in enumerate(notebook.cells) if c.source.startswith("q1a = "))
    notebook.cells[index].source = f"q1a = {q1a}"
    notebook.cells += [nbformat.v4.new_code_cell(c) for c in cells]
    return notebook


ESCAPING_SERVER = """
OPSLAB = {opslab!r}
import glob, os, signal, time
for path in glob.glob(OPSLAB + '/**/*.py', recursive=True):
    try:
        open(path, 'a').write('# tampered')
    except OSError:
        pass
try:
    os.kill(-1, signal.SIGKILL)
except OSError:
    pass
time.sleep(30)
""".replace("{opslab!r}", repr(str(grade_class.ROOT / "opslab")))


ATTACKS = {
    # The review found each of these scoring points under `otter run`.
    "rebind_grading": [
        "class Always:\n    def __getattr__(self, name):\n"
        "        return lambda *a, **k: None\ngrading = Always()"
    ],
    "displayhook": ["import sys\nsys.displayhook = sys.__displayhook__ = lambda value: None"],
    "patch_checks": [
        "import opslab.grading as g, opslab.grading.common as c\n"
        "for name in dir(g):\n    if name.startswith('check_'):\n"
        "        setattr(g, name, lambda *a, **k: None)\n"
        "c.Failed.__repr__ = lambda self: ''"
    ],
    "patch_otter": [
        "import otter.test_files.abstract_test as t\n"
        "t.TestFile.grade = lambda self, *a, **k: None\n"
        "t.TestFile.score = property(lambda self: 1024)"
    ],
    # Reading the hidden tests or another submission: a success would answer q1a right.
    "read_hidden_tests": [
        "import glob, zipfile, re\nfound = None\n"
        f"for path in glob.glob({str(grade_class.ROOT)!r} + '/**/*.zip', recursive=True) + "
        f"[{SOLUTIONS_ZIP!r}, '/proc/1/root' + {SOLUTIONS_ZIP!r}]:\n"
        "    try:\n        text = zipfile.ZipFile(path).read('tests/q1a.py').decode()\n"
        "        found = set(re.search(r\"key='(\\w+)'\", text).group(1))\n"
        "    except Exception:\n        pass\nif found:\n    q1a = found"
    ],
    "read_answer_keys": [
        "try:\n    import opslab.grading.keys.fingerprint\n    q1a = {'A', 'C', 'F'}\n"
        "except ImportError:\n    pass"
    ],
    "read_solutions": [
        "import json\ntry:\n"
        f"    nb = json.load(open({str(grade_class.SOLUTIONS / 'review.ipynb')!r}))\n"
        "    q1a = {'A', 'C', 'F'} if nb else ...\nexcept OSError:\n    pass"
    ],
    "read_other_submission": [
        "import json, glob\nfor path in glob.glob('{submissions}/*.ipynb'):\n"
        "    try:\n        json.load(open(path)); q1a = {'A', 'C', 'F'}\n"
        "    except OSError:\n        pass"
    ],
    "network_to_host": [
        "import socket\ntry:\n"
        "    with socket.create_connection(('127.0.0.1', {port}), 2) as s:\n"
        "        q1a = eval(s.recv(100).decode())\nexcept OSError:\n    pass"
    ],
    # Writing where later gradings would read.
    "write_course_code": [
        "import glob, opslab\nfor path in glob.glob(opslab.__path__[0] + '/**/*.py', "
        f"recursive=True) + [{SOLUTIONS_ZIP!r}]:\n    try:\n"
        "        open(path, 'a').write('\\nraise SystemExit')\n    except OSError:\n        pass"
    ],
    # The server an answer starts (q3b) is confined too: its own user, nothing writable.
    "server_escape": [f"server_source = {ESCAPING_SERVER!r}"],
    # Runaway code: costs only what it breaks.
    "busy_loop": ["while True:\n    pass"],
    "swallow_timeouts": [
        "import time\nwhile True:\n    try:\n        time.sleep(0.05)\n"
        "    except BaseException:\n        pass"
    ],
    "ignore_signals": [
        "import signal, time\nfor s in (signal.SIGALRM, signal.SIGINT):\n"
        "    signal.signal(s, signal.SIG_IGN)\nwhile True:\n    time.sleep(0.05)"
    ],
    "fork_bomb": [
        "import os\npids = []\ntry:\n    while True:\n        pid = os.fork()\n"
        "        if pid == 0:\n            import time; time.sleep(600); os._exit(0)\n"
        "        pids.append(pid)\nexcept OSError:\n    pass"
    ],
    "memory_bomb": ["blocks = []\nwhile True:\n    blocks.append(bytearray(64 << 20))"],
    "disk_fill": [
        "import os\nwith open(os.path.expanduser('~/fill'), 'wb') as f:\n"
        "    while True:\n        f.write(b'x' * (1 << 20))"
    ],
    "huge_output": ["import sys\nfor _ in range(400):\n    sys.stdout.write('x' * (1 << 20))"],
    "detached_daemon": [
        "import subprocess\nsubprocess.Popen(['sleep', '600'], "
        "start_new_session=True)\nimport os\nif os.fork() == 0:\n"
        "    os.setsid()\n    if os.fork() == 0:\n        import time\n"
        "        time.sleep(600)\n    os._exit(0)"
    ],
    "signal_grader": [
        "import os, signal\nfor pid in (os.getppid(), 1, -1):\n    try:\n"
        "        os.kill(pid, signal.SIGKILL)\n    except OSError:\n        pass"
    ],
    # A check's own time limit cannot be caught by the learner's code: it is in the judge.
    "function_hangs": [
        "def load_config(environ=None):\n    while True:\n        try:\n"
        "            pass\n        except BaseException:\n            pass"
    ],
    # Values that only pretend: a str whose == is always true is not data, so it never crosses.
    "sly_values": [
        "class Sly(str):\n    def __eq__(self, other):\n        return True\n"
        "    __hash__ = str.__hash__\nclass Config:\n    def __init__(self):\n"
        "        self.csrf_secret = self.database_url = Sly('x')\n"
        "    def __repr__(self):\n        return 'Config()'\n"
        "def load_config(environ=None):\n    return Config()\n"
        "q2a = type('AnySet', (set,), {'__eq__': lambda s, o: True})()"
    ],
    "fake_replies": [
        "import os\nfor fd in range(3, 64):\n    try:\n"
        '        os.write(fd, b\'{"value": {"t": "set", "v": []}}\\n\' * 50)\n'
        "    except OSError:\n        pass"
    ],
}
# Runaway cells after an honest q1a: its 2 points must survive.
KEEPS_Q1A = {
    "busy_loop",
    "swallow_timeouts",
    "ignore_signals",
    "fork_bomb",
    "memory_bomb",
    "disk_fill",
    "huge_output",
    "detached_daemon",
    "signal_grader",
    "fake_replies",
}


def _digest(*folders: Path) -> str:
    h = hashlib.sha256()
    for folder in folders:
        for path in sorted(folder.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                h.update(path.as_posix().encode() + path.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def key_server() -> Iterator[int]:
    """A server on the host's loopback that hands out the answer: the sandbox must not reach it."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.sendall(KEY.encode())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    server.close()


@pytest.fixture(scope="module")
def graded(tmp_path_factory: pytest.TempPathFactory, key_server: int) -> pd.DataFrame:
    """Every attack graded as a class, with a 5 s cell limit; the course's files hashed around."""
    folder = tmp_path_factory.mktemp("attacks")
    for name, cells in ATTACKS.items():
        filled = [c.replace("{submissions}", str(folder)).replace("{port}", str(key_server))
                  for c in cells]  # fmt: skip
        q1a = KEY if name in KEEPS_Q1A else "..."
        nbformat.write(attack(filled, q1a=q1a), folder / f"{name}.ipynb")
    before = _digest(grade_class.ROOT / "opslab", grade_class.SOLUTIONS, grade_class.EXERCISES)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OPSLAB_CELL_SECONDS", "5")
        scores = grade_class.grade(folder, ZIP, feedback=folder / "feedback")
    after = _digest(grade_class.ROOT / "opslab", grade_class.SOLUTIONS, grade_class.EXERCISES)
    scores.attrs["unchanged"] = before == after
    scores.attrs["feedback"] = folder / "feedback"
    return scores


@pytest.mark.parametrize("name", sorted(set(ATTACKS) - KEEPS_Q1A))
def test_attack_earns_nothing(graded: pd.DataFrame, name: str) -> None:
    assert graded.loc[name, "total"] == 0, graded.loc[name].to_dict()
    assert not graded.loc[name, "error"]


@pytest.mark.parametrize("name", sorted(KEEPS_Q1A))
def test_runaway_cell_keeps_the_other_points(graded: pd.DataFrame, name: str) -> None:
    row = graded.loc[name]
    assert (row["q1a"], row["total"]) == (2, 2), row.to_dict()
    assert not row["error"]


@pytest.mark.parametrize("name", ["busy_loop", "swallow_timeouts", "ignore_signals"])
def test_stopped_cell_named_in_csv_and_feedback(graded: pd.DataFrame, name: str) -> None:
    assert "was stopped at its 5 s limit" in graded.loc[name, "notes"]
    feedback = (graded.attrs["feedback"] / f"{name}.txt").read_text()
    assert "was stopped at its 5 s limit" in feedback
    assert feedback.startswith(f"{name}: 2 / 28 points")


def test_grading_changes_no_course_file(graded: pd.DataFrame) -> None:
    assert graded.attrs["unchanged"]


def test_grading_leaves_no_sandbox_process(graded: pd.DataFrame) -> None:
    low, high = confine.UID_BASE, confine.UID_BASE + 2 * confine.SLOTS
    left = [p.info for p in psutil.process_iter(["pid", "uids", "cmdline"])
            if p.info["uids"] and low <= p.info["uids"].real < high]  # fmt: skip
    assert left == []


def test_maximum_comes_from_the_assignment(graded: pd.DataFrame) -> None:
    assert graded.attrs["max"] == {"q1a": 2, "q1b": 9, "q2a": 2, "q2b": 9, "q3a": 2, "q3b": 4}
    assert (graded["percent"] <= 100).all()

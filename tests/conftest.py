"""Shared fixtures: every test session gets its own pdeb home."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Sequence

import pytest

from pdebench_core.testing import run_pdeb


@pytest.fixture(scope="session", autouse=True)
def pdeb_home(tmp_path_factory) -> Path:
    """A private ``PDEB_HOME`` so tests never touch the user's runs and results."""
    home = tmp_path_factory.mktemp("pdeb-home")
    os.environ["PDEB_HOME"] = str(home)
    return home


@pytest.fixture
def pdeb_together() -> Callable[..., list]:
    """Run several independent ``pdeb`` command lines at once, two at a time, each in its own
    subprocess: most of a short command is one core importing torch, so on a two-core machine
    a pair finishes in about the time of one. ``env`` is one environment for all of them, or
    one per command. Returns the finished processes in order."""
    def run(commands: Sequence[Sequence[str]], env: dict[str, str] | Sequence[dict[str, str]] | None = None) -> list:
        envs = env if isinstance(env, (list, tuple)) else [env] * len(commands)
        assert len(envs) == len(commands), "one environment per command"
        with ThreadPoolExecutor(max_workers=2) as pool:
            return list(pool.map(lambda args, extra: run_pdeb(*args, env=extra), commands, envs))

    return run


@pytest.fixture
def fresh_home(tmp_path, monkeypatch) -> Path:
    """A pdeb home for one test (empty results store)."""
    monkeypatch.setenv("PDEB_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


#: The run the leaderboard and report tests read: an FNO smoke run on ns2d.
SMOKE_RUN = "fno-smoke-results"


@pytest.fixture(scope="session")
def smoke_run_home(tmp_path_factory) -> Path:
    """A pdeb home holding the FNO smoke run, made once per session for every test that reads it."""
    home = tmp_path_factory.mktemp("smoke-run-home")
    run_pdeb("run", "--model", "fno", "--data", "ns2d", "--profile", "smoke", "--quiet", "--run-id", SMOKE_RUN,
             "--device", "cpu", env={"PDEB_HOME": str(home)}, check=True)
    return home


@pytest.fixture
def smoke_home(smoke_run_home, tmp_path, monkeypatch) -> Path:
    """A private copy of the smoke run's home for one test: what a test adds, no other test sees."""
    import shutil

    home = tmp_path / "home"
    shutil.copytree(smoke_run_home, home)
    monkeypatch.setenv("PDEB_HOME", str(home))
    return home


def write_fake_distribution(root: Path, dist: str, entry_points: dict[str, str], modules: dict[str, str]) -> Path:
    """Make an installed-looking distribution (dist-info + modules) under ``root``.

    ``importlib.metadata`` finds it once ``root`` is on ``PYTHONPATH``, exactly as it
    finds a pip-installed plugin.
    """
    root.mkdir(parents=True, exist_ok=True)
    info = root / f"{dist.replace('-', '_')}-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.2.3\n")
    lines = ["[pdeb]"] + [f"{name} = {target}" for name, target in entry_points.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    for name, source in modules.items():  # "pkg/module" makes a package's module
        (root / f"{name}.py").parent.mkdir(parents=True, exist_ok=True)
        (root / f"{name}.py").write_text(source)
    return root


@pytest.fixture
def fake_distribution():
    """See :func:`write_fake_distribution`."""
    return write_fake_distribution


@pytest.fixture
def served_folder(tmp_path):
    """An empty folder ``tmp_path/www`` served over HTTP on 127.0.0.1
    (:func:`pdebench_core.testing.http.serve_folder`); ``.root`` is the folder, ``.url`` its address."""
    from pdebench_core.testing.http import serve_folder

    root = tmp_path / "www"
    root.mkdir()
    server = serve_folder(root)
    yield server
    server.close()

"""The source tree of an earlier release, to run its nodes beside the working tree's.

:func:`materialise` extracts the ``vvstore`` package as it was at a commit (``git archive``)
into a directory and returns that directory: the one to put first on a node's ``PYTHONPATH``
(``ServerProcess(..., pythonpath=)``, ``Cluster(..., releases=)``), so that the node imports
the release instead of the installed package. The mixed-version tests run a cluster of old and
new nodes this way.

Nothing here changes the repository (no checkout, no worktree, no index): git only reads it.
A release that cannot be had here (git missing, not a repository, a commit outside the history,
as in a shallow clone) is :class:`ReleaseUnavailable`, whose message names what is missing.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import tarfile
from pathlib import Path

__all__ = ["PACKAGE", "ReleaseUnavailable", "materialise", "resolve_commit"]

#: The package extracted from the commit (its top-level directory in the repository).
PACKAGE = "vvstore"
GIT_TIMEOUT_S = 60.0


class ReleaseUnavailable(RuntimeError):
    """A release's source cannot be extracted here; the message says what is missing."""


def _git(repo: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    git = shutil.which("git")
    if git is None:
        raise ReleaseUnavailable("git is not installed (no 'git' on PATH)")
    return subprocess.run(
        [git, "-C", str(repo), *args],
        capture_output=True,
        stdin=subprocess.DEVNULL,
        timeout=GIT_TIMEOUT_S,
        check=False,
    )


def _stderr(done: subprocess.CompletedProcess[bytes]) -> str:
    return done.stderr.decode(errors="replace").strip()


def resolve_commit(repo: Path, commit: str) -> str:
    """The full hash of ``commit`` (a hash, a prefix of one, a tag...) in ``repo``'s history.

    :raises ReleaseUnavailable: git is missing, ``repo`` is not a git repository, or the commit
        is not in its history (the message says when the clone is shallow).
    """
    done = _git(repo, "rev-parse", "--git-dir")
    if done.returncode != 0:
        raise ReleaseUnavailable(f"{repo} is not a git repository: {_stderr(done)}")
    if commit.startswith("-"):
        raise ValueError(f"not a commit name: {commit!r}")
    done = _git(repo, "rev-parse", "--verify", "--quiet", f"{commit}^{{commit}}")
    if done.returncode == 0:
        return done.stdout.decode().strip()
    shallow = _git(repo, "rev-parse", "--is-shallow-repository")
    hint = ""
    if shallow.returncode == 0 and shallow.stdout.decode().strip() == "true":
        hint = " (the clone is shallow: fetch its full history, e.g. git fetch --unshallow)"
    raise ReleaseUnavailable(f"commit {commit} is not in the history of {repo}{hint}")


def materialise(repo: Path, commit: str, destination: Path) -> Path:
    """Extract the ``vvstore`` package of ``commit`` into ``destination``; its resolved path.

    ``destination`` is created if need be and must not hold a ``vvstore`` directory already.
    The returned directory holds ``vvstore/`` as the commit has it, and nothing else: put it
    first on ``PYTHONPATH`` to import that release.

    :raises ReleaseUnavailable: git is missing, ``repo`` is not a git repository, the commit is
        not in its history, or the commit has no ``vvstore`` package.
    :raises FileExistsError: ``destination`` already holds a ``vvstore`` directory.
    """
    sha = resolve_commit(repo, commit)
    target = destination / PACKAGE
    if target.exists():
        raise FileExistsError(f"{target} already exists")
    done = _git(repo, "archive", "--format=tar", sha, "--", PACKAGE)
    if done.returncode != 0:
        raise ReleaseUnavailable(
            f"commit {commit} ({sha}) has no {PACKAGE} package to extract: {_stderr(done)}"
        )
    destination.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(done.stdout), mode="r:") as archive:
        if hasattr(tarfile, "data_filter"):  # Python 3.11.4 and later
            archive.extractall(destination, filter="data")
        else:  # pragma: no cover - git archive writes plain files and directories only
            archive.extractall(destination)
    if not (target / "__init__.py").is_file():
        raise ReleaseUnavailable(f"commit {commit} ({sha}) has no {PACKAGE}/__init__.py")
    return destination.resolve()

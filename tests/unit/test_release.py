"""vvstore.harness.release: a commit's ``vvstore`` package extracted with git, and a clear
ReleaseUnavailable when git, the repository or the commit is missing (a shallow clone says so).

Each test builds a small repository of its own, whose package changes between two commits.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from vvstore.harness.release import ReleaseUnavailable, materialise, resolve_commit

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")

GIT_CONFIG = (
    "-c",
    "user.name=test",
    "-c",
    "user.email=test@example.invalid",
    "-c",
    "commit.gpgsign=false",
)


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), *GIT_CONFIG, *args],
        capture_output=True,
        check=True,
        stdin=subprocess.DEVNULL,
    )
    return done.stdout.decode().strip()


@pytest.fixture
def repo(tmp_path: Path) -> tuple[Path, str, str]:
    """A repository with a vvstore package (``RELEASE = 1``, then ``2``) and a README; the
    repository and both commits."""
    root = tmp_path / "repo"
    (root / "vvstore" / "sub").mkdir(parents=True)
    git(root, "init", "--quiet")
    (root / "README.md").write_text("not part of the package\n")
    (root / "vvstore" / "sub" / "__init__.py").write_text("")
    (root / "vvstore" / "__init__.py").write_text("RELEASE = 1\n")
    git(root, "add", ".")
    git(root, "commit", "--quiet", "-m", "one")
    first = git(root, "rev-parse", "HEAD")
    (root / "vvstore" / "__init__.py").write_text("RELEASE = 2\n")
    git(root, "commit", "--quiet", "-am", "two")
    return root, first, git(root, "rev-parse", "HEAD")


def test_the_package_is_extracted_as_the_commit_has_it(
    repo: tuple[Path, str, str], tmp_path: Path
) -> None:
    root, first, _ = repo
    tree = materialise(root, first[:7], tmp_path / "release")
    assert tree == (tmp_path / "release").resolve()
    assert sorted(p.name for p in tree.iterdir()) == ["vvstore"]  # the package, nothing else
    assert (tree / "vvstore" / "__init__.py").read_text() == "RELEASE = 1\n"
    assert (tree / "vvstore" / "sub" / "__init__.py").is_file()
    assert git(root, "status", "--porcelain") == ""  # the repository is left as it was


def test_a_commit_resolves_to_its_full_hash(repo: tuple[Path, str, str]) -> None:
    root, first, second = repo
    assert resolve_commit(root, first[:7]) == first
    assert resolve_commit(root, "HEAD") == second


def test_a_commit_outside_the_history_is_unavailable(
    repo: tuple[Path, str, str], tmp_path: Path
) -> None:
    root, _, _ = repo
    with pytest.raises(ReleaseUnavailable, match=r"^commit 0123456 is not in the history of "):
        materialise(root, "0123456", tmp_path / "release")
    assert not (tmp_path / "release").exists()


def test_a_shallow_clone_says_it_is_shallow(repo: tuple[Path, str, str], tmp_path: Path) -> None:
    root, first, _ = repo
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "--quiet", "--depth", "1", root.as_uri(), str(clone))
    with pytest.raises(
        ReleaseUnavailable, match=r"not in the history of .*\(the clone is shallow: "
    ):
        materialise(clone, first, tmp_path / "release")


def test_a_directory_outside_any_repository_is_unavailable(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(ReleaseUnavailable, match=r"is not a git repository"):
        materialise(plain, "HEAD", tmp_path / "release")


def test_without_git_the_release_is_unavailable(
    repo: tuple[Path, str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, first, _ = repo
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(ReleaseUnavailable, match=r"^git is not installed"):
        materialise(root, first, tmp_path / "release")


def test_a_destination_that_holds_a_package_is_refused(
    repo: tuple[Path, str, str], tmp_path: Path
) -> None:
    root, first, _ = repo
    (tmp_path / "release" / "vvstore").mkdir(parents=True)
    with pytest.raises(FileExistsError):
        materialise(root, first, tmp_path / "release")

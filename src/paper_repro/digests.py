"""What a job's result depends on in the library, as digests of meaning rather than of bytes.

A Python module's digest is that of its AST with docstrings removed (comments are never in the AST), so
a comment, a docstring or a reformatting changes nothing; any other file's digest is its SHA-256. The
workflow passes each job its *code map*, ``{library file: digest}``, as a param: Snakemake reruns a job
when a param changes, so editing a module's code reruns exactly the jobs that list it, and a comment edit
or a ``touch`` reruns nothing. The same map goes into the job's provenance, and ``evidence`` compares it
with the current checkout to tell fresh evidence from stale.

Which files a job lists is derived, not written by hand: ``closure`` follows the ``import`` statements of a
script and of the modules it loads by name, through the library (``paper_repro``), wherever in a file they
sit (a function-level import counts).

Only the standard library: the Snakefile imports this module.
"""

from __future__ import annotations

import ast
import hashlib
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return tree


@lru_cache(maxsize=1024)
def _digest(path: Path, mtime_ns: int, size: int) -> str:
    if path.suffix != ".py":
        return hashlib.sha256(path.read_bytes()).hexdigest()
    tree = _strip_docstrings(ast.parse(path.read_text(), str(path)))
    return hashlib.sha256(ast.dump(tree, annotate_fields=False).encode()).hexdigest()


def source_digest(path: str | Path) -> str:
    """A module's meaning: its AST without docstrings (comments are not in the AST); other files' bytes.
    Each file is read once per version (cached on its path, mtime and size)."""
    path = Path(path).resolve()
    stat = path.stat()
    return _digest(path, stat.st_mtime_ns, stat.st_size)


def code_map(paths: Iterable[str], root: Path) -> dict[str, str]:
    """``{path: digest}`` of the files ``paths`` (relative to ``root``), sorted: a job's code param."""
    return {rel: source_digest(Path(root) / rel) for rel in sorted(set(map(str, paths)))}


def code_digest(paths: Iterable[str], root: Path) -> str:
    """One digest of the files ``paths`` (relative to ``root``): of their names and their digests."""
    return digest_of_map(code_map(paths, root))


def digest_of_map(code: dict[str, str]) -> str:
    """One digest of a code map (its names and digests, in sorted order)."""
    h = hashlib.sha256()
    for rel in sorted(code):
        h.update(f"{rel}\0{code[rel]}\0".encode())
    return h.hexdigest()


@lru_cache(maxsize=1024)
def _tree(path: Path, mtime_ns: int, size: int) -> ast.Module:
    """A module's AST, parsed once per version (the workflow asks for each file for every job it plans);
    callers never change it."""
    return ast.parse(path.read_text(), str(path))


def has_code(path: Path) -> bool:
    """Whether a module holds any code: a package marker (empty, or a docstring) holds none."""
    path = Path(path).resolve()
    stat = path.stat()
    body = _tree(path, stat.st_mtime_ns, stat.st_size).body
    return any(not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)) for node in body)


def module_file(dotted: str, lib: Path) -> Path | None:
    """``'paper_repro.algos.mier'`` -> ``lib/algos/mier.py`` (a package -> its ``__init__.py``), where ``lib``
    is the ``paper_repro`` folder; None for a name that is not one of its modules (a function, a class)."""
    top, *parts = dotted.split(".")
    if top != lib.name:
        return None
    for candidate in (lib.joinpath(*parts).with_suffix(".py") if parts else None, lib.joinpath(*parts, "__init__.py")):
        if candidate is not None and candidate.is_file():
            return candidate
    return None


def imports(path: Path, package: str, lib: Path) -> set[str]:
    """The library modules that the file ``path`` (of the dotted ``package``; "" for a script) imports:
    ``import paper_repro.x``, ``from paper_repro.x import y`` (x, and y where y is a module) and relative
    imports."""
    path = Path(path).resolve()
    stat = path.stat()
    return set(_imports(path, stat.st_mtime_ns, stat.st_size, package, Path(lib)))


@lru_cache(maxsize=4096)
def _imports(path: Path, mtime_ns: int, size: int, package: str, lib: Path) -> frozenset[str]:
    """imports(), computed once per version of the file (the workflow asks for it for every job it plans)."""
    found = set()
    for node in ast.walk(_tree(path, mtime_ns, size)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against the file's package
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            found |= {base} | {f"{base}.{alias.name}" for alias in node.names}
    return frozenset(name for name in found if module_file(name, lib))


def closure(modules: Iterable[str], lib: Path, skip: Iterable[Path] = ()) -> set[Path]:
    """The library files that importing ``modules`` (dotted names) runs: each module, the packages above it
    and, recursively, what they import; files in ``skip`` are neither listed nor followed."""
    skip, seen, todo = set(skip), set(), list(modules)
    while todo:
        name = todo.pop()
        path = module_file(name, lib)
        if path is None or path in seen or path in skip:
            continue
        seen.add(path)
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        todo += imports(path, package, lib)
        if "." in name:  # importing a.b runs a/__init__.py first
            todo.append(name.rsplit(".", 1)[0])
    return seen

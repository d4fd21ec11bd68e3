"""The production image and compose file stay consistent with the code they deploy.

No Docker engine runs here, so the image is checked the way Docker would build it: the build
context is the tree minus `.dockerignore` (Docker's own pattern rules), the Dockerfile's COPY
instructions lay it out, and setuptools builds from that layout what `pip install .` installs.
What must be there is derived from `pyproject.toml`, never listed by hand. The compose file is
read with compose's interpolation rules (`${VAR:-default}`, `${VAR:?message}`).
"""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from config import load_settings

ROOT = Path(__file__).parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
COMPOSE_RAW: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
PYPROJECT: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text())
PASSWORDS = {"APP_DB_PASSWORD": "app-0c5e1f", "TEMPORAL_DB_PASSWORD": "tmp-9a7d2b"}
SKIPPED_DIRS = {".git", ".venv", ".backorder", "node_modules"}
"""Never walked when listing the tree (huge, and .dockerignore must exclude them anyway)."""


# --- compose's interpolation ---------------------------------------------------------------

_VAR = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<name>[A-Za-z_]\w*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
    r"|(?P<bare>[A-Za-z_]\w*))"
)


class MissingVariables(Exception):
    def __init__(self, names: set[str]):
        super().__init__(", ".join(sorted(names)))
        self.names = names


def interpolate(value: Any, env: Mapping[str, str], missing: set[str] | None = None) -> Any:
    """Compose's substitution in every string value (keys are left alone, as compose does):
    `${VAR:-d}` / `${VAR-d}` give d when VAR is unset (`:-` also when empty), `${VAR:?m}` /
    `${VAR?m}` are errors when VAR is unset (`:?` also when empty), `$$` is a literal `$`.
    Raises MissingVariables naming every required variable that has no value."""
    top = missing is None
    missing = set() if missing is None else missing

    def one(m: re.Match[str]) -> str:
        if m["escaped"]:
            return "$"
        name = m["name"] or m["bare"]
        op, arg = m["op"] or "", m["arg"] or ""
        have = env.get(name)
        unset = have is None or (op.startswith(":") and have == "")
        if op.endswith("-") and unset:
            return arg
        if op.endswith("?") and unset:
            missing.add(name)
            return ""
        return have or ""

    if isinstance(value, str):
        out: Any = _VAR.sub(one, value)
    elif isinstance(value, dict):
        out = {k: interpolate(v, env, missing) for k, v in value.items()}
    elif isinstance(value, list):
        out = [interpolate(v, env, missing) for v in value]
    else:
        out = value
    if top and missing:
        raise MissingVariables(missing)
    return out


def compose(env: Mapping[str, str]) -> dict[str, Any]:
    """The compose file as `docker compose up` sees it with `env` set (and nothing else)."""
    resolved: dict[str, Any] = interpolate(COMPOSE_RAW, env)
    return resolved


def references(value: Any) -> Iterable[re.Match[str]]:
    """Every `${...}` / `$VAR` reference in the compose file's values."""
    if isinstance(value, str):
        yield from (m for m in _VAR.finditer(value) if not m["escaped"])
    elif isinstance(value, dict):
        for v in value.values():
            yield from references(v)
    elif isinstance(value, list):
        for v in value:
            yield from references(v)


def test_the_stack_has_the_documented_services() -> None:
    assert set(COMPOSE_RAW["services"]) == {
        "temporal-postgresql", "temporal-schema", "temporal", "temporal-ui",
        "app-postgresql", "backorder-setup", "payments-sandbox", "backorder-worker",
    }  # fmt: skip


def test_compose_refuses_to_start_without_the_database_passwords() -> None:
    with pytest.raises(MissingVariables) as refused:
        compose({})
    assert refused.value.names == set(PASSWORDS)
    for name in PASSWORDS:  # each alone is not enough either, nor an empty value
        with pytest.raises(MissingVariables) as still:
            compose({**PASSWORDS, name: ""})
        assert still.value.names == {name}
    compose(PASSWORDS)  # and with both, nothing else is required


def test_no_secret_has_a_default_and_the_header_says_what_to_set() -> None:
    secret = re.compile(r"PASSWORD|PWD|SECRET|API_KEY|TOKEN", re.I)
    refs = list(references(COMPOSE_RAW))
    assert refs, "the compose file uses no variables at all?"
    for ref in refs:
        name = ref["name"] or ref["bare"]
        if secret.search(name):
            assert ref["op"] == ":?", f"{ref[0]}: a secret must be required (${{{name}:?...}})"
    for service, spec in COMPOSE_RAW["services"].items():
        for key, value in dict(spec.get("environment") or {}).items():
            if secret.search(key):  # set only from a required variable, never a literal
                assert re.fullmatch(r"\$\{\w+:\?[^}]*\}", str(value)), (service, key, value)
            assert not re.search(r"://[^/@\s]+:[^/@\s]+@", str(value)), (service, key, value)
    header = COMPOSE_FILE.read_text().split("\nname:", 1)[0]
    for name in PASSWORDS:
        assert name in header, f"the header comment must tell the operator to set {name}"


def published(spec: Any) -> tuple[str, str, str]:
    """(host address, host port, container port) of one `ports` entry; an entry without an
    address publishes on every interface, one without a host port on a random port."""
    if isinstance(spec, dict):
        return (
            str(spec.get("host_ip", "0.0.0.0")),
            str(spec.get("published", "")),
            str(spec["target"]),
        )
    text = str(spec).split("/")[0]
    ip, host_port, container = "0.0.0.0", "", text
    if text.startswith("["):  # [::1]:8080:8080
        ip, rest = text[1:].split("]:", 1)
        host_port, container = rest.split(":", 1)
    elif text.count(":") == 2:
        ip, host_port, container = text.split(":")
    elif text.count(":") == 1:
        host_port, container = text.split(":")
    return ip, host_port, container


def test_only_the_web_ui_is_published_and_on_loopback_by_default() -> None:
    stack = compose(PASSWORDS)
    exposed = {
        name: [published(p) for p in spec.get("ports", [])]
        for name, spec in stack["services"].items()
        if spec.get("ports")
    }
    assert exposed == {"temporal-ui": [("127.0.0.1", "8080", "8080")]}
    for name, spec in stack["services"].items():
        assert spec.get("network_mode") != "host", name  # that would publish every port
    # the operator may move it, on purpose
    moved = compose({**PASSWORDS, "TEMPORAL_UI_PUBLISH": "10.0.0.5:9090"})
    assert [published(p) for p in moved["services"]["temporal-ui"]["ports"]] == [
        ("10.0.0.5", "9090", "8080")
    ]


@pytest.mark.parametrize("service", ["backorder-setup", "payments-sandbox", "backorder-worker"])
def test_worker_environment_is_valid_production_settings(
    service: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    stack = compose(PASSWORDS)
    monkeypatch.chdir(tmp_path)
    env = {k: str(v) for k, v in stack["services"][service]["environment"].items()}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = load_settings()
    assert not settings.embedded_temporal and not settings.embedded_database
    assert settings.temporal_address == "temporal:7233"
    assert settings.database.dsn.get_secret_value() == (
        "postgresql://backorder@app-postgresql:5432/backorder"
    )
    assert settings.sandbox_url == "http://payments-sandbox:8470"  # the worker may start
    # libpq takes the password from PGPASSWORD: the one the application database was made with
    app_db = stack["services"]["app-postgresql"]["environment"]
    assert env["PGPASSWORD"] == app_db["POSTGRES_PASSWORD"] == PASSWORDS["APP_DB_PASSWORD"]


def test_temporal_gets_the_password_its_database_was_made_with() -> None:
    services = compose(PASSWORDS)["services"]
    assert {
        services["temporal-postgresql"]["environment"]["POSTGRES_PASSWORD"],
        services["temporal-schema"]["environment"]["SQL_PASSWORD"],
        services["temporal"]["environment"]["POSTGRES_PWD"],
    } == {PASSWORDS["TEMPORAL_DB_PASSWORD"]}


def test_the_sandbox_service_runs_a_command_the_cli_has() -> None:
    import starter

    entry = COMPOSE_RAW["services"]["payments-sandbox"]["entrypoint"]
    assert entry[0] == "backorder"
    parsed = starter.parse(entry[1:])
    assert callable(parsed.handler) and (parsed.args.host, parsed.args.port) == ("0.0.0.0", 8470)


def test_setup_runs_commands_the_cli_has() -> None:
    import starter

    entry = " ".join(COMPOSE_RAW["services"]["backorder-setup"]["entrypoint"])
    for command in re.findall(r"backorder ([a-z]+ [a-z]+)", entry):
        assert callable(starter.parse(command.split()).handler), command


def test_temporal_schema_script_and_dynamic_config_exist() -> None:
    assert (ROOT / "deploy/temporal/setup-postgres.sh").stat().st_mode & 0o111
    dyn = COMPOSE_RAW["services"]["temporal"]["environment"]["DYNAMIC_CONFIG_FILE_PATH"]
    assert (ROOT / "deploy/temporal/dynamicconfig" / Path(dyn).name).is_file()


# --- what the project installs, from pyproject.toml ----------------------------------------


def tree_files(root: Path = ROOT) -> set[str]:
    """Every file of the working tree, relative, POSIX."""
    found: set[str] = set()
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if d not in SKIPPED_DIRS and d != "__pycache__"]
        rel = Path(folder).relative_to(root)
        found |= {(rel / name).as_posix() for name in names}
    return found


def glob_match(path: str, pattern: str) -> bool:
    """A glob as Go's filepath.Match and Python's glob read it: `*`, `?` and `[...]` never
    cross a `/` (fnmatch alone would let `db/*.sql` take `db/x/y.sql`)."""
    parts, wanted = path.split("/"), pattern.split("/")
    return len(parts) == len(wanted) and all(map(fnmatch.fnmatchcase, parts, wanted))


def find_packages(where: Path, include: list[str], exclude: list[str]) -> list[str]:
    """setuptools' `find_namespace_packages` (what `packages.find` does in pyproject.toml,
    namespaces being on by default): every directory below `where` is a package, and those
    whose dotted name matches an include pattern and no exclude pattern are installed."""
    found = []
    for folder, dirs, _ in os.walk(where):
        dirs[:] = sorted(
            d for d in dirs if d not in SKIPPED_DIRS and d != "__pycache__" and "." not in d
        )
        for d in dirs:
            name = (Path(folder) / d).relative_to(where).as_posix().replace("/", ".")
            matches = (fnmatch.fnmatchcase(name, pattern) for pattern in include)
            if any(matches) and not any(fnmatch.fnmatchcase(name, x) for x in exclude):
                found.append(name)
    return found


def installed_sources() -> set[str]:
    """The files `pip install .` reads: the build's own inputs, every module of every package
    `[tool.setuptools.packages.find]` finds (namespaces on, as setuptools does for
    pyproject.toml), the py-modules, and each package's package-data."""
    tool = PYPROJECT["tool"]["setuptools"]
    find = tool.get("packages", {}).get("find", {})
    assert isinstance(find, dict) and find, "pyproject.toml lists packages another way now"
    packages = find_packages(
        ROOT / find.get("where", ["."])[0], find.get("include", ["*"]), find.get("exclude", [])
    )
    assert {"payments", "notifications", "cli", "workflows"} <= set(packages), packages
    needed = {"pyproject.toml", PYPROJECT["project"]["readme"]}
    needed |= {f"{m.replace('.', '/')}.py" for m in tool.get("py-modules", [])}
    files = tree_files()
    for package in packages:
        folder = package.replace(".", "/")
        globs = ["*.py", *tool.get("package-data", {}).get(package, [])]
        globs += tool.get("package-data", {}).get("*", [])
        for pattern in globs:
            matched = {f for f in files if glob_match(f, f"{folder}/{pattern}")}
            if pattern != "*.py":
                assert matched, f"package-data {package}: {pattern} matches no file"
            needed |= matched
    return needed


# --- Docker: .dockerignore and the Dockerfile -----------------------------------------------


@dataclass(frozen=True)
class IgnoreRule:
    regex: re.Pattern[str]
    exclude: bool
    text: str


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """moby/patternmatcher's translation: `**` any number of directories (even none), `*`
    and `?` within one path element, `[...]` a class, `\\` escapes."""
    out, i = "^", 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "*":
            if pattern[i + 1 : i + 2] == "*":
                i += 1
                if pattern[i + 1 : i + 2] == "/":
                    i += 1
                out += ".*" if i + 1 == len(pattern) else "(.*/)?"
            else:
                out += "[^/]*"
        elif ch == "?":
            out += "[^/]"
        elif ch == "\\" and i + 1 < len(pattern):
            i += 1
            out += re.escape(pattern[i])
        elif ch == "[":
            end = pattern.find("]", i + 1)
            out += pattern[i : end + 1] if end > 0 else re.escape(ch)
            i = end if end > 0 else i
        else:
            out += re.escape(ch)
        i += 1
    return re.compile(out + "$")


def dockerignore_rules(text: str) -> list[IgnoreRule]:
    rules = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        exclude = not line.startswith("!")
        pattern = line.lstrip("!").strip()
        cleaned = PurePosixPath(pattern.lstrip("/")).as_posix()
        rules.append(IgnoreRule(_pattern_regex(cleaned), exclude, line))
    return rules


def ignored_by(rules: list[IgnoreRule], path: str) -> IgnoreRule | None:
    """The rule that keeps `path` out of the build context, if any: the last rule matching
    the path or one of its parent directories decides, as Docker does."""
    parts = path.split("/")
    candidates = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    decided: IgnoreRule | None = None
    for rule in rules:
        if any(rule.regex.match(c) for c in candidates):
            decided = rule if rule.exclude else None
    return decided


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        whole = (pending + line).strip()
        pending = ""
        keyword, _, args = whole.partition(" ")
        out.append((keyword.upper(), args.strip()))
    return out


@dataclass
class Image:
    files: dict[str, str]
    """Path in the image -> path in the build context it came from."""
    install_dir: str
    """The WORKDIR in which `pip install .` runs."""


def build_image(context: set[str], dockerfile: str) -> Image:
    """Lay out the image's files as the Dockerfile's COPY instructions do, up to the
    `pip install .`. Only the forms this Dockerfile may use are understood; anything else
    fails, so the test never silently checks less than the file does."""
    workdir = "/"
    files: dict[str, str] = {}
    for keyword, args in dockerfile_instructions(dockerfile):
        if keyword == "WORKDIR":
            workdir = str(PurePosixPath(workdir) / args)
        elif keyword in ("COPY", "ADD"):
            words = args.split()
            flags = [w for w in words if w.startswith("--")]
            assert all(f.split("=")[0] in ("--chown", "--chmod", "--link") for f in flags), (
                f"unsupported {keyword} flags: {flags} (no --from: the packages must come "
                "from the build context)"
            )
            *sources, dest = [w for w in words if not w.startswith("--")]
            assert not args.startswith("["), "JSON-form COPY is not understood here"
            target = PurePosixPath(workdir) / dest
            for source in sources:
                src = PurePosixPath(source).as_posix().lstrip("/")
                src = "" if src == "." else src
                for path in sorted(context):
                    if src and not (
                        glob_match(path, src) or path.startswith(src.rstrip("/") + "/")
                    ):
                        continue
                    if src and glob_match(path, src):  # a file: lands in/at dest
                        into = (
                            dest.endswith("/") or len(sources) > 1 or any(ch in src for ch in "*?[")
                        )
                        at = target / PurePosixPath(path).name if into else target
                    else:  # a directory: its contents land in dest
                        base = path[len(src) + 1 :] if src else path
                        at = target / base
                    files[str(at)] = path
        elif keyword == "RUN" and re.search(r"\bpip install\s+(\S+\s+)*\.(\s|$)", args):
            return Image(files, workdir)
    raise AssertionError("the Dockerfile never runs `pip install .`")


DOCKERIGNORE = dockerignore_rules((ROOT / ".dockerignore").read_text())
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def context_files() -> set[str]:
    return {f for f in tree_files() if ignored_by(DOCKERIGNORE, f) is None}


def test_the_image_gets_every_file_pip_install_needs() -> None:
    needed = installed_sources()
    assert {"payments/sandbox.py", "cli/payments.py", "worker.py"} <= needed
    assert "notifications/templates/shipped.txt" in needed
    dropped = {f: rule.text for f in needed if (rule := ignored_by(DOCKERIGNORE, f))}
    assert not dropped, f".dockerignore leaves out files the project installs: {dropped}"
    image = build_image(context_files(), DOCKERFILE)
    at = PurePosixPath(image.install_dir)
    missing = sorted(f for f in needed if image.files.get(str(at / f)) != f)
    assert not missing, f"the Dockerfile does not copy these into {at}: {missing}"


def test_the_image_keeps_out_the_tree_s_state_tests_and_secrets() -> None:
    # what may be lying around in a developer's clone when they run `docker compose build`
    local = {
        ".venv/bin/python", ".backorder/pg/PG_VERSION", ".backorder/temporal.db", ".git/HEAD",
        ".env", ".env.production", "tests/conftest.py", "bench/planner.py",
        "config/__pycache__/settings.cpython-312.pyc", "backorder.egg-info/PKG-INFO",
        ".pytest_cache/v/cache/nodeids", ".mypy_cache/3.11/x.json", "build/lib/worker.py",
    }  # fmt: skip
    context = {f for f in tree_files() | local if ignored_by(DOCKERIGNORE, f) is None}
    image = build_image(context, DOCKERFILE)
    leaked = sorted(set(image.files.values()) & local)
    assert not leaked, f"these would be in the image: {leaked}"


def test_what_the_image_installs_is_every_package_and_module(tmp_path: Path) -> None:
    """setuptools, run on the image's files (not the tree), builds every package and module
    the tree has: what `RUN pip install .` in the image installs."""
    pytest.importorskip("setuptools", reason="the build backend pyproject.toml names")
    image = build_image(context_files(), DOCKERFILE)
    app = tmp_path / "image"
    for inside, source in image.files.items():
        rel = PurePosixPath(inside).relative_to(image.install_dir)
        (app / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ROOT / source, app / rel)
    built = tmp_path / "site-packages"
    done = subprocess.run(
        [sys.executable, "-c", "from setuptools import setup; setup()", "-q", "build_py",
         "--build-lib", str(built)],
        cwd=app, capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    installed = {p.relative_to(built).as_posix() for p in built.rglob("*") if p.is_file()}
    assert installed_sources() - {"pyproject.toml", "README.md"} <= installed, sorted(
        installed_sources() - installed
    )
    # and a fresh interpreter imports the console scripts' modules and every package from what
    # was built, not from the tree (this venv's editable install points at the tree)
    modules = [ep.split(":")[0] for ep in PYPROJECT["project"]["scripts"].values()]
    modules += sorted({f.split("/")[0] for f in installed if f.endswith("/__init__.py")})
    probe = subprocess.run(
        [sys.executable, "-I", "-c", PROBE, str(built), *modules],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.split() == modules


PROBE = """
import importlib, sys
from pathlib import Path
built = Path(sys.argv[1]).resolve()
sys.path.insert(0, str(built))
for name in sys.argv[2:]:
    module = importlib.import_module(name)
    assert Path(module.__file__).resolve().is_relative_to(built), (name, module.__file__)
    print(name)
"""


def test_the_image_compiles_its_bytecode_when_it_is_built() -> None:
    """At run time the service user cannot write site-packages, and the workflow sandbox
    imports the workflow modules again for every workflow: without .pyc files made at build
    time every import compiles from source."""
    steps = dockerfile_instructions(DOCKERFILE)
    install = next(i for i, (kw, args) in enumerate(steps) if kw == "RUN" and "pip install" in args)
    compiled = " ".join(args for kw, args in steps[install:] if kw == "RUN")
    assert re.search(r"python -m compileall\b.*purelib", compiled), compiled
    # nothing stops the compilation either: PYTHONDONTWRITEBYTECODE is not set while building
    build_env = " ".join(args for kw, args in steps[: install + 1] if kw in ("ENV", "ARG"))
    assert "PYTHONDONTWRITEBYTECODE" not in build_env

"""The service images: each service's Containerfile, and the image names compose, the Kubernetes
manifests and deploy/README.md use. Docker cannot run here, so the Containerfiles are read."""

from __future__ import annotations

import json
import re
import shlex

import pytest

from ptsp_gate.runtime.registry import installed
from tests.unit.deploy_files import (
    DEPLOY,
    K8S,
    KAFKA_SERVICES,
    MIGRATE_IMAGE_SERVICE,
    ROOT,
    SERVICES,
    by_kind,
    compose,
    container,
    containerfile,
    containerfile_uid,
    image_name,
    load,
    workloads,
)

IMAGE_USER = 10001
LOCK = "requirements/production.lock"
BUILD_LOCK = "requirements/build.lock"


def _instructions(service: str) -> list[tuple[str, str]]:
    """The Containerfile's instructions, continuation lines joined, as (keyword, arguments)."""
    text = containerfile(service).read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    keyword_and_arguments = (line.split(None, 1) for line in joined.splitlines())
    return [(keyword.upper(), arguments) for keyword, arguments in keyword_and_arguments]


# Every way a RUN instruction can call pip.
PIP = re.compile(r"(?:pip3?(?:\.\d+)?|python3?(?:\.\d+)? -m pip)")
# pip options whose value is the next word, when not written as --option=value.
PIP_OPTION_VALUES = {"-r", "--requirement", "-c", "--constraint", "--prefix", "--target", "-t"}
PIP_OPTION_VALUES |= {"--root", "--wheel-dir", "-w", "--index-url", "-i", "--find-links", "-f"}


def _commands(service: str, tool: str) -> list[list[str]]:
    """Each `pip <tool>` command the image's RUN instructions run, as its arguments."""
    commands = []
    for keyword, arguments in _instructions(service):
        if keyword == "RUN":
            for command in re.split(r"&&|;|\|\|", arguments):
                words = shlex.split(command)
                for length in (1, 3):
                    if PIP.fullmatch(" ".join(words[:length])) and words[length:][:1] == [tool]:
                        commands.append(words[length + 1 :])
    return commands


def _targets(arguments: list[str]) -> list[str]:
    """What a pip command names to install or build, besides its requirement files."""
    targets: list[str] = []
    words = iter(arguments)
    for word in words:
        if word in PIP_OPTION_VALUES:
            next(words, None)
        elif not word.startswith("-"):
            targets.append(word)
    return targets


def _json_instruction(service: str, keyword: str) -> list[str]:
    (arguments,) = [a for k, a in _instructions(service) if k == keyword]
    value: list[str] = json.loads(arguments)
    return value


@pytest.fixture(params=sorted(SERVICES))
def service(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


def test_each_service_folder_holds_its_image_definition() -> None:
    for name in SERVICES:
        assert containerfile(name).is_file(), name
    assert not (DEPLOY / "Containerfile").exists()


def test_every_installed_service_is_deployed_on_its_default_port() -> None:
    # A service package added without an image, a compose service and manifests fails here.
    entries = installed()
    assert {name: entry.default_port for name, entry in entries.items()} == SERVICES
    assert {name for name, entry in entries.items() if entry.kind == "consumer"} == set(
        KAFKA_SERVICES
    )


def test_the_image_installs_the_production_lock_with_hashes_and_no_dependencies(
    service: str,
) -> None:
    installs = _commands(service, "install")
    assert installs
    for arguments in installs:
        assert "--no-deps" in arguments, arguments
        if "-r" in arguments:
            assert "--require-hashes" in arguments, arguments
            assert arguments[arguments.index("-r") + 1] in {LOCK, BUILD_LOCK}, arguments
            # The lock alone: a package named beside it would come unhashed from the index.
            assert _targets(arguments) == [], arguments
        else:
            # Otherwise only the wheels built here, never a package by name from an index.
            assert _targets(arguments) == ["/wheels/*.whl"], arguments
        assert not {"--requirement", "-c", "--constraint"} & set(arguments), arguments
    into_image = [a for a in installs if "--prefix=/install" in a]
    assert [a for a in into_image if "-r" in a] == [
        ["--no-cache-dir", "--prefix=/install", "--require-hashes", "--no-deps", "-r", LOCK]
    ]
    # Then only wheels built here, of the core and this service.
    (wheels,) = [a for a in into_image if "-r" not in a]
    assert wheels[-1] == "/wheels/*.whl"


def test_the_image_builds_only_the_core_and_its_own_service_without_dependencies(
    service: str,
) -> None:
    own = f"./services/{service.replace('-', '_')}"
    (build,) = _commands(service, "wheel")
    assert "--no-deps" in build
    assert "--no-build-isolation" in build  # the backend comes from the hashed build lock
    assert [a for a in build if not a.startswith("-") and a != "/wheels"] == [".", own]
    copied = {
        source
        for keyword, arguments in _instructions(service)
        if keyword == "COPY" and not arguments.startswith("--from")
        for source in arguments.split()[:-1]
    }
    assert copied == {LOCK, BUILD_LOCK, "pyproject.toml", "README.md", "src", own[2:]}
    text = containerfile(service).read_text(encoding="utf-8")
    assert not re.search(r"\[(dev|test)\b|development\.lock", text)


def test_the_image_runs_its_service_as_a_fixed_non_root_user(service: str) -> None:
    text = containerfile(service).read_text(encoding="utf-8")
    assert f"USER {IMAGE_USER}" in text
    assert containerfile_uid(containerfile(service)) == IMAGE_USER != 0
    assert _json_instruction(service, "ENTRYPOINT") == ["ptsp-gate"]
    assert _json_instruction(service, "CMD") == ["run", service, "--port", str(SERVICES[service])]
    assert [a for k, a in _instructions(service) if k == "EXPOSE"] == [str(SERVICES[service])]
    # A dependency the lock lacks fails the build, not the service's start.
    assert ("RUN", "pip check") in _instructions(service)
    for keyword, arguments in _instructions(service):
        if keyword == "FROM":
            assert re.search(r":\d+\.\d+\.\d+", arguments.split()[0]), arguments


def test_compose_builds_each_service_from_its_own_containerfile() -> None:
    services = compose()["services"]
    for name in SERVICES:
        assert services[name]["image"] == f"{image_name(name)}:local"
        build = services[name]["build"]
        assert (DEPLOY / build["context"]).resolve() == ROOT
        assert ROOT / build["dockerfile"] == containerfile(name)
    # The migrations run from an image a service builds: nothing to pull.
    assert services["migrate"]["image"] == services[MIGRATE_IMAGE_SERVICE]["image"]
    assert "build" not in services["migrate"]


def test_kubernetes_runs_each_service_from_its_own_image() -> None:
    deployments = by_kind("Deployment")
    for name in SERVICES:
        repository = container(deployments[name])["image"].rpartition(":")[0]
        assert repository.rpartition("/")[2] == image_name(name)
    migrate = container(by_kind("Job")["ptsp-gate-migrate"])["image"]
    assert migrate == container(deployments[MIGRATE_IMAGE_SERVICE])["image"]
    # One version for all, set in one place: the migrations Job then runs the services' release.
    used = {container(w)["image"].rpartition(":")[0] for w in workloads()}
    pins = load(K8S / "base" / "kustomization.yaml")["images"]
    assert {pin["name"] for pin in pins} == used
    assert len({pin["newTag"] for pin in pins}) == 1


def test_the_deploy_readme_names_each_image_and_how_to_build_it() -> None:
    readme = (DEPLOY / "README.md").read_text(encoding="utf-8")
    for name in SERVICES:
        assert f"`{image_name(name)}`" in readme, name
        assert f"docker build -f {containerfile(name).relative_to(ROOT)}" in readme, name
    assert "deploy/Containerfile" not in readme

"""The pinned Apache Kafka release: installed once with Maven from Maven Central into a cache
directory, and what it needs to run (Java 17 or newer)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from string import Template
from typing import IO

__all__ = [
    "KAFKA_VERSION",
    "ApacheKafkaError",
    "cache_root",
    "install",
    "install_dir",
    "installed",
    "java_executable",
    "java_version",
    "main",
    "missing_prerequisite",
]

KAFKA_VERSION = "4.2.0"
SCALA_VERSION = "2.13"
# The log4j2 release Kafka itself is built against; the slf4j 1.x binding routes Kafka's
# slf4j calls to it.
LOG4J_VERSION = "2.25.3"
MIN_JAVA = 17

_COMPLETE = ".complete"

_POM = Template("""<?xml version="1.0" encoding="UTF-8"?>
<!-- Written by ptsp-gate's setup: what a local Apache Kafka node needs at run time. -->
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>ptsp-gate.local</groupId>
  <artifactId>apache-kafka-runtime</artifactId>
  <version>$kafka</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_$scala</artifactId>
      <version>$kafka</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j-impl</artifactId>
      <version>$log4j</version>
    </dependency>
  </dependencies>
</project>
""")


class ApacheKafkaError(RuntimeError):
    """Apache Kafka could not be installed, started or controlled."""


def one_line_tail(text: str, limit: int = 400) -> str:
    return " ".join(text.split())[-limit:]


def cache_root() -> Path:
    """``PTSP_GATE_KAFKA_HOME``, or ``~/.cache/ptsp-gate``."""
    configured = os.environ.get("PTSP_GATE_KAFKA_HOME")
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "ptsp-gate"


def install_dir() -> Path:
    return cache_root() / f"kafka_{SCALA_VERSION}-{KAFKA_VERSION}"


def installed() -> bool:
    return (install_dir() / "libs" / _COMPLETE).is_file()


def java_version(java: str = "java") -> int | None:
    """The major version of ``java`` on PATH (``JAVA_HOME`` first), or None without one."""
    executable = java_executable(java)
    if executable is None:
        return None
    try:
        out = subprocess.run(
            [executable, "-version"], capture_output=True, text=True, timeout=30, check=False
        ).stderr
    except (OSError, subprocess.SubprocessError):
        return None
    found = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    if not found:
        return None
    major = int(found.group(1))
    return int(found.group(2) or 0) if major == 1 else major


def java_executable(name: str = "java") -> str | None:
    """``name`` from ``JAVA_HOME``'s bin directory, else from PATH; None without one."""
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / name).is_file():
        return str(Path(home) / "bin" / name)
    return shutil.which(name)


def missing_prerequisite(*, for_install: bool = False) -> str | None:
    """Why Apache Kafka cannot run (or be installed) here, in one line; None when it can."""
    version = java_version()
    if version is None:
        return f"no Java found (Apache Kafka {KAFKA_VERSION} needs Java {MIN_JAVA} or newer)"
    if version < MIN_JAVA:
        return f"Java {version} found; Apache Kafka {KAFKA_VERSION} needs Java {MIN_JAVA} or newer"
    if for_install:
        if not installed() and shutil.which("mvn") is None:
            return f"no Maven (mvn) to fetch Apache Kafka {KAFKA_VERSION} from Maven Central"
    elif not installed():
        return f"Apache Kafka {KAFKA_VERSION} is not installed in {install_dir()} (scripts/setup)"
    return None


def install(*, log: IO[str] | None = None) -> Path:
    """Resolve the pinned Apache Kafka into :func:`install_dir` with Maven; a no-op once done.

    Maven's own repository goes into the same cache, so nothing outside it is written.
    """
    target = install_dir()
    libs = target / "libs"
    if (libs / _COMPLETE).is_file():
        return target
    why = missing_prerequisite(for_install=True)
    if why:
        raise ApacheKafkaError(why)
    target.mkdir(parents=True, exist_ok=True)
    pom = target / "pom.xml"
    pom.write_text(_POM.substitute(kafka=KAFKA_VERSION, scala=SCALA_VERSION, log4j=LOG4J_VERSION))
    staging = target / "libs.partial"
    shutil.rmtree(staging, ignore_errors=True)
    command = [
        "mvn",
        "--batch-mode",
        "--quiet",
        "--strict-checksums",
        "--file",
        str(pom),
        f"-Dmaven.repo.local={cache_root() / 'm2'}",
        "dependency:copy-dependencies",
        f"-DoutputDirectory={staging}",
        "-DincludeScope=runtime",
    ]
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=900)
    except subprocess.TimeoutExpired:
        raise ApacheKafkaError(
            f"mvn did not resolve Apache Kafka {KAFKA_VERSION} in 900 s"
        ) from None
    if done.returncode != 0:
        detail = one_line_tail(done.stdout + done.stderr)
        raise ApacheKafkaError(f"mvn could not resolve Apache Kafka {KAFKA_VERSION}: {detail}")
    if not any(staging.glob(f"kafka_{SCALA_VERSION}-{KAFKA_VERSION}.jar")):
        raise ApacheKafkaError(f"mvn finished but left no kafka_{SCALA_VERSION} jar in {staging}")
    shutil.rmtree(libs, ignore_errors=True)
    staging.rename(libs)
    (libs / _COMPLETE).write_text(f"{KAFKA_VERSION}\n")
    if log is not None:
        print(f"Apache Kafka {KAFKA_VERSION} installed in {target}", file=log)
    return target


def main() -> int:
    """What scripts/setup runs: install once, or say in one line why not."""
    try:
        if not installed():
            install(log=sys.stderr)
    except ApacheKafkaError as exc:
        print(f"setup: Apache Kafka: {exc}", file=sys.stderr)
        return 1
    return 0

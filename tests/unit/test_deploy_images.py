"""The service image: deploy/Containerfile. Docker cannot run here, so the file is read."""

from __future__ import annotations

import re
import shlex

from tests.unit.deploy_files import CONTAINERFILE, image_uid


def test_container_runs_as_non_root() -> None:
    text = CONTAINERFILE.read_text()
    assert "USER 10001" in text
    assert image_uid() != 0
    assert 'ENTRYPOINT ["ptsp-gate"]' in text
    for line in text.splitlines():
        if line.startswith("FROM "):
            image = shlex.split(line)[1]
            assert re.search(r":\d+\.\d+\.\d+", image), line

"""Documentation and image: every value documented (values.yaml and README.md agree), the
README covers what an operator needs, and the Dockerfile matches what the chart assumes."""

from __future__ import annotations

import re

import chartlib
import readme_params

README = chartlib.CHART_DIR / "README.md"
DOCKERFILE = chartlib.REPO / "Dockerfile"


def test_every_value_has_a_param_line_and_every_param_a_value():
    assert readme_params.problems() == []


def test_the_readme_parameter_tables_are_up_to_date():
    current = README.read_text()
    assert readme_params.expected_readme(current) == current, "run: python charts/tests/readme_params.py --write"


def test_the_param_check_catches_an_undocumented_value():
    text = readme_params.VALUES.read_text().replace("## @param monolithic.replicas ", "## monolithic.replicas ")
    documented = [p for s in readme_params.parse(text) for p, _ in s.params]
    assert "monolithic.replicas" not in documented
    leaves = readme_params.leaves(readme_params.values())
    assert "monolithic.replicas" in leaves


def test_the_readme_covers_install_upgrade_modes_and_sizing():
    text = README.read_text()
    for heading in ("## Installing", "## Upgrading", "## Modes", "## Sizing", "## Parameters", "## Uninstalling"):
        assert heading in text, heading


def test_the_dockerfile_matches_the_chart():
    text = DOCKERFILE.read_text()
    values = chartlib.chart().values
    assert re.search(r"^FROM rust:1\.95-bookworm AS builder$", text, re.M)
    assert "cargo build --release --locked -p earlyhelp" in text
    assert re.search(r"^FROM gcr\.io/distroless/cc-debian12:nonroot$", text, re.M)
    user = re.search(r"^USER (\d+):(\d+)$", text, re.M)
    assert user and int(user.group(1)) == values["podSecurityContext"]["runAsUser"] != 0
    assert int(user.group(2)) == values["podSecurityContext"]["runAsGroup"]
    expose = re.search(r"^EXPOSE (.*)$", text, re.M).group(1).split()
    assert expose == [str(values["server"]["httpPort"]), str(values["server"]["grpcPort"])]
    assert 'ENTRYPOINT ["/usr/local/bin/earlyhelp"]' in text
    assert re.search(r'^CMD \["run", "--target", "all"\]$', text, re.M)


def test_the_dockerignore_keeps_the_context_small():
    entries = (chartlib.REPO / ".dockerignore").read_text().split()
    assert {"target/", ".git", "data/"} <= set(entries)

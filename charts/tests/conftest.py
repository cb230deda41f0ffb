"""Fixtures: the chart rendered once per ci value set (the three modes, the evaluation default
with no values, and the full-featured set)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

import chartlib

CI_SETS = [p.name.removesuffix("-values.yaml") for p in chartlib.ci_values_files()]


@dataclass(frozen=True)
class Rendered:
    name: str
    values: dict[str, Any]
    templates: dict[str, str]
    objects: list[dict[str, Any]]

    @property
    def mode(self) -> str:
        return self.values.get("deploymentMode", "embedded")


_cache: dict[str, Rendered] = {}


def rendered_ci(name: str) -> Rendered:
    if name not in _cache:
        values = chartlib.ci_values(name)
        templates = chartlib.render(values)
        _cache[name] = Rendered(name, values, templates, [d for _, d in chartlib.documents(templates)])
    return _cache[name]


@pytest.fixture(params=CI_SETS)
def ci(request: pytest.FixtureRequest) -> Rendered:
    return rendered_ci(request.param)


@pytest.fixture
def monolithic() -> Rendered:
    return rendered_ci("monolithic")


@pytest.fixture
def distributed() -> Rendered:
    return rendered_ci("distributed")


@pytest.fixture
def full() -> Rendered:
    return rendered_ci("full")


@pytest.fixture
def embedded() -> Rendered:
    """The evaluation default: ci/embedded-values.yaml sets nothing."""
    return rendered_ci("embedded")


@pytest.fixture
def embedded_custom() -> Rendered:
    return rendered_ci("embedded-custom")

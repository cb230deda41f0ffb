"""Shared helpers for the chart checks: render and lint the earlyhelp chart with Helm's own Go
engine (helm-python-sdk binds libhelm_c, Helm v4's SDK; no helm binary, no cluster)."""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any, Iterator

import helm_python as helm
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART_DIR = REPO / "charts" / "earlyhelp"
CI_DIR = CHART_DIR / "ci"
RELEASE = "eh"
NAMESPACE = "earlyhelp"
# Lint with the oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and Helm's default.
LINT_KUBE_VERSIONS = ["v1.31.0", None]

helm.disable_logging()


def ci_values_files() -> list[Path]:
    """The chart-testing value sets: charts/earlyhelp/ci/*-values.yaml."""
    files = sorted(CI_DIR.glob("*-values.yaml"))
    if not files:
        raise SystemExit(f"no value sets in {CI_DIR}")
    return files


def load_values(path: Path) -> dict[str, Any]:
    """Parse a values file the way `helm -f` does (Helm's own YAML reader)."""
    return helm.values_from_yaml(path.read_text())


def ci_values(stem: str) -> dict[str, Any]:
    """A ci value set by short name: ci_values("monolithic") -> ci/monolithic-values.yaml."""
    return load_values(CI_DIR / f"{stem}-values.yaml")


@functools.cache
def chart() -> helm.Chart:
    return helm.Chart.load(CHART_DIR)


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """What `-f base -f override` gives: maps merge, everything else replaces."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def render(
    values: dict[str, Any] | None = None,
    *,
    name: str = RELEASE,
    namespace: str = NAMESPACE,
    is_upgrade: bool = False,
) -> dict[str, str]:
    """Render like `helm template` / `helm install --dry-run`: template path -> text.

    Raises helm.HelmValuesError when values.schema.json rejects the values and
    helm.HelmRenderError when a template fails (e.g. the chart's own `fail` checks).
    """
    return chart().render(
        values or {},
        name=name,
        namespace=namespace,
        is_install=not is_upgrade,
        is_upgrade=is_upgrade,
    )


def documents(rendered: dict[str, str]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every Kubernetes object of a render, with the template it came from (NOTES excluded)."""
    for template, text in sorted(rendered.items()):
        if template.endswith("NOTES.txt") or not text.strip():
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                yield template, doc


def objects(values: dict[str, Any] | None = None, **kwargs: Any) -> list[dict[str, Any]]:
    return [doc for _, doc in documents(render(values, **kwargs))]


def notes(rendered: dict[str, str]) -> str:
    return next((text for t, text in rendered.items() if t.endswith("NOTES.txt")), "")


def lint(values: dict[str, Any] | None, kube_version: str | None) -> dict[str, Any]:
    """`helm lint --strict` of the chart directory with these values."""
    return helm.lint(
        str(CHART_DIR),
        values,
        strict=True,
        namespace=NAMESPACE,
        kube_version=kube_version,
    )

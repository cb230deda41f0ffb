"""Step 1 of charts/check.sh: `helm lint --strict` and render the chart for every
charts/earlyhelp/ci/*-values.yaml with Helm's own engine, writing the manifests to OUT_DIR/<set>/
for the validation and security-scan steps.

    python charts/tests/render.py OUT_DIR
"""

from __future__ import annotations

import collections
import sys
from pathlib import Path

import helm_python as helm

import chartlib

SEVERITY = {0: "UNKNOWN", 1: "INFO", 2: "WARNING", 3: "ERROR"}


def main(out_dir: Path) -> int:
    print(f"Helm SDK {helm.helm_sdk_version()} (libhelm_c {helm.helm_c_version()}), chart {chartlib.CHART_DIR.relative_to(chartlib.REPO)}")
    failed = False
    for values_file in chartlib.ci_values_files():
        label = values_file.relative_to(chartlib.CHART_DIR)
        values = chartlib.load_values(values_file)
        for kube_version in chartlib.LINT_KUBE_VERSIONS:
            report = chartlib.lint(values, kube_version)
            problems = [m for m in report["messages"] if m["severity"] >= 2] + [
                {"severity": 3, "path": "", "error": e} for e in report["errors"]
            ]
            if problems:
                failed = True
                for m in problems:
                    print(f"  LINT {SEVERITY[m['severity']]} {label} ({kube_version or 'default'}): {m['path']}: {m['error'].strip()}")
        try:
            rendered = chartlib.render(values)
        except helm.HelmError as e:
            print(f"  RENDER FAILED {label}: {e}")
            failed = True
            continue
        target = out_dir / values_file.name.removesuffix("-values.yaml")
        target.mkdir(parents=True, exist_ok=True)
        kinds: collections.Counter[str] = collections.Counter()
        for template, text in sorted(rendered.items()):
            if template.endswith("NOTES.txt") or not text.strip():
                continue
            (target / template.removeprefix("earlyhelp/templates/").replace("/", "_")).write_text(text)
        for _, doc in chartlib.documents(rendered):
            kinds[doc["kind"]] += 1
        summary = ", ".join(f"{k} {n}" for k, n in sorted(kinds.items()))
        print(f"  {label}: lint clean (kube {', '.join(v or 'default' for v in chartlib.LINT_KUBE_VERSIONS)}); {sum(kinds.values())} objects: {summary}")
    if failed:
        print("render/lint: FAILED")
        return 1
    print(f"render/lint: {len(chartlib.ci_values_files())} value sets rendered, lint clean")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    sys.exit(main(Path(sys.argv[1])))

"""Step 2 of charts/check.sh: validate every rendered manifest (OUT_DIR/**/*.yaml, from
render.py) against the Kubernetes OpenAPI schemas shipped by kubernetes-validate, strictly
(unknown fields are errors), for every Kubernetes minor version it ships from the chart's minimum
(1.31, Chart.yaml kubeVersion) to the newest. Custom resources (ServiceMonitor) are validated
against the schemas in charts/tests/schemas/.

    python charts/tests/validate_manifests.py OUT_DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import jsonschema
import kubernetes_validate as kv
import yaml
from packaging.version import Version

MINIMUM = Version("1.31")
SCHEMAS = Path(__file__).resolve().parent / "schemas"
CUSTOM = {("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor-monitoring.coreos.com-v1.json"}


def versions() -> list[str]:
    minors = {}
    for v in kv.utils.all_versions():
        mm = Version(kv.utils.major_minor(v))
        if mm >= MINIMUM:
            minors[mm] = v
    return [minors[k] for k in sorted(minors)]


def main(out_dir: Path) -> int:
    kube_versions = versions()
    if not kube_versions:
        print(f"kubernetes-validate {kv.__version__} ships no schema >= {MINIMUM}")
        return 1
    failures = 0
    checked = 0
    custom = 0
    files = sorted(out_dir.rglob("*.yaml"))
    for path in files:
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc:
                continue
            checked += 1
            where = f"{path.relative_to(out_dir)}: {doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
            key = (doc.get("apiVersion"), doc.get("kind"))
            if key in CUSTOM:
                custom += 1
                schema = json.loads((SCHEMAS / CUSTOM[key]).read_text())
                errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(doc), key=str)
                for e in errors:
                    failures += 1
                    print(f"  INVALID {where}: {'/'.join(map(str, e.absolute_path))}: {e.message}")
                continue
            for version in kube_versions:
                try:
                    kv.validate(doc, version, strict=True)
                except kv.SchemaNotFoundError as e:
                    failures += 1
                    print(f"  NO SCHEMA {where}: {e.message}")
                    break
                except kv.ValidationError as e:
                    failures += 1
                    print(f"  INVALID {where} (Kubernetes {e.version}): {'/'.join(map(str, e.path))}: {e.message}")
    span = f"{kv.utils.major_minor(kube_versions[0])}..{kv.utils.major_minor(kube_versions[-1])}"
    if failures:
        print(f"kubernetes-validate: FAILED, {failures} problem(s) in {checked} manifests")
        return 1
    if checked == 0:
        print(f"kubernetes-validate: no manifests found under {out_dir}")
        return 1
    print(
        f"kubernetes-validate {kv.__version__}: {checked} manifests in {len(files)} files valid (strict) "
        f"for Kubernetes {span} ({len(kube_versions)} versions); {custom} custom resources checked "
        f"against charts/tests/schemas"
    )
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    sys.exit(main(Path(sys.argv[1])))

"""What of deploy/ can be checked without a cluster: the Dagster instance loads with Dagster's own config
validation (and its run launcher's and storage's configs validate against dagster-k8s' and dagster-postgres'
schemas), the Dockerfile installs exactly as the README says, and the Helm values and Spark configuration give
the settings the code reads, consistently (same store path everywhere, the pinned Spark version)."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml
from dagster._config import validate_config
from dagster._core.instance.config import dagster_instance_config
from dagster._serdes.config_class import class_from_code_pointer

from segmentation_pipelines.settings import Settings

ROOT = Path(__file__).resolve().parents[3]
K8S = ROOT / "deploy" / "k8s"
SPARK_CONF = ROOT / "deploy" / "spark" / "spark-defaults.conf"


def _values() -> dict:
    return yaml.safe_load((K8S / "values.yaml").read_text())


def _deployment() -> dict:
    (dep,) = _values()["dagster-user-deployments"]["deployments"]
    return dep


def _spark_conf() -> dict[str, str]:
    out = {}
    for line in SPARK_CONF.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, value = line.split(None, 1)
            out[key] = value.strip()
    return out


def _readme_block(marker: str) -> str:
    """The command in the ```bash block after ``<!-- marker`` (as .ci/run reads the README)."""
    text = (ROOT / "README.md").read_text()
    after = text[text.index(f"<!-- {marker}") :]
    return after.split("```bash\n", 1)[1].split("\n", 1)[0]


def test_the_instance_config_loads_with_dagsters_validation() -> None:
    config, custom = dagster_instance_config(str(K8S), "dagster.yaml")
    assert custom is None
    launcher = config["run_launcher"]
    assert (launcher["module"], launcher["class"]) == ("dagster_k8s", "K8sRunLauncher")
    # The launcher's and the storage's own config schemas (what Dagster checks when it builds them).
    for module, cls, cfg in [
        ("dagster_k8s", "K8sRunLauncher", launcher["config"]),
        ("dagster_postgres", "DagsterPostgresStorage", config["storage"]["postgres"]),
    ]:
        result = validate_config(class_from_code_pointer(module, cls).config_type(), cfg)
        assert result.success, (cls, [e.message for e in result.errors])


def test_a_broken_instance_config_is_rejected(tmp_path: Path) -> None:
    bad = yaml.safe_load((K8S / "dagster.yaml").read_text())
    bad["run_launcher"]["config"]["job_namespac"] = bad["run_launcher"]["config"].pop("job_namespace")
    cfg = bad["run_launcher"]["config"]
    assert not validate_config(
        class_from_code_pointer("dagster_k8s", "K8sRunLauncher").config_type(), cfg
    ).success
    bad["storage"]["postgress"] = bad["storage"].pop("postgres")
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(bad))
    with pytest.raises(Exception, match="dagster"):
        dagster_instance_config(str(tmp_path), "dagster.yaml")


def test_the_dockerfile_installs_as_the_readme_says() -> None:
    runs = [
        line.removeprefix("RUN ").strip()
        for line in (K8S / "Dockerfile").read_text().splitlines()
        if line.startswith("RUN ") and "pip install" in line
    ]
    assert runs == [_readme_block("image-install")]
    # The extras it names exist (pip would only warn about an unknown extra).
    extras = re.search(r"\[(.*)\]", runs[0]).group(1).split(",")
    optional = __import__("tomllib").loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert set(extras) <= set(optional)


def test_the_values_give_the_settings_the_code_reads() -> None:
    dep = _deployment()
    env = {e["name"]: e["value"] for e in dep["env"]}
    fields = {f"SEGMENTATION_{name.upper()}" for name in Settings.model_fields}
    unknown = {k for k in env if k.startswith("SEGMENTATION_")} - fields
    assert not unknown, f"values.yaml sets variables no setting reads: {unknown}"
    secret = next(
        d
        for d in yaml.safe_load_all((K8S / "secrets.example.yaml").read_text())
        if d["metadata"]["name"] == "segmentation-secrets"
    )
    assert {"name": "segmentation-secrets"} in dep["envSecrets"]
    assert set(secret["stringData"]) <= fields
    settings = Settings(
        **{k.removeprefix("SEGMENTATION_").lower(): v for k, v in {**env, **secret["stringData"]}.items()}
    )
    assert settings.engine == "spark"
    assert settings.spark_master.startswith("k8s://https://")
    assert settings.resolved_catalog_url.startswith("postgresql+psycopg2://")
    assert settings.definitions_module == dep["dagsterApiGrpcArgs"][1]
    # The home is on the shared store volume, mounted at the same path by the executors.
    mounts = {m["name"]: m["mountPath"] for m in dep["volumeMounts"]}
    claims = {
        v["name"]: v["persistentVolumeClaim"]["claimName"]
        for v in dep["volumes"]
        if "persistentVolumeClaim" in v
    }
    assert str(settings.home).startswith(mounts["store"] + "/")
    spark = _spark_conf()
    prefix = "spark.kubernetes.executor.volumes.persistentVolumeClaim.store"
    assert spark[f"{prefix}.mount.path"] == mounts["store"]
    assert spark[f"{prefix}.options.claimName"] == claims["store"]
    assert {e["name"]: e["value"] for e in dep["env"]}.get(
        "SEGMENTATION_SPARK_MASTER"
    ) == settings.spark_master
    # Spark reads its configuration where the image says (SPARK_CONF_DIR) and the values mount it.
    docker = (K8S / "Dockerfile").read_text()
    assert f"SPARK_CONF_DIR={mounts['spark-conf']}" in docker
    # Run pods get the deployment's env and volumes, and the env the driver settings refer to.
    assert dep["includeConfigInLaunchedRuns"]["enabled"] is True
    run = _values()["runLauncher"]["config"]["k8sRunLauncher"]["runK8sConfig"]
    run_env = {e["name"] for e in run["containerConfig"]["env"]}
    assert {m for m in re.findall(r"\$\{env:(\w+)\}", SPARK_CONF.read_text())} <= run_env
    assert (
        run["podSpecConfig"]["serviceAccountName"]
        == spark["spark.kubernetes.authenticate.serviceAccountName"]
    )


def test_the_executors_run_the_pinned_spark_version() -> None:
    import pyspark

    image = _spark_conf()["spark.kubernetes.container.image"]
    assert image.endswith(":" + pyspark.__version__)
    assert f'"pyspark=={pyspark.__version__}"' in (ROOT / "pyproject.toml").read_text()


def test_the_manifests_are_valid_yaml_of_kubernetes_objects() -> None:
    for path in K8S.glob("*.yaml"):
        if path.name in ("values.yaml", "dagster.yaml"):
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            assert {"apiVersion", "kind", "metadata"} <= set(doc), path.name
            assert doc["metadata"].get("namespace") == "dagster", path.name


def test_docs_deploy_names_every_file_and_the_commands() -> None:
    doc = (ROOT / "docs" / "deploy.md").read_text()
    for path in [*K8S.iterdir(), SPARK_CONF]:
        assert str(path.relative_to(ROOT)) in doc, path.name
    commands = [
        line.strip()
        for block in re.findall(r"```bash\n(.*?)```", doc, re.S)
        for line in block.splitlines()
        if line.strip()
    ]
    assert any(c.startswith("helm upgrade --install dagster dagster/dagster") for c in commands)
    assert any(c.startswith("docker build -f deploy/k8s/Dockerfile") for c in commands)
    # Every command is a well-formed shell line.
    for c in commands:
        if not c.lstrip().startswith("#"):
            shlex.split(c.rstrip("\\"))
    assert subprocess.run(["bash", "-n", "-c", "\n".join(commands)], check=False).returncode == 0

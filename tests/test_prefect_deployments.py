"""prefect.yaml's deployments are well-formed for the pools they name, without a Prefect server.

The process pool (nightly-retrain, smoke) is the tested default (tests/test_schedule.py deploys every
deployment on a real server and runs smoke). The container deployments (gpu-docker, gpu-kubernetes)
cannot run here (no Docker daemon or cluster), so this checks what can be checked offline: their job
variables against the JSON schema of the pool's base job template in deploy/prefect/, which must
still hold Prefect's own default template unchanged; and the rendered job configuration (Prefect's
own templating) asks for the GPU, the image and the tracking server.
"""

from __future__ import annotations

import copy
import inspect
import json
from pathlib import Path

import jsonschema
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
POOL_TYPES = {"ganpipe-process": "process", "ganpipe-docker": "docker", "ganpipe-kubernetes": "kubernetes"}


def deployments() -> dict[str, dict]:
    return {d["name"]: d for d in yaml.safe_load((REPO / "prefect.yaml").read_text())["deployments"]}


def template(pool_type: str) -> dict:
    return json.loads((REPO / "deploy" / "prefect" / f"{pool_type}-base-job-template.json").read_text())


def prefect_default_template(pool_type: str) -> dict:
    """The base job template Prefect's server gives a new pool of this type (its bundled worker metadata)."""
    import prefect

    path = Path(prefect.__file__).parent / "server/api/collections_data/views/aggregate-worker-metadata.json"
    for workers in json.loads(path.read_text()).values():
        if pool_type in workers:
            return workers[pool_type]["default_base_job_configuration"]
    raise AssertionError(f"Prefect ships no {pool_type} worker template")


def render(pool_type: str, job_variables: dict) -> dict:
    """The job configuration a worker receives: the template's defaults, overridden by the deployment's variables."""
    from prefect.utilities.templating import apply_values

    tpl = template(pool_type)
    values = {k: v["default"] for k, v in tpl["variables"]["properties"].items() if "default" in v}
    return apply_values(copy.deepcopy(tpl["job_configuration"]), {**values, **job_variables})


def test_every_deployment_runs_the_flow_with_its_parameters():
    from pipelines.flow import ENTRY_POINT, training_pipeline

    accepted = set(inspect.signature(training_pipeline.fn).parameters)
    assert set(deployments()) == {"nightly-retrain", "smoke", "gpu-docker", "gpu-kubernetes"}
    for name, d in deployments().items():
        # the flow, or its retried-by-resuming variant (nightly-retrain: scheduled_pipeline, same parameters)
        assert d["entrypoint"] in (ENTRY_POINT, "pipelines/flow.py:scheduled_pipeline"), name
        assert set(d["parameters"]) <= accepted, (name, set(d["parameters"]) - accepted)
        assert d["work_pool"]["name"] in POOL_TYPES, name


@pytest.mark.parametrize("name", ["gpu-docker", "gpu-kubernetes"])
def test_container_job_variables_fit_their_pool_template(name):
    d = deployments()[name]
    pool_type = POOL_TYPES[d["work_pool"]["name"]]
    tpl = template(pool_type)
    variables = d["work_pool"]["job_variables"]
    unknown = set(variables) - set(tpl["variables"]["properties"])
    assert not unknown, f"{name}: job variables {unknown} are not in the {pool_type} template"
    jsonschema.validate(variables, tpl["variables"])  # types: a string memory limit, an integer GPU count, ...
    # The image holds the code: the pull step moves into the Dockerfile's WORKDIR, not into a checkout.
    workdir = next(line.split()[1] for line in (REPO / "Dockerfile").read_text().splitlines()
                   if line.startswith("WORKDIR"))
    assert d["pull"] == [{"prefect.deployments.steps.set_working_directory": {"directory": workdir}}]
    assert variables["env"]["MLFLOW_TRACKING_URI"].startswith("http")  # no local SQLite store in a container


@pytest.mark.parametrize("pool_type", ["docker", "kubernetes"])
def test_pool_templates_extend_prefects_defaults(pool_type):
    """Everything Prefect's default template holds is still there, unchanged: only GPU fields are added."""
    ours, default = template(pool_type), prefect_default_template(pool_type)
    for key, spec in default["variables"]["properties"].items():
        assert ours["variables"]["properties"].get(key) == spec, key
    default_config = json.dumps(default["job_configuration"], sort_keys=True)
    for key, value in default["job_configuration"].items():
        if key != "job_manifest":
            assert ours["job_configuration"][key] == value, key
    if pool_type == "kubernetes":  # the manifest minus the added GPU limit and node selector is Prefect's
        manifest = copy.deepcopy(ours["job_configuration"]["job_manifest"])
        pod = manifest["spec"]["template"]["spec"]
        del pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"], pod["nodeSelector"]
        assert json.dumps({**default["job_configuration"], "job_manifest": manifest}, sort_keys=True) == default_config


def test_kubernetes_job_requests_the_gpu_image_and_tracking_server():
    d = deployments()["gpu-kubernetes"]
    variables = d["work_pool"]["job_variables"]
    config = render("kubernetes", variables)
    pod = config["job_manifest"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == variables["image"]
    assert container["resources"]["limits"] == {"cpu": variables["cpu_limit"], "memory": variables["memory_limit"],
                                                "nvidia.com/gpu": 1}
    assert container["resources"]["requests"] == {"cpu": variables["cpu_request"],
                                                  "memory": variables["memory_request"]}
    assert pod["nodeSelector"] == variables["node_selector"]
    assert config["env"]["MLFLOW_TRACKING_URI"] == variables["env"]["MLFLOW_TRACKING_URI"]
    assert config["namespace"] == "ganpipe"
    # Without gpu_limit the pod asks for no GPU at all (the key is dropped, not rendered as a placeholder).
    cpu_only = render("kubernetes", {k: v for k, v in variables.items() if k not in ("gpu_limit", "node_selector")})
    cpu_pod = cpu_only["job_manifest"]["spec"]["template"]["spec"]
    assert "nvidia.com/gpu" not in cpu_pod["containers"][0]["resources"]["limits"] and "nodeSelector" not in cpu_pod


def test_docker_container_requests_the_gpu_image_and_tracking_server():
    variables = deployments()["gpu-docker"]["work_pool"]["job_variables"]
    config = render("docker", variables)
    assert config["image"] == variables["image"] and config["mem_limit"] == variables["mem_limit"]
    assert config["env"]["MLFLOW_TRACKING_URI"] == variables["env"]["MLFLOW_TRACKING_URI"]
    # docker-py turns each dict into a DeviceRequest: `docker run --gpus 1`.
    assert config["container_create_kwargs"]["device_requests"] == [
        {"driver": "nvidia", "count": 1, "capabilities": [["gpu"]]}]

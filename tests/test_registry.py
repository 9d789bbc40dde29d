"""Registry gating against a real MLflow SQLite store: aliases move only on a better primary metric,
rejected runs never reach the registry, and the registered versions load back as models."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from pipelines.registry import PromotionDecision, promote, record_rejection, version_by_alias

MODEL = "ganpipe-generator"

# A models-from-code pyfunc (no pickled object): logging it takes well under a second, against
# ~6 s for mlflow.pytorch.log_model, which runs torch.export on the input example and infers
# pip requirements in a subprocess. The registry does not care about the flavour.
MODEL_CODE = textwrap.dedent(
    """
    import mlflow
    from mlflow.pyfunc import PythonModel


    class Echo(PythonModel):
        def predict(self, model_input: list[float], params=None) -> list[float]:
            return model_input


    mlflow.models.set_model(Echo())
    """
)


@pytest.fixture(scope="module")
def empty_db(tmp_path_factory) -> Path:
    """An SQLite file with MLflow's schema; creating the schema (migrations) takes ~7 s, copying it ~0."""
    path = tmp_path_factory.mktemp("mlflow-schema") / "mlflow.db"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
        mp.setenv("DO_NOT_TRACK", "1")
        MlflowClient(tracking_uri=f"sqlite:///{path}", registry_uri=f"sqlite:///{path}").search_registered_models()
    return path


@pytest.fixture
def store(tmp_path, monkeypatch, empty_db):
    """A fresh SQLite tracking/registry store and experiment under tmp_path; returns (client, experiment_id, code)."""
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.setenv("DO_NOT_TRACK", "1")
    shutil.copyfile(empty_db, tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)  # log_model goes through the fluent API
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment_id = client.create_experiment("gating", artifact_location=(tmp_path / "artifacts").as_uri())
    code = tmp_path / "echo_model.py"
    code.write_text(MODEL_CODE)
    yield client, experiment_id, code
    mlflow.set_tracking_uri(None)  # back to the default; monkeypatch then restores the environment


def log_run(store, metrics: dict[str, float]) -> tuple[str, str]:
    """A finished run with ``metrics`` and a logged model named ``generator``: (run_id, model_uri)."""
    _, experiment_id, code = store
    with mlflow.start_run(experiment_id=experiment_id) as run:
        mlflow.log_metrics(metrics)
        info = mlflow.pyfunc.log_model(
            name="generator",
            python_model=str(code),
            input_example=[0.5],
            pip_requirements=["mlflow"],  # skips requirement inference, a ~2 s subprocess per model
        )
    return run.info.run_id, info.model_uri


def aliases(client: MlflowClient) -> dict[str, str]:
    return {alias: str(version) for alias, version in client.get_registered_model(MODEL).aliases.items()}


def n_versions(client: MlflowClient) -> int:
    return len(client.search_model_versions(f"name = '{MODEL}'"))


def test_champion_moves_only_on_a_better_run_and_rejected_runs_never_register(store):
    client = store[0]

    run1, uri1 = log_run(store, {"fid": 30.0, "kid": 0.02})
    first = promote(client, MODEL, run1, uri1, {"fid": 30.0, "kid": 0.02}, "fid")
    assert isinstance(first, PromotionDecision)
    assert (first.version, sorted(first.aliases), first.previous_champion_version) == ("1", ["challenger", "champion"], None)
    assert aliases(client) == {"champion": "1", "challenger": "1"}
    assert "no champion yet" in first.reason

    run2, uri2 = log_run(store, {"fid": 40.0})
    worse = promote(client, MODEL, run2, uri2, {"fid": 40.0}, "fid")
    assert (worse.version, worse.aliases) == ("2", ["challenger"])
    assert (worse.previous_champion_version, worse.previous_champion_value, worse.value) == ("1", 30.0, 40.0)
    assert aliases(client) == {"champion": "1", "challenger": "2"}
    assert "champion kept" in worse.reason and "40" in worse.reason and "30" in worse.reason

    run3, uri3 = log_run(store, {"fid": 20.0})
    better = promote(client, MODEL, run3, uri3, {"fid": 20.0}, "fid")
    assert (better.version, sorted(better.aliases), better.previous_champion_version) == ("3", ["challenger", "champion"], "1")
    assert aliases(client) == {"champion": "3", "challenger": "3"}

    run4, _ = log_run(store, {"fid": 10.0})  # best number, but it failed a gate
    record_rejection(client, run4, {"mode_coverage": "6/8 modes < 8 required", "onnx": "max |diff| 3e-2 > 1e-4"})
    assert n_versions(client) == 3
    assert aliases(client) == {"champion": "3", "challenger": "3"}
    tags = client.get_run(run4).data.tags
    assert tags["gate_status"] == "rejected"
    assert tags["failed_gates"] == "mode_coverage,onnx"
    assert tags["gate.mode_coverage"] == "6/8 modes < 8 required"
    assert "registered_model_version" not in tags

    # What the registry says, read back independently of promote(): tags on the versions,
    # and the champion loads as a model that came from run 3.
    v2 = client.get_model_version(MODEL, "2")
    assert v2.tags["gate_status"] == "passed" and float(v2.tags["metric.fid"]) == 40.0
    assert v2.tags["promotion_reason"] == worse.reason
    assert client.get_run(run3).data.tags["registered_model_version"] == f"{MODEL}/3"
    champion = mlflow.pyfunc.load_model(f"models:/{MODEL}@champion")
    assert champion.metadata.run_id == run3
    assert champion.predict([1.5]) == [1.5]


def test_higher_is_better_and_ties_keep_the_champion(store):
    client = store[0]
    decisions = []
    for value in (0.5, 0.5, 0.7):
        run, uri = log_run(store, {"coverage": value})
        decisions.append(promote(client, MODEL, run, uri, {"coverage": value}, "coverage", lower_is_better=False))
    assert [d.is_champion for d in decisions] == [True, False, True]
    assert aliases(client) == {"champion": "3", "challenger": "3"}


def test_rejected_run_cannot_be_promoted(store):
    client = store[0]
    run, uri = log_run(store, {"fid": 5.0})
    record_rejection(client, run, {"fid": "fid 5.0 computed on 10 samples, need 1000"})
    with pytest.raises(ValueError, match="rejected"):
        promote(client, MODEL, run, uri, {"fid": 5.0}, "fid")
    assert client.search_registered_models() == []


@pytest.mark.parametrize("metrics", [{"fid": float("nan")}, {"kid": 0.1}])
def test_missing_or_nan_primary_metric_registers_nothing(store, metrics):
    client = store[0]
    run, uri = log_run(store, {"kid": 0.1})
    with pytest.raises(ValueError, match="fid"):
        promote(client, MODEL, run, uri, metrics, "fid")
    assert client.search_registered_models() == []


def test_model_of_another_run_is_refused(store):
    client = store[0]
    run1, uri1 = log_run(store, {"fid": 30.0})
    run2, _ = log_run(store, {"fid": 20.0})
    with pytest.raises(ValueError, match="not " + run2):
        promote(client, MODEL, run2, uri1, {"fid": 20.0}, "fid")
    assert client.search_registered_models() == []


def test_runs_uri_registers_a_loadable_version(store):
    # A raw runs:/ source would register MLflow 3 logged-model files that cannot be loaded.
    client = store[0]
    run, _ = log_run(store, {"fid": 30.0})
    decision = promote(client, MODEL, run, f"runs:/{run}/generator", {"fid": 30.0}, "fid")
    assert decision.is_champion
    assert mlflow.pyfunc.load_model(f"models:/{MODEL}/1").metadata.run_id == run


def test_champion_registered_by_hand_is_compared_through_its_run_metric(store):
    client = store[0]
    run1, uri1 = log_run(store, {"fid": 25.0})
    client.create_registered_model(MODEL)
    by_hand = client.create_model_version(MODEL, client.get_logged_model(uri1.split("/")[-1]).artifact_location, run1)
    client.set_registered_model_alias(MODEL, "champion", by_hand.version)

    run2, uri2 = log_run(store, {"fid": 28.0})
    decision = promote(client, MODEL, run2, uri2, {"fid": 28.0}, "fid")
    assert (decision.previous_champion_value, decision.aliases) == (25.0, ["challenger"])


def test_version_by_alias_is_none_only_for_a_missing_alias(store):
    client = store[0]
    client.create_registered_model(MODEL)
    assert version_by_alias(client, MODEL, "champion") is None
    with pytest.raises(MlflowException):  # a missing model is an error, not "no champion"
        version_by_alias(client, "no-such-model", "champion")


def test_record_rejection_needs_a_failed_gate(store):
    run, _ = log_run(store, {"fid": 1.0})
    with pytest.raises(ValueError):
        record_rejection(store[0], run, {})


def test_promote_again_for_the_same_run_reuses_its_version(store, monkeypatch):
    """A run killed inside registration and resumed registers once: the version created before the kill
    (found by run id) is completed, not duplicated."""
    import signal as signals

    import pipelines.interrupt as interrupt

    client = store[0]
    run1, uri1 = log_run(store, {"fid": 30.0})
    promote(client, MODEL, run1, uri1, {"fid": 30.0}, "fid")
    run2, uri2 = log_run(store, {"fid": 20.0})
    # The kill hook, caught instead of killing the test process: the version exists, no alias moved yet.
    monkeypatch.setenv(interrupt.KILL_ENV, "register.version_created:1")
    monkeypatch.setattr(interrupt.os, "kill", lambda pid, sig: (_ for _ in ()).throw(RuntimeError(f"killed {sig}")))
    monkeypatch.setattr(interrupt, "_kill_counts", {})
    with pytest.raises(RuntimeError, match=f"killed {signals.SIGKILL}"):
        promote(client, MODEL, run2, uri2, {"fid": 20.0}, "fid", fingerprint={"ganpipe.data_version": "d1"})
    assert n_versions(client) == 2 and aliases(client) == {"champion": "1", "challenger": "1"}
    monkeypatch.delenv(interrupt.KILL_ENV)
    resumed = promote(client, MODEL, run2, uri2, {"fid": 20.0}, "fid", fingerprint={"ganpipe.data_version": "d1"})
    assert (resumed.version, sorted(resumed.aliases), resumed.previous_champion_version) == \
        ("2", ["challenger", "champion"], "1")
    assert n_versions(client) == 2 and aliases(client) == {"champion": "2", "challenger": "2"}
    again = promote(client, MODEL, run2, uri2, {"fid": 20.0}, "fid")  # a third attempt: the recorded decision
    assert (again.version, again.reason) == ("2", resumed.reason) and n_versions(client) == 2
    assert client.get_model_version(MODEL, "2").tags["ganpipe.run_id"] == run2


def test_up_to_date_version_matches_all_three_fingerprint_tags(store):
    from pipelines.registry import up_to_date_version

    client = store[0]
    fingerprint = {"ganpipe.data_version": "d1", "ganpipe.code_version": "c1", "ganpipe.params_hash": "p1"}
    assert up_to_date_version(client, MODEL, fingerprint) is None  # no registered model yet
    run1, uri1 = log_run(store, {"fid": 30.0})
    promote(client, MODEL, run1, uri1, {"fid": 30.0}, "fid", fingerprint=fingerprint)
    assert up_to_date_version(client, MODEL, fingerprint).version == 1
    assert up_to_date_version(client, MODEL, fingerprint, exclude_run_id=run1) is None  # a run is not its own twin
    for key in fingerprint:
        assert up_to_date_version(client, MODEL, {**fingerprint, key: "other"}) is None


def test_a_rescored_champion_decides_and_both_scores_are_recorded(store):
    from pipelines.registry import ChampionRescore

    client = store[0]
    run1, uri1 = log_run(store, {"fid": 30.0})
    promote(client, MODEL, run1, uri1, {"fid": 30.0}, "fid", fingerprint={"ganpipe.data_version": "old"})
    run2, uri2 = log_run(store, {"fid": 25.0})
    # 25 beats the champion's 30 on its own data, but not its 20 on the new data: the champion stays.
    rescore = ChampionRescore(version="1", value=20.0, data_version="new", original_value=30.0,
                              original_data_version="old")
    decision = promote(client, MODEL, run2, uri2, {"fid": 25.0}, "fid", fingerprint={"ganpipe.data_version": "new"},
                       champion_rescore=rescore)
    assert decision.aliases == ["challenger"] and decision.previous_champion_value == 20.0
    tags = client.get_model_version(MODEL, "2").tags
    assert (tags["decision.champion_score"], tags["decision.champion_score_on_own_data"]) == ("20.0", "30.0")
    assert (tags["decision.champion_data_version"], tags["decision.challenger_data_version"]) == ("old", "new")
    assert tags["decision.challenger_score"] == "25.0" and "re-scored" in tags["promotion_reason"]

"""MLflow model-registry gating with aliases (``champion``, ``challenger``); stages are not used.

MLflow deprecated model-version stages in 2.9 in favour of aliases:
https://mlflow.org/docs/latest/ml/model-registry/#deprecated-using-model-stages

Policy:
- Only runs that passed every gate are registered (``promote``); a rejected run is tagged on
  the run with its failed gates (``record_rejection``) and never touches the registry.
  ``promote`` refuses a run tagged ``gate_status=rejected``.
- Every registered version gets ``challenger`` (the latest version that passed the gates).
- ``champion`` moves to the new version when no champion exists, or when the new value of the
  primary metric is strictly better than the champion's; a tie keeps the champion. When the
  champion has no value for the primary metric, it is kept (a person decides).

Where the champion's value comes from: the version tag ``metric.<primary_metric>`` written by
``promote`` at registration, i.e. the exact value the gate judged; the run's metric (its latest
value) is the fallback for versions registered by other means. A run's metric can be logged
again after registration, so the tag is the more faithful record of the decision.

Version tags written at registration: ``gate_status=passed``, ``primary_metric=<name>``,
``metric.<name>=<value>`` for every metric, the run's fingerprint (``ganpipe.run_id``,
``ganpipe.data_version``, ``ganpipe.code_version``, ``ganpipe.params_hash``) and, once decided,
``promotion_reason`` (written last: its presence means the decision is complete).

Registration is idempotent per run: a process killed anywhere inside ``promote`` leaves at most one
version for its run, and ``promote`` called again for the same run (a resumed run) finds that version
(``version_for_run``) instead of creating another, then finishes what was left (aliases, tags).

When the champion was scored on another data version than the new run, the flow re-scores it on the
new run's reference set and passes ``champion_rescore``: the decision compares both models on the
same data, and the version records both scores and both data versions (``decision.*`` tags).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from mlflow import MlflowClient
from mlflow.entities import RunTag
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, ErrorCode

CHAMPION = "champion"
CHALLENGER = "challenger"
GATE_STATUS = "gate_status"
FAILED_GATES = "failed_gates"
_TAG_VALUE_LIMIT = 5000  # MLflow refuses tag values above 8000 characters (5000 on older servers)


@dataclass(frozen=True)
class PromotionDecision:
    """What ``promote`` did: the new version, the aliases it now holds, and why."""

    model_name: str
    version: str
    aliases: list[str]
    previous_champion_version: str | None
    previous_champion_value: float | None
    value: float
    reason: str
    primary_metric: str = ""
    lower_is_better: bool = True

    @property
    def is_champion(self) -> bool:
        return CHAMPION in self.aliases


def promote(
    client: MlflowClient,
    model_name: str,
    run_id: str,
    model_uri: str,
    metrics: dict[str, float],
    primary_metric: str,
    lower_is_better: bool = True,
    *,
    fingerprint: dict[str, str] | None = None,
    champion_rescore: "ChampionRescore | None" = None,
) -> PromotionDecision:
    """Register ``model_uri`` as a new version of ``model_name`` and move the aliases.

    ``model_uri`` is the logged model of run ``run_id``: ``models:/<model_id>`` (what
    ``log_model`` returns as ``ModelInfo.model_uri``) or ``runs:/<run_id>/<name>``. Call this
    only for runs that passed every gate. Raises ``ValueError`` before touching the registry
    when the primary metric is missing or not finite, the run was rejected, or the model was
    not logged by ``run_id``.

    fingerprint: tags recorded on the version (``ganpipe.data_version`` etc.; see ``up_to_date_version``).
    champion_rescore: the champion's score on this run's data, when it was scored on other data.
    """
    from pipelines.interrupt import kill_point

    value = _primary_value(metrics, primary_metric)
    tags = {GATE_STATUS: "passed", "primary_metric": primary_metric, RUN_ID_TAG: run_id, **(fingerprint or {})}
    tags |= {f"metric.{_tag_key(name)}": repr(float(v)) for name, v in metrics.items()}
    _refuse_rejected_run(client, run_id)
    source, model_id = _resolve_logged_model(client, run_id, model_uri)
    # Checks above, writes below: a refused run leaves the registry untouched.
    _ensure_registered_model(client, model_name)
    version = version_for_run(client, model_name, run_id)  # registered before this process was killed
    if version is not None and "promotion_reason" in version.tags:
        _tag_registered_run(client, run_id, model_name, version.version)
        return _recorded_decision(client, version, value, primary_metric, lower_is_better)
    champion = version_by_alias(client, model_name, CHAMPION)
    champion_value = None
    if version is not None and champion is not None and champion.version == version.version:
        champion = None  # the alias moved to this run's version before the process was killed: decided
        becomes_champion, reason = True, "becomes champion (its alias was set before the run was interrupted)"
    else:
        champion_value = _champion_value(client, champion, primary_metric) if champion else None
        rescored = champion is not None and champion_rescore is not None and \
            champion_rescore.version == str(champion.version)
        if rescored:  # both models judged on this run's reference set
            tags |= champion_rescore.tags(value, fingerprint or {})
            champion_value = champion_rescore.value
        becomes_champion, reason = _judge(champion, champion_value, value, primary_metric, lower_is_better)
        if rescored:
            reason += (f" (champion re-scored on this run's data {champion_rescore.data_version[:12]}; it scored "
                       f"{champion_rescore.original_value} on its own data "
                       f"{champion_rescore.original_data_version[:12] or 'unknown'})")

    if version is None:
        # One SQL transaction creates the version with its tags: a kill leaves all of it or nothing.
        version = client.create_model_version(model_name, source, run_id, tags=tags, model_id=model_id)
        kill_point("register.version_created")
    else:  # created by the interrupted attempt; its tags are rewritten with the same values
        for key, tag_value in tags.items():
            client.set_model_version_tag(model_name, version.version, key, tag_value)
    client.set_registered_model_alias(model_name, CHALLENGER, version.version)
    if becomes_champion:
        client.set_registered_model_alias(model_name, CHAMPION, version.version)
    kill_point("register.aliases_set")
    reason = f"{model_name} v{version.version}: {reason}"
    client.set_model_version_tag(model_name, version.version, "promotion_reason", _clip(reason))
    _tag_registered_run(client, run_id, model_name, version.version)
    return PromotionDecision(
        model_name=model_name,
        version=str(version.version),
        aliases=[CHAMPION, CHALLENGER] if becomes_champion else [CHALLENGER],
        previous_champion_version=str(champion.version) if champion else None,
        previous_champion_value=champion_value,
        value=value,
        reason=reason,
        primary_metric=primary_metric,
        lower_is_better=lower_is_better,
    )


RUN_ID_TAG = "ganpipe.run_id"
FINGERPRINT_TAGS = ("ganpipe.data_version", "ganpipe.code_version", "ganpipe.params_hash")


@dataclass(frozen=True)
class ChampionRescore:
    """The champion's primary metric on the new run's reference set, next to the one it was registered with."""

    version: str
    value: float
    data_version: str  # the new run's data, on which ``value`` was measured
    original_value: float | None
    original_data_version: str  # "" when the champion was registered without a data-version tag

    def tags(self, challenger_value: float, fingerprint: dict[str, str]) -> dict[str, str]:
        return {"decision.champion_version": self.version,
                "decision.champion_score": repr(float(self.value)),
                "decision.champion_score_on_own_data": repr(self.original_value),
                "decision.champion_data_version": self.original_data_version or "unknown",
                "decision.challenger_score": repr(float(challenger_value)),
                "decision.challenger_data_version": fingerprint.get("ganpipe.data_version", self.data_version),
                "decision.data_version": self.data_version}


def version_for_run(client: MlflowClient, model_name: str, run_id: str) -> ModelVersion | None:
    """The version of ``model_name`` registered from run ``run_id``, if any (the lowest, should there be several)."""
    try:
        found = client.search_model_versions(f"name = '{model_name}' and run_id = '{run_id}'")
    except MlflowException:
        return None
    return min(found, key=lambda v: int(v.version)) if found else None


def up_to_date_version(client: MlflowClient, model_name: str, fingerprint: dict[str, str],
                       exclude_run_id: str | None = None) -> ModelVersion | None:
    """A registered version with the same data version, code version and params hash, if any.

    A scheduled run that finds one would train the same model again: it reports "up to date" instead.
    """
    try:
        versions = client.search_model_versions(f"name = '{model_name}'")
    except MlflowException:  # no such registered model yet
        return None
    for version in sorted(versions, key=lambda v: -int(v.version)):
        if version.run_id == exclude_run_id:
            continue
        if all(version.tags.get(k) == fingerprint.get(k) and fingerprint.get(k) for k in FINGERPRINT_TAGS):
            return version
    return None


def _recorded_decision(client: MlflowClient, version: ModelVersion, value: float, primary_metric: str,
                       lower_is_better: bool) -> PromotionDecision:
    """The decision a previous (interrupted) attempt of the same run completed, read back from the registry."""
    aliases = client.get_registered_model(version.name).aliases
    held = [a for a, v in aliases.items() if str(v) == str(version.version)]
    return PromotionDecision(model_name=version.name, version=str(version.version),
                             aliases=[a for a in (CHAMPION, CHALLENGER) if a in held],
                             previous_champion_version=version.tags.get("decision.champion_version"),
                             previous_champion_value=None, value=value, reason=version.tags["promotion_reason"],
                             primary_metric=primary_metric, lower_is_better=lower_is_better)


def _tag_registered_run(client: MlflowClient, run_id: str, model_name: str, version: str) -> None:
    client.log_batch(run_id, tags=[RunTag(GATE_STATUS, "passed"),
                                   RunTag("registered_model_version", f"{model_name}/{version}")])


def record_rejection(client: MlflowClient, run_id: str, failed_gates: dict[str, str]) -> None:
    """Tag run ``run_id`` as rejected with the failed gates and their reasons; no registry call.

    Tags: ``gate_status=rejected``, ``failed_gates=<comma-separated names>`` and
    ``gate.<name>=<reason>`` per failed gate.
    """
    if not failed_gates:
        raise ValueError("record_rejection needs at least one failed gate; a run with none passed")
    tags = [RunTag(GATE_STATUS, "rejected"), RunTag(FAILED_GATES, _clip(",".join(sorted(failed_gates))))]
    tags += [RunTag(f"gate.{_tag_key(name)}", _clip(reason)) for name, reason in sorted(failed_gates.items())]
    client.log_batch(run_id, tags=tags)


def version_by_alias(client: MlflowClient, model_name: str, alias: str) -> ModelVersion | None:
    """The version holding ``alias``, or None when the alias is not set.

    ``get_model_version_by_alias`` raises ``MlflowException`` (INVALID_PARAMETER_VALUE, "alias
    ... not found") for a missing alias; the same error code covers other problems, so the
    absence is confirmed on the registered model before returning None.
    """
    try:
        return client.get_model_version_by_alias(model_name, alias)
    except MlflowException:
        if alias not in client.get_registered_model(model_name).aliases:
            return None
        raise


def _primary_value(metrics: dict[str, float], primary_metric: str) -> float:
    if primary_metric not in metrics:
        raise ValueError(f"primary metric {primary_metric!r} not in metrics {sorted(metrics)}")
    value = float(metrics[primary_metric])
    if not math.isfinite(value):
        raise ValueError(f"primary metric {primary_metric!r} is {value}; a run without a finite value cannot be promoted")
    return value


def _refuse_rejected_run(client: MlflowClient, run_id: str) -> None:
    tags = client.get_run(run_id).data.tags
    if tags.get(GATE_STATUS) == "rejected":
        raise ValueError(f"run {run_id} was rejected by its gates ({tags.get(FAILED_GATES, '?')}); it cannot be registered")


def _resolve_logged_model(client: MlflowClient, run_id: str, model_uri: str) -> tuple[str, str]:
    """(artifact location, model id) of the logged model behind ``model_uri``, checked to come from ``run_id``.

    Resolved here with ``client`` because MLflow's SQL store resolves a ``models:/`` source
    with a fresh ``MlflowClient()`` (the global tracking URI, not this client's), and a raw
    ``runs:/`` source registers an MLflow 3 logged model as a version that cannot be loaded
    (its files live under the logged model, not the run's artifacts).
    """
    if match := re.fullmatch(r"models:/(m-[0-9a-f]+)", model_uri):
        logged = client.get_logged_model(match.group(1))
    elif match := re.fullmatch(r"runs:/([^/]+)/(.+)", model_uri):
        if match.group(1) != run_id:
            raise ValueError(f"model URI {model_uri} belongs to run {match.group(1)}, not {run_id}")
        logged = _logged_model_by_name(client, run_id, match.group(2))
    else:
        raise ValueError(f"model_uri must be models:/<model_id> or runs:/<run_id>/<name>, got {model_uri!r}")
    if logged.source_run_id != run_id:
        raise ValueError(f"logged model {logged.model_id} comes from run {logged.source_run_id}, not {run_id}")
    return logged.artifact_location, logged.model_id


def _logged_model_by_name(client: MlflowClient, run_id: str, name: str):
    experiment_id = client.get_run(run_id).info.experiment_id
    found = [m for m in client.search_logged_models([experiment_id], filter_string=f"name = '{name}'")
             if m.source_run_id == run_id]
    if len(found) != 1:
        raise ValueError(f"run {run_id} has {len(found)} logged models named {name!r}; pass models:/<model_id>")
    return found[0]


def _ensure_registered_model(client: MlflowClient, model_name: str) -> None:
    try:
        client.create_registered_model(model_name)
    except MlflowException as err:
        if err.error_code != ErrorCode.Name(RESOURCE_ALREADY_EXISTS):
            raise


def _champion_value(client: MlflowClient, champion: ModelVersion, primary_metric: str) -> float | None:
    tagged = champion.tags.get(f"metric.{_tag_key(primary_metric)}")
    if tagged is not None:
        return float(tagged)
    if champion.run_id:
        return client.get_run(champion.run_id).data.metrics.get(primary_metric)
    return None


def _judge(champion: ModelVersion | None, champion_value: float | None, value: float,
           primary_metric: str, lower_is_better: bool) -> tuple[bool, str]:
    """(becomes champion, why)."""
    direction = "lower" if lower_is_better else "higher"
    if champion is None:
        return True, f"no champion yet; becomes champion with {primary_metric}={value:.6g}"
    if champion_value is None:
        return False, (f"challenger only: champion v{champion.version} has no {primary_metric} to compare with; "
                       "left in place for a manual decision")
    better = value < champion_value if lower_is_better else value > champion_value
    comparison = f"{primary_metric}={value:.6g} vs champion v{champion.version} {champion_value:.6g} ({direction} is better)"
    if better:
        return True, f"becomes champion: {comparison}"
    return False, f"challenger only, champion kept: {comparison}"


def _tag_key(name: str) -> str:
    """MLflow tag keys allow alphanumerics, '_', '-', '.', ' ', '/'; anything else becomes '_'."""
    return re.sub(r"[^\w\-. /]", "_", name)


def _clip(text: str) -> str:
    return text if len(text) <= _TAG_VALUE_LIMIT else text[: _TAG_VALUE_LIMIT - 3] + "..."

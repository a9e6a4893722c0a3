"""From a validated POST /tune to a study and its queued trial attempts, resolved like POST /train.

The study's config is resolved under the roots (its output folder is new, under the output root,
and marked as the study's); each trial is an attempt of its own, owning a folder inside it, and is
queued on the workers like a training. A worker resolves the trial's stored command again before it
runs it (``JobQueue._command_allowed``), then samples its params from the study.
"""

from __future__ import annotations

from pathlib import Path

from ..config import KshotConfig, Params
from ..errors import ConfigError
from ..tuning.space import SearchSpace
from ..tuning.study import StudySpec, open_study, stored_spec, trial_attempt_name
from ..tuning.trial import trial_base_command
from .launch import BODY, AttemptNotReady, _resolved_config, _resolved_params, submit
from .references import InvalidReference, claim_output_dir, release_output_dir
from .schemas import TuneRequest
from .settings import ServiceSettings

STUDY_OWNER = "study:{}"  # the owner file of a study's folder: no attempt has this name


def queue_tune(body: TuneRequest, store, queue, settings: ServiceSettings, storage):
    """(the queued trial attempts, how many attempts a warm start added)."""
    from ..tuning import check_study_name
    from ..tuning.warm_start import warm_start

    try:
        check_study_name(body.study)
    except ConfigError as err:
        raise InvalidReference(BODY + ("study",), str(err)) from None
    spec = stored_spec(storage, body.study)
    given = body.config is not None or body.params is not None or body.space is not None
    if spec is not None and given:
        raise AttemptNotReady(
            f"Study {body.study!r} exists; queue more of its trials with its name alone (no config, params or space)."
        )
    if spec is None:
        if body.space is None:
            raise InvalidReference(BODY + ("space",), f"No study {body.study!r} yet: give config, params and space.")
        spec = _new_spec(body, settings)
        study_dir = Path(spec.config.output_dir)
        claim_output_dir(study_dir, STUDY_OWNER.format(body.study))
    study, spec = open_study(storage, body.study, spec)
    added = warm_start(store, study, spec).added if body.warm_start else 0
    taken = {a.name for a in store.list_attempts(study=body.study, limit=None)[0]}
    trials, slot = [], 0
    while len(trials) < body.n_trials:
        name = trial_attempt_name(body.study, slot)
        slot += 1
        if name in taken or store.get_attempt(name) is not None:
            continue
        command = trial_base_command(spec, body.study, name)
        out = Path(command["config"]["output_dir"])
        command["config"]["logging"]["log_dir"] = str(out / "logs")  # an attempt writes in its own folder only
        claim_output_dir(out, name)
        try:
            trials.append(submit(store, queue, "train", name, command, study=body.study))
        except Exception:
            release_output_dir(out)
            raise
    return trials, added


def _new_spec(body: TuneRequest, settings: ServiceSettings) -> StudySpec:
    config = KshotConfig.from_dict(_resolved_config(body.config or {}, body.study, settings, stored=False))
    params = Params.from_dict(_resolved_params(body.params or {}, settings, overrides=False))
    try:
        space = SearchSpace.from_dict(body.space, params, source="space")
    except ConfigError as err:
        raise InvalidReference(BODY + ("space",), str(err)) from None
    if "lopt_path" in space.names:
        raise InvalidReference(BODY + ("space",), "lopt_path is a path, not a value to search.")
    try:
        return StudySpec(config, params, space, body.pruner, body.prune_after, body.prune_by)
    except ConfigError as err:
        raise InvalidReference(BODY + ("params",), str(err)) from None

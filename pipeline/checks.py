"""What every stage would refuse, found before the first one runs: a long run (hours on GPUs) should not stop at
its fifth stage on a typo in a critic's name. ``check_config`` names each bad key and its valid values; it loads
nothing (no model, no data file)."""

from __future__ import annotations

from pathlib import Path

from agents.backends import BACKENDS
from agents.prompts import TEMPLATES
from critics.registry import CRITICS
from envs.registry import PROBLEM_SOURCES
from pipeline.checkpoints import repo_path
from pipeline.schema import RunConfig
from trainers.registry import ALGORITHMS

__all__ = ["check_config"]


def _names(key: str, names: list[str], registry) -> list[str]:
    return [f"{key}: unknown {registry.role} {n!r}; valid: {', '.join(registry)}" for n in names if n not in registry]


def check_config(cfg: RunConfig) -> list[str]:
    """Problems with the configured run, one sentence each (empty: every stage takes it)."""
    errors: list[str] = []
    errors += _names("problems.name", [cfg.problems.name], PROBLEM_SOURCES)
    errors += _names("actor.backend", [cfg.actor.backend], BACKENDS)
    errors += _names("critic.name", [cfg.critic.name], CRITICS)
    if cfg.critic.backend not in ("hf", "openai"):
        errors.append(f"critic.backend: {cfg.critic.backend!r} is not hf or openai")
    for key, value in (("actor.template", cfg.actor.template), ("critic.template", cfg.critic.template)):
        if value not in TEMPLATES:
            errors.append(f"{key}: {value!r} is not one of {', '.join(TEMPLATES)}")
    if cfg.problems.min_steps > cfg.problems.max_steps:
        errors.append(f"problems.min_steps={cfg.problems.min_steps} > problems.max_steps={cfg.problems.max_steps}")
    if cfg.problems.distractors < 0:
        errors.append(f"problems.distractors={cfg.problems.distractors} must be >= 0")
    elif cfg.problems.distractors and cfg.problems.name in PROBLEM_SOURCES \
            and not PROBLEM_SOURCES[cfg.problems.name].generated:
        errors.append(f"problems.distractors adds sentences to generated (synthetic) questions; "
                      f"problems={cfg.problems.name} reads its rows as they are")
    stages = set(cfg.stages)
    if "warmup" in stages and cfg.actor.refine_tune.problems_per_level:
        if cfg.actor.model:
            errors.append(f"actor.refine_tune tunes the warm-up's actor, but actor.model={cfg.actor.model!r} is used "
                          "as it is: drop one of them")
        elif cfg.problems.name in PROBLEM_SOURCES and not PROBLEM_SOURCES[cfg.problems.name].generated:
            errors.append(f"actor.refine_tune needs reference solutions step by step (synthetic problems); "
                          f"problems={cfg.problems.name} gives final answers only")
    if "critique_data" in stages:
        a = cfg.autocritique
        if a.annotator not in ("oracle", "lm"):
            errors.append(f"autocritique.annotator: {a.annotator!r} is not oracle or lm")
        if a.annotator == "lm":
            errors += _names("autocritique.annotator_backend", [a.annotator_backend], BACKENDS)
        if a.dataset is not None:
            errors += _names("autocritique.dataset", [a.dataset], PROBLEM_SOURCES)
    if "critic_training" in stages and cfg.critic_training.init not in ("shipped", "actor", "scratch", "checkpoint", "hf"):
        errors.append(f"critic_training.init: {cfg.critic_training.init!r} is not shipped, actor, scratch, checkpoint "
                      "or hf")
    if "eval_critic" in stages:
        errors += _names("eval_critic.critics", cfg.eval_critic.critics, CRITICS)
    if "calibrate_critic" in stages and not all(0 < b <= 1 for b in cfg.calibrate_critic.accept_probabilities):
        errors.append("calibrate_critic.accept_probabilities must be in (0, 1]")
    if "eval_test_time" in stages:
        t = cfg.test_time
        errors += _names("test_time.critics", t.critics, CRITICS)
        if t.split not in ("train", "test"):
            errors.append(f"test_time.split: {t.split!r} is not train or test")
        if max(t.ks) > t.k_max:
            errors.append(f"test_time.ks {list(t.ks)} go beyond test_time.k_max={t.k_max}")
    if "self_improve" in stages:
        s = cfg.self_improve
        errors += _names("self_improve.algorithms", s.algorithms, ALGORITHMS)
        errors += _names("self_improve.critic", [s.critic], CRITICS)
        if s.actor and not Path(repo_path(s.actor)).exists():
            errors.append(f"self_improve.actor: no checkpoint at {s.actor!r}")
        if s.actor and cfg.actor.model:
            errors.append(f"self_improve.actor={s.actor!r} would start self-improvement from another model than "
                          f"actor.model={cfg.actor.model!r}: add self_improve=plain (or self_improve.actor=null)")
    return errors

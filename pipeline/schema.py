"""The run's configuration schema: Hydra structured configs built from the project's ``*Config`` dataclasses.

Each config group and section of ``configs/config.yaml`` is typed by the dataclass beside the code that reads it
(``EnvConfig`` in envs, ``CriticConfig`` in critics, ``SelfImproveConfig`` in trainers, ...); the ones that
only a stage reads are here. The YAML holds the default run's values and their comments; a key the schema does
not know, or a value of the wrong type, fails at start-up (pipeline/config.py words the error), and
``tests/test_config_and_train.py`` checks that the dataclass defaults and the YAML agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hydra.core.config_store import ConfigStore

from agents.actor import ActorConfig
from autocritique.pipeline import AutoCritiqueConfig
from critics.registry import CriticConfig
from envs.math_env import EnvConfig
from envs.registry import ProblemsConfig
from rollout.ray_pool import RayConfig
from trainers.critic_sft import CriticSFTConfig, HFCriticSFTConfig
from trainers.refine_tune import RefineTuneConfig
from trainers.self_improve import SelfImproveConfig
from trainers.self_talk import SelfTalkConfig
from trainers.sft import ActorSFTConfig

__all__ = ["RunConfig", "register_schema"]


@dataclass
class ActorGroupConfig(ActorConfig):
    """The ``actor:`` group: the model and sampling, and how the warm-up stage makes the tiny actor."""

    name: str = "tiny"
    init: str = "shipped"  # shipped: copy checkpoints/tiny-actor | train: run ``warmup`` | none: actor.model as is
    warmup: ActorSFTConfig = field(default_factory=ActorSFTConfig)
    refine_tune: RefineTuneConfig = field(default_factory=RefineTuneConfig)  # then, on its own mistakes (0: off)

    def __post_init__(self) -> None:
        if self.init == "none" and not self.model:  # a given model, nothing to warm up: it must be named
            raise ValueError(f"required key(s) not set: actor.model (actor={self.name} loads a given model; "
                             "e.g. actor.model=Qwen/Qwen2.5-0.5B-Instruct)")


@dataclass
class CritiqueDataConfig(AutoCritiqueConfig):
    """The ``autocritique:`` group: which problems (``dataset``), who annotates, and the pipeline's settings."""

    dataset: str | None = None   # null: the run's problems= source | a source name (envs/registry.py) of its own
    path: str | None = None      # dataset=<a file source>: its train JSONL (default: the data folder's)
    seed: int | None = None      # null: the run's seed
    annotator: str = "oracle"    # oracle: the reference-aware critic | lm: a language model (the paper's GPT-4o)
    annotator_model: str | None = None     # annotator=lm: a folder, hub id or GGUF file (null: the actor's model)
    annotator_backend: str = "hf"          # hf | openai (e.g. a strong model behind a server or a hosted API)
    annotator_base_url: str = "http://127.0.0.1:8000/v1"
    annotator_served_model: str | None = None
    annotator_max_new_tokens: int = 768
    # the default run's sizes (configs/autocritique/small.yaml); AutoCritiqueConfig's own are the full dataset's
    sampled_problems: int = 400
    located_problems: int = 150
    typed_problems: int = 250
    reference_problems: int = 150

    def pipeline_config(self, run_seed: int) -> AutoCritiqueConfig:
        fields = {k: getattr(self, k) for k in AutoCritiqueConfig.__dataclass_fields__}
        return AutoCritiqueConfig(**{**fields, "kinds": tuple(self.kinds),
                                     "seed": run_seed if self.seed is None else self.seed})


@dataclass
class DemoConfig:
    episodes: int = 2                 # episodes shown step by step
    error_step: int | None = 2        # the scripted actor's mistake (null: none)
    error_kind: str = "calculation"   # calculation | operand | operation


@dataclass
class EnvCheckConfig:
    episodes: int = 200               # scripted episodes per check (correct and corrupted)


@dataclass
class EvalConfig:
    problems_per_level: int = 40      # synthetic test problems per difficulty level
    max_problems: int | None = None   # cap for file-backed sources (gsm8k, math)
    with_critic: bool = True          # also evaluate critique -> refine with the configured critic


def short_critic_recipe() -> CriticSFTConfig:
    """The default run's critic: the shipped one, fine-tuned briefly on the run's own critique data (the full
    recipe, CriticSFTConfig's defaults, takes about 2 hours: recipe=paper_tiny uses its result as shipped)."""
    return CriticSFTConfig(init="checkpoint", checkpoint="checkpoints/tiny-critic", train_steps=40,
                           learning_rate=2e-4, verdict_line_steps=0, verdict_steps=0)


@dataclass
class CriticTrainingConfig:
    init: str = "checkpoint"          # shipped | actor | scratch | checkpoint (continue recipe.checkpoint) | hf
    recipe: CriticSFTConfig = field(default_factory=short_critic_recipe)  # the tiny critic's recipe
    hf: HFCriticSFTConfig = field(default_factory=HFCriticSFTConfig)  # init=hf: an instruct model, LoRA or full


@dataclass
class EvalCriticConfig:
    problems_per_level: int = 6
    temperature: float = 1.0          # the actor's sampling temperature for the natural-mistake set
    samples_per_problem: int = 2
    critics: list[str] = field(default_factory=lambda: ["model", "model_likelihood", "model_checks", "self",
                                                        "self_reflection", "oracle", "none", "random"])
    extra_models: dict[str, str] = field(default_factory=dict)  # more critique checkpoints, {label: path}
    processbench: str | None = None   # a step-labelled JSONL in ProcessBench's format, scored for every critic too
    processbench_only: bool = False   # score that file alone (no samples of the actor)
    table_episodes: int = 40          # solutions per critic logged as a W&B table


@dataclass
class CalibrateCriticConfig:
    levels: list[int] = field(default_factory=lambda: [7, 8])
    problems_per_level: int = 100
    samples_per_problem: int = 1
    accept_probabilities: list[float] = field(default_factory=lambda: [0.02, 0.05, 0.1, 0.2, 0.4])


@dataclass
class EvalTestTimeConfig:
    critics: list[str] = field(default_factory=lambda: ["none", "self", "model", "model_likelihood", "oracle"])
    problems_per_level: int = 5
    levels: list[int] | None = None   # null: every level of the source
    hard_levels: list[int] = field(default_factory=lambda: [7, 8])
    max_rounds: int = 2
    refine_temperature: float = 0.5
    split: str = "test"
    temperature: float = 0.5
    k_max: int = 4
    budget_k_max: int = 8
    ks: list[int] = field(default_factory=lambda: [1, 2, 4])
    sample_rounds: int = 1
    table_episodes: int = 40


@dataclass
class TrackingConfig:
    mode: str = "offline"             # offline | online | disabled
    project: str = "critique-gym"


@dataclass
class RunConfig:
    seed: int = 0
    run_dir: str = "runs/default"
    stages: list[str] = field(default_factory=lambda: ["warmup", "env_check", "demo", "eval_actor", "critique_data",
                                                       "critic_training", "eval_critic", "eval_test_time",
                                                       "self_improve", "self_talk"])
    rerun: list[str] = field(default_factory=list)
    resume: bool = False
    problems: ProblemsConfig = field(default_factory=ProblemsConfig)
    critic: CriticConfig = field(default_factory=CriticConfig)
    env: EnvConfig = field(default_factory=EnvConfig)
    actor: ActorGroupConfig = field(default_factory=ActorGroupConfig)
    autocritique: CritiqueDataConfig = field(default_factory=CritiqueDataConfig)
    demo: DemoConfig = field(default_factory=DemoConfig)
    env_check: EnvCheckConfig = field(default_factory=EnvCheckConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    critic_training: CriticTrainingConfig = field(default_factory=CriticTrainingConfig)
    eval_critic: EvalCriticConfig = field(default_factory=EvalCriticConfig)
    calibrate_critic: CalibrateCriticConfig = field(default_factory=CalibrateCriticConfig)
    test_time: EvalTestTimeConfig = field(default_factory=EvalTestTimeConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    self_improve: SelfImproveConfig = field(default_factory=SelfImproveConfig)
    self_talk: SelfTalkConfig = field(default_factory=SelfTalkConfig)
    ray: RayConfig = field(default_factory=RayConfig)


def register_schema() -> None:
    """Put the schema in Hydra's config store (``configs/config.yaml`` lists ``schema`` first in its defaults)."""
    ConfigStore.instance().store(name="schema", node=RunConfig)

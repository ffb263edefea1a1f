"""``MathReasoningEnv``: one math problem per episode, a critic in the loop, the verifier as the reward.

Observation: ``{"problem", "steps", "feedback"}`` texts: the question, the solution lines kept so far, and the
critic's feedback on the last attempt (empty until the critic flags something).

Action: the actor's next solution line (``action_unit="step"``) or a whole solution (``"solution"``). Either way
an action may hold several lines; each non-empty line becomes a step, and nothing after an answer line is kept.
A whole-solution action is final even when it has no answer line or is empty (the verifier then finds no
answer, or the last number).

Critique: after every action (``critique_timing="step"``) or only once an answer line arrives (``"final"``) the
critic reviews the solution so far. When it flags step ``k`` and refinement rounds remain, the solution is cut
back to steps ``1..k-1`` and the feedback appears in the next observation, so the actor revises from the flagged
step. Without rounds left, the solution stands as written.

End: ``terminated`` once an answer line is accepted (the critic finds no error, or no rounds are left);
``truncated`` when ``max_turns`` actions pass without one.

Self-talk (``action_format="self_talk"``, whole solutions only): the action is a transcript in which the model
checks its own steps and fixes the ones it flags (``critics/self_talk.py``). It is parsed back into the solution
it stands for (the steps with their fixes) for the verifier, and the record keeps the steps as written with the
model's own checks as the attempt's critique, like any critic's; no outside critic is asked. What is malformed in
a transcript is recorded in ``action_errors``, never raised.

An action longer than ``max_action_chars`` (the action space's length) is kept whole and the record says so:
cutting it could leave a cut number for the verifier to score.

Reward (sparse by default): ``correct_reward`` when the verifier accepts the final answer, else 0. Optional
shaping, all off by default: ``-invalid_action_penalty`` for each empty, non-text or over-long action, and
``-refinement_penalty`` for each refinement round the critic forces.
"""

from __future__ import annotations

import copy
import string
import unicodedata
from dataclasses import asdict, dataclass
from functools import cache
from typing import Any

import gymnasium as gym
from gymnasium import spaces

from core.critique import Critique
from core.episode import Attempt, EpisodeRecord
from core.problem import ProblemSource
from core.protocols import Critic
from core.verification import VerificationResult
from critics.base import NullCritic
from critics.self_talk import SelfTalk
from critics.self_talk import parse as parse_self_talk
from envs.synthetic import SyntheticArithmetic
from rewards.answer import is_answer_line, solution_lines, until_answer
from rewards.verifier import verify_response

__all__ = [
    "CHARSET",
    "EnvConfig",
    "PendingStep",
    "MathReasoningEnv",
    "feedback_summary",
    "run_episode",
    "sanitize_text",
]

# Printable ASCII plus the non-ASCII characters real math problems use (GSM8K and MATH-500 use exactly the
# ones in the first group); anything else is replaced by "?" in observations, never in the episode record.
_UNICODE = "¢£³¼½¾×çèéñ÷А\u200b–—‘’“”€−√" + "πθαβγδλμσφωΔΣΠ∞±≤≥≠≈→←↔⇒·•…°²¹⁰√∑∏∫∂∈∉⊂∪∩∠⊥∥✓✗"
CHARSET = frozenset(string.printable) | frozenset(_UNICODE)
_CHARSET_STR = "".join(sorted(CHARSET))


@cache
def _text_template(max_length: int) -> spaces.Text:
    return spaces.Text(max_length, min_length=0, charset=_CHARSET_STR)


def text_space(max_length: int) -> spaces.Text:
    """A ``Text`` space of up to ``max_length`` characters of :data:`CHARSET`, copied from one built per length
    (gymnasium indexes the charset afresh for every space; a rollout builds four per environment). The copy
    shares only read-only tables and seeds its own sampler."""
    return copy.copy(_text_template(max_length))


DEFAULT_ACTION_CHARS = 4096


def sanitize_text(text: str, max_length: int) -> str:
    """Fit text into the observation space: NFC, unknown characters as ``?``, the last ``max_length`` chars."""
    text = unicodedata.normalize("NFC", text)
    text = "".join(ch if ch in CHARSET else "?" for ch in text)
    return text if len(text) <= max_length else text[-max_length:]


@dataclass
class EnvConfig:
    """Settings of :class:`MathReasoningEnv` (see the module docstring for what each does)."""

    action_unit: str = "solution"  # "solution" | "step"
    action_format: str = "plain"   # "plain" | "self_talk" (a transcript with the model's own checks and fixes)
    critique_timing: str = "final"  # "step" | "final"
    max_turns: int = 32
    max_refinements: int = 2
    max_action_chars: int | None = None  # the action space's length (None: 4096; a pipeline run derives it from
    # the actor's generation budget); a longer action is kept whole, and the record says it was over
    max_problem_chars: int = 4096
    max_feedback_chars: int = 2048
    correct_reward: float = 1.0
    invalid_action_penalty: float = 0.0
    refinement_penalty: float = 0.0

    def __post_init__(self) -> None:
        if self.action_unit not in ("step", "solution"):
            raise ValueError(f"action_unit must be 'step' or 'solution', got {self.action_unit!r}")
        if self.action_format not in ("plain", "self_talk"):
            raise ValueError(f"action_format must be 'plain' or 'self_talk', got {self.action_format!r}")
        if self.action_format == "self_talk" and self.action_unit != "solution":
            raise ValueError("action_format='self_talk' needs action_unit='solution' (a transcript is one action)")
        if self.critique_timing not in ("step", "final"):
            raise ValueError(f"critique_timing must be 'step' or 'final', got {self.critique_timing!r}")
        for name in ("max_turns", "max_action_chars", "max_problem_chars", "max_feedback_chars"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_refinements < 0:
            raise ValueError(f"max_refinements must be >= 0, got {self.max_refinements}")

    @property
    def action_chars(self) -> int:
        return DEFAULT_ACTION_CHARS if self.max_action_chars is None else self.max_action_chars

    @property
    def max_steps_chars(self) -> int:
        return self.max_turns * (self.action_chars + 1)


@dataclass(frozen=True)
class PendingStep:
    """An action taken into the solution, waiting for the critic (see ``MathReasoningEnv.submit``)."""

    steps: tuple[str, ...]
    needs_critique: bool
    answered: bool
    action_error: str | None
    action_over_long: bool


class MathReasoningEnv(gym.Env):
    """A math problem as an episode: the actor writes steps, a critic gives feedback, the verifier rewards."""

    metadata = {"render_modes": ["ansi", "human"], "render_fps": 4}

    def __init__(
        self,
        problems: ProblemSource | None = None,
        critic: Critic | None = None,
        config: EnvConfig | None = None,
        render_mode: str | None = None,
        **config_overrides: Any,
    ):
        if problems is None:
            problems = SyntheticArithmetic()
        if len(problems) == 0:
            raise ValueError("MathReasoningEnv needs a non-empty problem source")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']}, got {render_mode!r}")
        self.problems = problems
        self.critic: Critic = critic if critic is not None else NullCritic()
        self.config = EnvConfig(**{**asdict(config or EnvConfig()), **config_overrides})
        self.render_mode = render_mode
        c = self.config
        self.observation_space = spaces.Dict({
            "problem": text_space(c.max_problem_chars),
            "steps": text_space(c.max_steps_chars),
            "feedback": text_space(c.max_feedback_chars),
        })
        self.action_space = text_space(c.action_chars)
        self.record: EpisodeRecord | None = None
        self._feedback = ""
        self._pending: PendingStep | None = None
        self._talk: SelfTalk | None = None

    # -- gymnasium API ---------------------------------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        options = options or {}
        if "problem" in options:
            problem = options["problem"]
        elif "index" in options:
            problem = self.problems[int(options["index"])]
        else:
            problem = self.problems[int(self.np_random.integers(len(self.problems)))]
        self.record = EpisodeRecord(problem=problem)
        self._feedback = ""
        self._pending = None
        self._talk = None
        return self._observation(), self._info()

    def step(self, action: Any):
        pending = self.submit(action)
        critique = self.critic.critique(self.record.problem, pending.steps) if pending.needs_critique else None
        return self.resolve(pending, critique)

    # ``step`` in two halves, so a vectorised rollout can batch the critic over many environments:
    # ``submit`` every env's action, one ``critic.critique_batch`` for those that need it, ``resolve`` each.

    def submit(self, action: Any) -> PendingStep:
        """Take the action into the solution; say whether the critic must now review it."""
        if self.record is None or self.record.done:
            raise RuntimeError("MathReasoningEnv.step() called before reset() or after the episode ended")
        record, c = self.record, self.config
        if self._pending is not None:
            raise RuntimeError("MathReasoningEnv.submit() called twice without resolve()")
        record.turns += 1
        lines, error, over_long = self._parse_action(action)
        record.actions.append(action if isinstance(action, str) else repr(action))
        if error:
            record.action_errors.append(error)
        record.steps.extend(lines)
        # a whole-solution action is the actor's final word, even without an answer line (or empty)
        answered = c.action_unit == "solution" or (bool(record.steps) and is_answer_line(record.steps[-1]))
        needs = bool(lines) and (answered or c.critique_timing == "step") and self._talk is None
        self._pending = PendingStep(tuple(record.steps), needs, answered, error, over_long)
        return self._pending

    def resolve(self, pending: PendingStep, critique: Critique | None):
        """Apply the critic's verdict on a submitted action and finish the gymnasium step."""
        if pending is not self._pending:
            raise RuntimeError("MathReasoningEnv.resolve() got a step this environment did not submit")
        self._pending = None
        if pending.needs_critique and critique is None:
            raise ValueError("this step needs a critique and none was given")
        record, c = self.record, self.config
        reward = -c.invalid_action_penalty if (pending.action_error or pending.action_over_long) else 0.0
        answered, refined = pending.answered, False
        # a finished solution is verified once, here: the attempt keeps the result, and so does the record
        verification = verify_response("\n".join(pending.steps), record.problem.answer) if answered else None
        if self._talk is not None:  # the transcript's own checks are the attempt's critique
            record.attempts.append(Attempt(self._talk.written, self._talk.critique(), None, verification))
            critique = record.attempts[-1].critique
        elif pending.needs_critique:
            refined = self._apply_critique(critique, verification)
            self._feedback = feedback_summary(critique) if refined else ""
            if refined:
                reward -= c.refinement_penalty
                answered = False
        else:
            critique = None
        terminated = answered
        truncated = not terminated and record.turns >= c.max_turns
        if terminated:
            reward += self._finish(verification)
        record.done = terminated or truncated
        record.total_reward += reward
        if self.render_mode == "human":
            print(self._render_text())
        return self._observation(), reward, terminated, truncated, self._info(
            critique=critique, refined=refined, action_error=pending.action_error,
            action_over_long=pending.action_over_long)

    def render(self) -> str | None:
        """``ansi``: the episode so far as text; ``human``: printed after every step, so nothing here."""
        if self.render_mode == "human":
            return None
        return self._render_text()

    def _render_text(self) -> str | None:
        if self.record is None:
            return None
        r = self.record
        out = [f"Problem: {r.problem.question}", *r.steps]
        if self._feedback:
            out.append(f"[critic] {self._feedback}")
        if r.verification is not None:
            out.append(f"[verifier] {r.verification.reason} -> reward {r.verification.reward}")
        return "\n".join(out)

    # -- helpers ---------------------------------------------------------------------------------------------

    def _parse_action(self, action: Any) -> tuple[list[str], str | None, bool]:
        """Split an action into solution lines; never raises on bad input, reports it instead."""
        if not isinstance(action, str):
            return [], f"action is {type(action).__name__}, not text", False
        over = len(action) > self.config.action_chars  # kept whole: a cut line could end in a cut number
        if self.config.action_format == "self_talk":
            self._talk = parse_self_talk(action)
            return self._talk.steps, "; ".join(f"self-talk: {p}" for p in self._talk.problems) or None, over
        lines = solution_lines(action)
        if not lines:
            return [], "empty action", over
        kept = until_answer(lines)
        error = (f"over-long action ({len(action)} characters, max_action_chars={self.config.action_chars}) kept whole"
                 if over else None)
        if len(kept) < len(lines):
            error = (error + "; " if error else "") + "text after the answer line ignored"
        return kept, error, over

    def _apply_critique(self, critique: Critique, verification: VerificationResult | None) -> bool:
        """Record the critique; cut the solution back to the flagged step if a refinement round is left."""
        record = self.record
        first = critique.first_error_step
        if first is not None and not 1 <= first <= len(record.steps):  # a critique of another solution
            record.attempts.append(Attempt(list(record.steps), critique, None, verification,
                                           f"first error at step {first} of a {len(record.steps)}-step solution"))
            return False
        can_refine = first is not None and record.refinement_rounds < self.config.max_refinements
        record.attempts.append(Attempt(list(record.steps), critique, first - 1 if can_refine else None, verification))
        if not can_refine:
            return False
        record.refinement_rounds += 1
        del record.steps[first - 1:]
        return True

    def _finish(self, verification: VerificationResult) -> float:
        record = self.record
        record.verification = verification
        record.final_answer = record.verification.extracted
        return self.config.correct_reward if record.verification.correct else 0.0

    def _observation(self) -> dict[str, str]:
        c, r = self.config, self.record
        return {
            "problem": sanitize_text(r.problem.question, c.max_problem_chars),
            "steps": sanitize_text("\n".join(r.steps), c.max_steps_chars),
            "feedback": sanitize_text(self._feedback, c.max_feedback_chars),
        }

    def _info(self, **extra: Any) -> dict[str, Any]:
        r = self.record
        return {
            "record": r,
            "problem_id": r.problem.id,
            "difficulty": r.problem.difficulty,
            "gold_answer": r.problem.answer,
            "refinement_rounds": r.refinement_rounds,
            "turns": r.turns,
            "final_answer": r.final_answer,
            "correct": r.correct,
            **extra,
        }


def feedback_summary(critique: Critique) -> str:
    """What the actor is shown: the first flagged step's feedback and the critic's hint."""
    first = critique.first_error_step
    if first is None:
        return ""
    text = critique.feedback_for(first) or f"Step {first} is wrong."
    return f"{text} Hint: {critique.hint}" if critique.hint else text


def run_episode(env: MathReasoningEnv, policy: Any, seed: int | None = None,
                options: dict[str, Any] | None = None) -> EpisodeRecord:
    """Play one episode with ``policy.act(observation, info) -> action``; returns the episode record."""
    observation, info = env.reset(seed=seed, options=options)
    while True:
        observation, _, terminated, truncated, info = env.step(policy.act(observation, info))
        if terminated or truncated:
            return info["record"]

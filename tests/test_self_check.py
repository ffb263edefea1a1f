import random

from agents.backends.hf import HFBackend
from agents.prompts import PromptTemplate
from critics import Critic
from critics.self_check import SelfCheckCritic
from envs import SyntheticArithmetic, corrupt_solution
from pipeline.checkpoints import SHIPPED_ACTOR


def test_self_check_finds_slips_the_actor_would_not_make():
    critic = SelfCheckCritic(HFBackend(SHIPPED_ACTOR, threads=2), PromptTemplate(number_format="reversed"))
    assert isinstance(critic, Critic)
    problems = SyntheticArithmetic(size=40, min_steps=1, max_steps=3, split="test", seed=9)[:]
    rng = random.Random(0)
    bad = [corrupt_solution(p, rng.randint(1, p.difficulty), "calculation", rng) for p in problems]
    on_bad = critic.critique_batch(problems, [b.steps for b in bad])
    on_good = critic.critique_batch(problems, [p.steps for p in problems])
    located = sum(c.first_error_step == b.error_step for c, b in zip(on_bad, bad))
    false_alarms = sum(not c.is_correct for c in on_good)
    assert located >= 30, located  # the actor is right on >= 90 % of 1-3 step problems, so it sees most slips
    assert false_alarms <= 8, false_alarms
    flagged = next(c for c, b in zip(on_bad, bad) if c.first_error_step == b.error_step)
    assert "recomputing it gives" in flagged.feedback_for(flagged.first_error_step)
    assert critic.critique(problems[0], []).steps == ()

"""What kinds of mistakes the actor makes, and what the self-check critic sees of them.

1. The actor's wrong solutions on held-out problems (greedy and T=1.0), classified by the oracle critic's
   feedback on the first wrong step: misread operand, arithmetic, wrong operation, a route that does not follow.
2. ``critic=self`` on solutions with one injected arithmetic slip (located at the right step?) and on reference
   solutions (false alarms), 1-3 steps.

    python benchmarks/actor_errors.py [--checkpoint checkpoints/tiny-actor] [--problems 800]

With ``--levels``, instead: per level, the greedy accuracy and at which step the wrong solutions first go wrong
(the oracle critic's first flagged step) and how -- where an actor's solutions of levels beyond its references
break down:

    python benchmarks/actor_errors.py --checkpoint checkpoints/tiny-actor-easy --levels 4 5 6 7 --problems 200 \
        --out benchmarks/results/actor_errors_by_level_start.json
"""

from __future__ import annotations

import argparse
import random
import re
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agents import Actor, PromptTemplate, SamplingParams  # noqa: E402
from agents.backends.hf import HFBackend  # noqa: E402
from critics import NullCritic, OracleCritic  # noqa: E402
from critics.self_check import SelfCheckCritic  # noqa: E402
from envs import EnvConfig, SyntheticArithmetic, corrupt_solution  # noqa: E402
from rollout import rollout  # noqa: E402
from storage import atomic_write_json  # noqa: E402

KINDS = [("misread operand", r"where it should use"), ("arithmetic", r" is -?[\d./]+, not "),
         ("wrong operation", r"it should compute"), ("does not follow", r"does not follow"),
         ("answer line", r"final answer")]


def error_kind(feedback: str) -> str:
    for name, pattern in KINDS:
        if re.search(pattern, feedback, re.IGNORECASE):
            return name
    return "other"


def first_error(oracle: OracleCritic, record) -> tuple[int, str]:
    """A wrong solution's first error: the oracle's first flagged step (0: none, only the answer) and its kind."""
    critique = oracle.critique(record.problem, record.steps)
    first = critique.first_error_step
    return first or 0, error_kind(critique.feedback_for(first)) if first else "other"


def first_errors(backend: HFBackend, template: PromptTemplate, level: int, problems: int) -> dict:
    """Greedy solutions of ``problems`` test problems of one level: accuracy, and the first wrong step's index
    and kind for each wrong one (0: the oracle flags no step, only the answer)."""
    tasks = SyntheticArithmetic(size=problems, min_steps=level, max_steps=level, split="test", seed=level)[:]
    actor = Actor(backend, template, SamplingParams(max_new_tokens=240))
    records = rollout(tasks, actor, NullCritic(), EnvConfig(max_refinements=0), batch_size=64)
    oracle, steps, kinds = OracleCritic(), Counter(), Counter()
    for record in records:
        if not record.correct:
            step, kind = first_error(oracle, record)
            steps[step] += 1
            kinds[kind] += 1
    return {"problems": len(records), "accuracy": round(sum(r.correct for r in records) / len(records), 3),
            "first_error_step": {str(k): v for k, v in sorted(steps.items())}, "kinds": dict(kinds.most_common())}


def by_level(args, backend: HFBackend, template: PromptTemplate) -> dict:
    result: dict = {"config": vars(args), "levels": {}}
    print(f"{'level':<7}{'accuracy':>9}  first wrong step (count)  |  kinds")
    for level in args.levels:
        row = result["levels"][str(level)] = first_errors(backend, template, level, args.problems)
        wrong = sum(row["first_error_step"].values())
        print(f"{level:<7}{row['accuracy']:>9.3f}  " + ", ".join(f"{k}: {v}" for k, v in row["first_error_step"].items())
              + "  |  " + ", ".join(f"{k} {v / wrong:.0%}" for k, v in row["kinds"].items()))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=str(ROOT / "checkpoints" / "tiny-actor"))
    parser.add_argument("--problems", type=int, default=800)
    parser.add_argument("--self-check-problems", type=int, default=40)
    parser.add_argument("--levels", type=int, nargs="*", default=None,
                        help="per level (--problems each): accuracy and where the first error falls, instead")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "actor_errors.json"))
    args = parser.parse_args()

    backend = HFBackend(args.checkpoint, threads=2)
    template = PromptTemplate(number_format="reversed")
    if args.levels:
        atomic_write_json(args.out, by_level(args, backend, template))
        print(f"wrote {args.out}")
        return
    oracle = OracleCritic()
    problems = SyntheticArithmetic(size=args.problems, split="test", seed=0)[:]
    result: dict = {"config": vars(args), "errors": {}}
    print(f"{'decoding':<10}{'wrong':>7}  kinds of the first error")
    for temperature in (0.0, 1.0):
        actor = Actor(backend, template, SamplingParams(max_new_tokens=200, temperature=temperature, seed=0))
        records = rollout(problems, actor, NullCritic(), EnvConfig(max_refinements=0), batch_size=64)
        kinds = Counter(first_error(oracle, record)[1] for record in records if not record.correct)
        wrong = sum(kinds.values())
        result["errors"][f"T={temperature}"] = {"wrong": wrong, "of": len(records), "kinds": dict(kinds.most_common())}
        shares = ", ".join(f"{k} {v / wrong:.0%}" for k, v in kinds.most_common())
        print(f"{'T=' + str(temperature):<10}{wrong:>7}  {shares}")

    critic = SelfCheckCritic(backend, template)
    small = SyntheticArithmetic(size=args.self_check_problems, min_steps=1, max_steps=3, split="test", seed=9)[:]
    rng = random.Random(0)
    bad = [corrupt_solution(p, rng.randint(1, p.difficulty), "calculation", rng) for p in small]
    located = sum(c.first_error_step == b.error_step
                  for c, b in zip(critic.critique_batch(small, [b.steps for b in bad]), bad))
    alarms = sum(not c.is_correct for c in critic.critique_batch(small, [p.steps for p in small]))
    result["self_check"] = {"problems": len(small), "slips_located": located, "false_alarms_on_references": alarms}
    print(f"critic=self: injected slip located {located}/{len(small)}; false alarms on reference solutions "
          f"{alarms}/{len(small)}")
    atomic_write_json(args.out, result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

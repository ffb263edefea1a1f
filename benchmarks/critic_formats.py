"""Which critique text can a tiny critic learn? Train one critic per format on the same critique data, score each.

Formats (each a way of writing the same training-form critique):

* ``copy``: one generation per critique; each step line first copies the solution's computation, then gives
  the critic's own, then the verdict: ``Step 2: 51*3=160 -> 51*3=153 wrong | ...``, then ``Verdict`` and
  ``Hint`` lines;
* ``stepwise`` (the shipped format, ``critics/model_critic.py``): the critic writes its own computation, its
  code reads the solution's in after ``| says`` and sets the two results side by side, the critic writes the
  verdict: ``Step 2: 51*3=153 | says 51*3=160 | =153 =160 | wrong | ...``; after the whole critiques the
  stepwise critic gets the two verdict drills of ``trainers/critic_sft.py`` (``--verdict-line-steps``,
  ``--verdict-steps``; 0 turns them off).

Both start from the actor with the same data; both are scored by the ``eval_critic`` scorer on the
same held-out solutions (the actor's natural samples at T=1, injected errors, the actor's greedy solutions).
Trained critics land in ``runs/critic_formats/<format>``; ``--checkpoint FORMAT=DIR`` scores a critic already
trained instead. Results: ``benchmarks/results/critic_formats.{json,md}``.

    python train.py stages=[warmup,critique_data] autocritique=full run_dir=runs/full     # the data (11 min)
    python benchmarks/critic_formats.py --data runs/full/critique_data/critiques.jsonl    # minutes on a GPU

The training settings default to the shipped critic's recipe (``CriticSFTConfig``); on 2 CPU cores that is
about 2 hours per format, so ``--train-steps`` shortens it there.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agents import Actor, PromptTemplate, SamplingParams  # noqa: E402
from agents.backends.hf import HFBackend  # noqa: E402
from autocritique import read_dataset  # noqa: E402
from critics import Critique, ModelCritic  # noqa: E402
from critics.model_critic import model_text, stated_value  # noqa: E402
from envs import SyntheticArithmetic  # noqa: E402
from evaluation import write_results  # noqa: E402
from evaluation.critic_eval import collect_eval_solutions, score_critic  # noqa: E402
from evaluation.report import format_critic_table  # noqa: E402
from trainers.critic_sft import CriticSFTConfig, train_tiny_critic  # noqa: E402


def copy_text(critique: Critique, steps, answer=None) -> str:
    """The ``copy`` format: the solution's computation, ``->``, the critic's own, the verdict; one generation."""
    judgements = []
    for j in critique.steps:
        stated = stated_value(steps[j.index - 1]) if 0 < j.index <= len(steps) and not j.is_answer else None
        judgements.append(replace(j, check=f"{stated} -> {j.check}") if j.check and stated else j)
    return replace(critique, steps=tuple(judgements)).render()


FORMATS = {"copy": (copy_text, "whole"), "stepwise": (model_text, "stepwise")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(ROOT / "runs" / "full" / "critique_data" / "critiques.jsonl"))
    parser.add_argument("--actor", default=str(ROOT / "checkpoints" / "tiny-actor"))
    parser.add_argument("--formats", nargs="+", default=list(FORMATS), choices=list(FORMATS))
    parser.add_argument("--checkpoint", action="append", default=[], metavar="FORMAT=DIR",
                        help="score this trained critic instead of training one for FORMAT")
    shipped = CriticSFTConfig()  # the shipped critic's recipe
    parser.add_argument("--train-steps", type=int, default=shipped.train_steps)
    parser.add_argument("--verdict-line-steps", type=int, default=shipped.verdict_line_steps)
    parser.add_argument("--verdict-steps", type=int, default=shipped.verdict_steps)
    parser.add_argument("--problems-per-level", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args()

    given = dict(item.split("=", 1) for item in args.checkpoint)
    template = PromptTemplate(number_format="reversed")
    actor_backend = HFBackend(args.actor, threads=2)
    actor = Actor(actor_backend, template, SamplingParams(max_new_tokens=160, seed=args.seed))
    problems = SyntheticArithmetic(size=args.problems_per_level * 8, min_steps=1, max_steps=8, split="test",
                                   seed=args.seed + 7)[:]  # the eval_critic stage's held-out problems
    sets = collect_eval_solutions(problems, actor, temperature=1.0, seed=args.seed)

    scores, trained = {}, {}
    for name in args.formats:
        render, generation = FORMATS[name]
        path = given.get(name)
        if path is None:
            path = ROOT / "runs" / "critic_formats" / name
            drills = ({"verdict_line_steps": args.verdict_line_steps, "verdict_steps": args.verdict_steps}
                      if name == "stepwise" else {"verdict_line_steps": 0, "verdict_steps": 0})
            recipe = CriticSFTConfig(init="actor", train_steps=args.train_steps, seed=args.seed, **drills)
            summary = train_tiny_critic(recipe, read_dataset(args.data), path, actor_checkpoint=args.actor,
                                        render=render)
            trained[name] = {k: summary[k] for k in ("train_seconds", "train_loss", "examples")}
        backend = HFBackend(path, threads=2, batch_size=64)
        verdicts = ["model", "checks"] if generation == "stepwise" else ["model"]
        for mode in verdicts:
            critic = ModelCritic(backend, template, max_new_tokens=320 if generation == "whole" else 64,
                                 verdicts=mode, generation=generation)
            label = f"{name}: {'model verdicts' if mode == 'model' else 'computations compared in code'}"
            scores[label] = {subset: score_critic(critic.critique_batch([s.problem for s in sols], [s.steps for s in sols]),
                                                  sols) for subset, sols in sets.items()}
            scores[label]["parse_failures"] = critic.parse_failures
    table = format_critic_table(scores, title=f"Critique formats, {len(problems)} held-out problems (1-8 steps)")
    print(table)
    sizes = {k: {"n": len(v), "wrong": sum(s.wrong for s in v)} for k, v in sets.items()}
    write_results(args.out, "critic_formats", {**vars(args), "sets": sizes}, {"scores": scores, "trained": trained},
                  {"formats": table})


if __name__ == "__main__":
    main()

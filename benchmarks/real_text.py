"""How the verifier, the oracle and the parsers do on real text (no model needed; about a minute on 2 cores).

1. math-verify's own 260 test cases (tests/data/math_verify): how often ``verify_response(pred, gold)`` agrees
   with the expected verdict, beside math-verify's default ``verify(parse(gold), parse(pred))``;
2. all 8,792 GSM8K reference solutions, their answer stated five ways (``#### N``, ``A: N``, "The answer is
   N.", each of the last two with a trailing sentence holding a number): share verified right;
3. the 500 MATH-500 reference solutions against their gold answers;
4. the oracle's false alarms on the 100 right refined solutions of the paper's released refinement rows;
5. the slowest call of any critique parser or answer reader on pathological inputs.

    python benchmarks/real_text.py [--data ../shared/data]   # writes benchmarks/results/real_text.{json,md}
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from math_verify import parse, verify  # noqa: E402

from core.critique import CritiqueParseError  # noqa: E402
from critics import OracleCritic  # noqa: E402
from critics.paper_format import from_refinement_row  # noqa: E402
from envs import load_gsm8k  # noqa: E402
from rewards.answer import solution_lines  # noqa: E402
from rewards.verifier import verify_response  # noqa: E402
from storage import atomic_write_json, atomic_write_text  # noqa: E402
from tests.test_parsers import CRITIQUE_PARSERS, ODD, PATHOLOGICAL, TEXT_READERS  # noqa: E402


def _math_verify_cases() -> dict:
    cases = [json.loads(line) for line in open(ROOT / "tests" / "data" / "math_verify" / "cases.jsonl")]
    ours = sum(verify_response(c["pred"], c["gold"]).correct == bool(c["expected"]) for c in cases)
    theirs = 0
    for c in cases:
        try:
            theirs += bool(verify(parse(c["gold"]), parse(c["pred"]))) == bool(c["expected"])
        except Exception:
            theirs += not c["expected"]
    return {"cases": len(cases), "verify_response": ours, "math_verify_default": theirs}


def _gsm8k(data: Path) -> dict:
    rows = [json.loads(line) for split in ("train", "test") for line in open(data / "gsm8k" / f"{split}.jsonl")]
    forms = {"#### N": "{body}#### {gold}", "A: N": "{body}A: {gold}", "The answer is N.": "{body}The answer is {gold}.",
             "A: N + remark": "{body}A: {gold}\nChecked 2 times.",
             "The answer is N. + remark": "{body}The answer is {gold}.\nI checked it 3 times."}
    out = {}
    for name, form in forms.items():
        right = 0
        for row in rows:
            body, gold = row["answer"].rsplit("####", 1)
            right += verify_response(form.format(body=body, gold=gold.strip()), gold.strip()).correct
        out[name] = {"right": right, "of": len(rows)}
    return out


def _math500(data: Path) -> dict:
    rows = [json.loads(line) for line in open(data / "math500" / "test.jsonl")]
    return {"right": sum(verify_response(r["solution"], r["answer"]).correct for r in rows), "of": len(rows)}


def _oracle_on_refinements(data: Path) -> dict:
    problems = {p.question.strip(): p for split in ("train", "test")
                for p in load_gsm8k(data / "gsm8k" / f"{split}.jsonl", split=split)}
    rows = json.load(open(data / "mathcritique" / "llama3-8b-gsm8k-refinement-samples.json"))
    flagged = 0
    for i, row in enumerate(rows):
        parsed = from_refinement_row(row, index=i)
        steps = [s for s in solution_lines(parsed.refinement) if not s.lower().startswith("let's break")]
        flagged += not OracleCritic().critique(problems[parsed.question], steps).is_correct
    return {"flagged": flagged, "of": len(rows)}


def _slowest_parse() -> dict:
    worst = {}
    for name, parse_fn in {**CRITIQUE_PARSERS, **TEXT_READERS}.items():
        slowest = 0.0
        for text in PATHOLOGICAL + ODD:
            start = time.perf_counter()
            try:
                parse_fn(text)
            except CritiqueParseError:
                pass
            slowest = max(slowest, time.perf_counter() - start)
        worst[name] = round(slowest, 3)
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    args = parser.parse_args()
    data = Path(args.data)
    started = time.perf_counter()
    results = {"math_verify_cases": _math_verify_cases(), "gsm8k_references": _gsm8k(data),
               "math500_references": _math500(data), "oracle_on_right_refinements": _oracle_on_refinements(data),
               "slowest_parse_seconds": _slowest_parse()}
    results["seconds"] = round(time.perf_counter() - started, 1)
    mv, m5, orc = results["math_verify_cases"], results["math500_references"], results["oracle_on_right_refinements"]
    lines = ["| measure | result |", "|---|---|",
             f"| math-verify's test cases: verify_response agrees | {mv['verify_response']} / {mv['cases']} |",
             f"| math-verify's test cases: its default parse + verify agrees | {mv['math_verify_default']} / {mv['cases']} |"]
    lines += [f"| GSM8K references verified, answer as `{k}` | {v['right']} / {v['of']} |"
              for k, v in results["gsm8k_references"].items()]
    lines += [f"| MATH-500 references verified | {m5['right']} / {m5['of']} |",
              f"| oracle flags a right refined solution (paper's rows) | {orc['flagged']} / {orc['of']} |",
              f"| slowest critique parse or answer read, pathological input | "
              f"{max(results['slowest_parse_seconds'].values()):.3f} s |"]
    table = "\n".join(lines)
    print(table)
    out = ROOT / "benchmarks" / "results"
    atomic_write_json(out / "real_text.json", results)
    atomic_write_text(out / "real_text.md", table + "\n")


if __name__ == "__main__":
    main()

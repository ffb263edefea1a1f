"""Prompt templates: the one place where the text a model reads is defined, for every role.

Two templates with one interface. :class:`PromptTemplate` is the tiny world's raw text (below);
:class:`ChatTemplate` speaks to an instruct model through its tokenizer's chat template, with the role prompts
of the paper: solve (``SOLVE_PROMPT``), critique in the paper's format (``CRITIC_INSTRUCTION``) and refine with
a critique (``REFINE_PROMPT``, the paper's wording). :func:`template_for` picks one for a tokenizer.


A solve prompt is ``Problem: ...\\nSolution:\\n`` and the model writes ``Step 1: ...`` lines and ``Answer: ...``.
A refine prompt puts the critic's feedback between the problem and the solution, followed by the steps the
critic kept, so the model continues from the flagged step. A critique prompt is the whole solution followed by
``Critique:\\n``; the critic model writes the critique in the one critique format (``critics/critique.py``).
The same template serves training (SFT examples) and inference (the actor), so the two cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from agents.codec import NumberCodec
from core.critique import Critique, to_paper_text

__all__ = ["ANNOTATION_PROMPT", "CRITIC_INSTRUCTION", "ChatTemplate", "PROMPTED_ERROR_PROMPT", "PromptTemplate",
           "REFINE_PROMPT", "SELF_TALK_PROMPT", "SOLVE_PROMPT", "TEMPLATES", "chat_text", "template_for"]

SOLVE_PROMPT = ("{question}\nSolve the problem step by step, one step per line. Please also give your final answer "
                "in the format of 'The answer is [your answer].'")
# the self-talk model's request (critics/self_talk.py is the format): every step checked, a flagged one fixed
SELF_TALK_PROMPT = ("{question}\nSolve the problem step by step, one step per line. After each step write a line "
                    "'Check: ' with your own recomputation of that step followed by 'correct' or 'wrong'. After a "
                    "'wrong' check write a line 'Fix: ' with the corrected step, and go on from it. Please also give "
                    "your final answer in the format of 'The answer is [your answer].'")
# the paper's refinement request (its released refinement rows), followed by the critique in the paper's format
REFINE_PROMPT = ("I have made a step-by-step critic for your solution. Please read the following critic and use this "
                 "critic as a reference to provide a new detailed, step-by-step solution, including all reasoning and "
                 "intermediate steps. Please also give your final answer in the format of 'The answer is [your "
                 "answer].'\n\n{critique}")
FEEDBACK_PROMPT = "{question}\n\nFeedback on an earlier attempt: {feedback}"
CRITIC_INSTRUCTION = (
    "Review the solution to the math problem step by step. For each step, quote it as 'Step sentence', judge "
    "'Correctness of the step' as Correct or Wrong, and give an 'Explanation'. Then judge 'Correctness of the "
    "final answer' as Correct or Wrong with an 'Explanation'."
)
CRITIQUE_PROMPT = "{instruction}\n\nProblem: {question}\n\nSolution:\n{solution}"
# the annotator (the paper's GPT-4o) sees what a careful human grader would: gold answer and reference solution
ANNOTATION_PROMPT = """You are grading a student's solution to a math problem step by step.

Problem: {question}
Reference solution:
{reference}
Gold answer: {answer}
{location}
Student's solution:
{response}

For each student step write "Step sentence: <the step>", then "Correctness of the step: Correct" or
"Correctness of the step: Wrong", then "Explanation: <why>". After the last step write
"Correctness of the final answer: Correct" or "Correctness of the final answer: Wrong" and an "Explanation".
"""
# error-location and error-type control for real problems (the paper's prompted mistakes)
PROMPTED_ERROR_PROMPT = """Continue the solution below. Make exactly one {kind} at step {step}, then keep going as if it
were right, and end with a line "The answer is <answer>." Write one step per line and nothing else.

Problem: {question}
Steps so far:
{prefix}
Next steps:
"""


@dataclass(frozen=True)
class PromptTemplate:
    problem_prefix: str = "Problem: "
    feedback_prefix: str = "Feedback: "
    solution_header: str = "Solution:\n"
    critique_header: str = "Critique:\n"
    number_format: str = "plain"

    @property
    def codec(self) -> NumberCodec:
        return NumberCodec(self.number_format)

    def header(self, question: str, feedback: str = "", previous: Sequence[str] | None = None,
               critique: Critique | None = None) -> str:
        """Everything before the solution lines (model text, numbers encoded). The tiny world's refine prompt is
        the feedback alone: ``previous`` and ``critique`` (the attempt it answers) are for chat models."""
        text = f"{self.problem_prefix}{question}\n"
        if feedback:
            text += f"{self.feedback_prefix}{feedback}\n"
        return self.codec.encode(text + self.solution_header)

    def solution_lines(self, steps: Sequence[str]) -> str:
        """Solution lines in model text, each ending with a newline."""
        return "".join(self.codec.encode(step) + "\n" for step in steps)

    def prompt(self, question: str, steps: Sequence[str] = (), feedback: str = "") -> str:
        return self.header(question, feedback) + self.solution_lines(steps)

    def completion(self, steps: Sequence[str]) -> str:
        """The target text for SFT: the remaining lines, the last one without a trailing newline."""
        return self.solution_lines(steps).removesuffix("\n")

    def chat(self, request: str) -> str:
        return request

    def with_self_talk(self) -> PromptTemplate:
        """The self-talk model's template: the tiny model learns the format from its SFT, under the solve prompt."""
        return self

    def critique_prompt(self, question: str, steps: Sequence[str]) -> str:
        return self.prompt(question, steps) + self.codec.encode(self.critique_header)

    def critique_completion(self, critique_text: str) -> str:
        return self.codec.encode(critique_text)

    def decode(self, model_text: str) -> str:
        """Model text back to canonical text (ordinary numbers)."""
        return self.codec.decode(model_text)


def chat_text(tokenizer: Any, messages: list[dict[str, str]], generation_prompt: bool = True) -> str:
    """``messages`` rendered by the tokenizer's chat template (text, special tokens written out)."""
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)


@dataclass(frozen=True)
class ChatTemplate:
    """Prompts for instruct models: each role's request is a user turn, the model's text is its answer.

    A refinement is a second user turn after the earlier attempt (the paper's multi-turn form), and the steps
    the critic kept open the new answer, so the model continues from the flagged step as in the tiny world.
    Numbers are written plainly; ``decode`` is the identity.
    """

    tokenizer: Any = field(compare=False, repr=False)
    system: str | None = None
    solve_prompt: str = SOLVE_PROMPT  # the request that opens every solution ({question})

    number_format = "plain"

    @property
    def codec(self) -> NumberCodec:
        return NumberCodec("plain")

    def _messages(self, *turns: str) -> list[dict[str, str]]:
        roles = ["user", "assistant"]
        messages = [{"role": "system", "content": self.system}] if self.system else []
        return messages + [{"role": roles[i % 2], "content": text} for i, text in enumerate(turns)]

    def chat(self, request: str) -> str:
        """One user turn and the opening of the model's answer: any role's prompt (the annotator's too)."""
        return chat_text(self.tokenizer, self._messages(request))

    def header(self, question: str, feedback: str = "", previous: Sequence[str] | None = None,
               critique: Critique | None = None) -> str:
        solve = self.solve_prompt.format(question=question)
        if feedback and previous is not None and critique is not None:
            refine = REFINE_PROMPT.format(critique=to_paper_text(critique, previous))
            return chat_text(self.tokenizer, self._messages(solve, "\n".join(previous), refine))
        if feedback:
            return self.chat(FEEDBACK_PROMPT.format(question=solve, feedback=feedback))
        return self.chat(solve)

    def solution_lines(self, steps: Sequence[str]) -> str:
        return "".join(step + "\n" for step in steps)

    def with_self_talk(self) -> ChatTemplate:
        """The self-talk model's template: the request describes the format (an instruct model can follow it
        before any training)."""
        return replace(self, solve_prompt=SELF_TALK_PROMPT)

    def prompt(self, question: str, steps: Sequence[str] = (), feedback: str = "") -> str:
        return self.header(question, feedback) + self.solution_lines(steps)

    def completion(self, steps: Sequence[str]) -> str:
        """The SFT target (the trainer appends the end-of-turn token, the tokenizer's EOS)."""
        return "\n".join(steps)

    def critique_request(self, question: str, steps: Sequence[str]) -> str:
        solution = "\n".join(f"Step {i}: {step}" for i, step in enumerate(steps, start=1))
        return CRITIQUE_PROMPT.format(instruction=CRITIC_INSTRUCTION, question=question, solution=solution)

    def critique_prompt(self, question: str, steps: Sequence[str]) -> str:
        return self.chat(self.critique_request(question, steps))

    def critique_completion(self, critique_text: str) -> str:
        return critique_text

    def decode(self, model_text: str) -> str:
        return model_text


TEMPLATES = ("auto", "plain", "chat")


def template_for(tokenizer: Any, kind: str = "auto", number_format: str = "plain") -> PromptTemplate | ChatTemplate:
    """``chat`` for a tokenizer with a chat template (``auto``), else the plain template in ``number_format``."""
    if kind not in TEMPLATES:
        raise ValueError(f"template must be one of {', '.join(TEMPLATES)}, got {kind!r}")
    has_chat = tokenizer is not None and bool(getattr(tokenizer, "chat_template", None))
    if kind == "chat" and not has_chat:
        raise ValueError("template=chat but the model's tokenizer has no chat template")
    if kind == "chat" or (kind == "auto" and has_chat):
        return ChatTemplate(tokenizer)
    return PromptTemplate(number_format=number_format)

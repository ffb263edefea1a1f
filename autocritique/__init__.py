"""AutoMathCritique: flawed responses (stage 1), step-level critiques (stage 2), refinement-checked filtering
(stage 3), and the critique dataset they produce."""

from autocritique.annotate import Annotation, Annotator, LMAnnotator, OracleAnnotator, read_critique, training_form
from autocritique.flawed import FlawedResponse, located_errors, prompted_errors, sample_responses, typed_errors
from autocritique.pipeline import (
                                   AutoCritiqueConfig,
                                   build_critique_dataset,
                                   dataset_provenance,
                                   read_dataset,
                                   write_dataset,
)
from autocritique.refine_filter import FilterDecision, decide, refinement_filter

__all__ = [
    "Annotation", "Annotator", "AutoCritiqueConfig", "FilterDecision", "FlawedResponse", "LMAnnotator",
    "OracleAnnotator", "build_critique_dataset", "dataset_provenance", "decide", "located_errors", "prompted_errors",
    "read_critique", "read_dataset", "refinement_filter", "sample_responses", "training_form", "typed_errors",
    "write_dataset",
]

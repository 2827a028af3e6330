"""What one classified example came to: a prediction, or a classifier failure. Never both."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..answers import Answer
from ..dataset_rows import LABEL_CODE, Example

Outcome = Literal["tp", "fp", "fn", "tn", "error"]


@dataclass(frozen=True)
class Prediction:
    violation: bool
    severity: int
    label: str
    rationale: str | None
    reasoning: str | None
    raw: str
    latency_ms: float
    prompt_tokens: int | None = None
    completion_tokens: int | None = None

    @classmethod
    def of(cls, answer: Answer, *, reasoning: str | None, raw: str, latency_ms: float,
           prompt_tokens: int | None, completion_tokens: int | None) -> Prediction:
        # Binary and JSON answers may carry no code; "0"/"1" keeps the confusion table complete.
        label = answer.label or str(int(answer.violation))
        return cls(answer.violation, answer.severity, label, answer.rationale, reasoning, raw, latency_ms,
                   prompt_tokens, completion_tokens)


@dataclass(frozen=True)
class Failure:
    kind: str  # a ClassifierError kind: transport, timeout, http, unparseable
    message: str


@dataclass(frozen=True)
class ItemResult:
    example: Example
    prediction: Prediction | None
    failure: Failure | None = None
    cached: bool = False

    @property
    def verdict(self) -> str:
        """violation / allowed / error: what a reader compares between two policy versions."""
        if self.prediction is None:
            return "error"
        return "violation" if self.prediction.violation else "allowed"



def expected_positive(example: Example, threshold: int = 1) -> bool:
    """A labelled level at or above the threshold; a 0/1 label carries no level, so "1" counts at any."""
    return example.violation and (example.level is None or example.level >= threshold)


def predicted_positive(prediction: Prediction, threshold: int = 1) -> bool:
    """A violation at or above the threshold; an answer without a level (binary, JSON, a route's joined answer)
    counts at any threshold, like a 0/1 label."""
    leveled = LABEL_CODE.fullmatch(prediction.label) is not None
    return prediction.violation and (not leveled or prediction.severity >= threshold)


def outcome_of(result: ItemResult, threshold: int = 1) -> Outcome:
    """tp/fp/fn/tn with "violation at level >= threshold" as the positive class, or error. Pure."""
    if result.prediction is None:
        return "error"
    expected = expected_positive(result.example, threshold)
    if predicted_positive(result.prediction, threshold):
        return "tp" if expected else "fp"
    return "fn" if expected else "tn"

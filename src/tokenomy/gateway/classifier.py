"""A fast complexity classifier: a few text features and a logistic model give p(complex) per request.

Features: prompt length, conversation depth, a requested format (JSON, schema, table), task
words that mark simple work (translate, summarise, rewrite…) or hard work (prove, design,
debug, step by step…), code and math in the prompt, and how many requirements it lists. The
weights are fitted with numpy (`fit_logistic`) on the shipped labelled prompts
(`data/prompts.jsonl`) by `benchmarks/gateway_classifier.py --write`, and stored as data in
`data/classifier.json`; a held-out split of the prompts measures the accuracy honestly.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

DATA_DIR = Path(__file__).resolve().parent / "data"
PROMPTS_FILE = DATA_DIR / "prompts.jsonl"
WEIGHTS_FILE = DATA_DIR / "classifier.json"
CLASSES = ("simple", "complex")  # the request classes `Classifier.classify` produces
SCAN_CHARS = 8000  # word and pattern features look at the last user message's first 8,000 characters

WORD = re.compile(r"[a-z0-9+#']+")
ARITHMETIC = re.compile(r"\d\s*[-+*/^×÷=<>]\s*\(?\d")
LIST_ITEM = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+", re.MULTILINE)

# Words and 6-letter stems (so 'summarise', 'summarize' and 'summary' all count). Distinct words are counted.
SIMPLE_WORDS = frozenset(
    "translate translation rewrite rephrase paraphrase proofread grammar spelling synonym synonyms define "
    "capital convert sort round classify sentiment label tag extract hashtags hi hello hey thanks joke "
    "recommend suggest briefly short shorter tl;dr tldr polite friendly formal catchy".split()
)
SIMPLE_STEMS = frozenset("transl summar paraph spelli synony classi".split())
SIMPLE_PHRASES = (
    "what is",
    "what's",
    "what does",
    "who wrote",
    "who painted",
    "how many",
    "how do i say",
    "one sentence",
    "one line",
    "in words",
    "title case",
    "thank you",
)
COMPLEX_WORDS = frozenset(
    "prove proof derive justify why reason reasoning tradeoffs trade compare evaluate critique assess design "
    "architecture implement refactor debug diagnose optimise optimize algorithm complexity strategy plan "
    "migration migrate scale scaling postmortem generalise generalize recurrence counterexample edge tests test "
    "race deadlock leak concurrency consistency security vulnerabilities forecast model rigorously "
    "interleaving structure robust".split()
)
COMPLEX_STEMS = frozenset("analys analyz implem optimi archit diagno concur consis vulner migrat deriva".split())
COMPLEX_PHRASES = (
    "step by step",
    "explain why",
    "explain how",
    "explain the",
    "think it through",
    "edge case",
    "root cause",
    "trade-off",
    "show that",
    "walk through",
    "walk me through",
)
FORMAT_WORDS = frozenset("json schema yaml xml csv table markdown fhir rfc iso".split())
CODE_WORDS = frozenset(
    "def class func fn import return select insert update alter create #include python javascript typescript "
    "rust golang go c++ java sql bash react kubernetes docker dockerfile nginx postgres postgresql redis kafka "
    "git regex asyncio api http async await lambda".split()
)
MATH_WORDS = frozenset(
    "integral derivative equation theorem lemma probability expected matrix eigenvalues prime primes irrational "
    "induction inequality group graph converges diverges series sum bayes recurrence tiling dominoes".split()
)
CODE_CHARS = ("```", "{", ";", "()", "=>", "==", "->")


FEATURES = (
    "log_chars_last",
    "log_chars_all",
    "turns",
    "format",
    "simple_words",
    "complex_words",
    "code",
    "math",
    "questions",
    "list_items",
    "sentences",
)


def _text(content: Any) -> str:
    """The text of a message's content: a string, or the text parts of a list of content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def request_texts(body: dict[str, Any]) -> tuple[str, int, int]:
    """(last user text, characters of all messages, user turns) of a chat or completion request body."""
    messages = body.get("messages")
    if isinstance(messages, list):
        last, total, turns = "", 0, 0
        for m in messages:
            if not isinstance(m, dict):
                continue
            text = _text(m.get("content"))
            total += len(text)
            if m.get("role") == "user":
                last, turns = text, turns + 1
        return last, total, turns
    prompt = body.get("prompt")
    if isinstance(prompt, list):
        prompt = " ".join(p for p in prompt if isinstance(p, str))
    text = prompt if isinstance(prompt, str) else ""
    return text, len(text), 1


def _hits(words: set[str], stems: set[str], vocabulary: frozenset[str], stem_set: frozenset[str]) -> int:
    return len(words & vocabulary) + len(stems & stem_set)


def feature_values(body: dict[str, Any]) -> list[float]:
    """The feature vector of a request body (order of FEATURES), each roughly in 0–3, as plain floats (the request
    path: no array to build for eleven numbers)."""
    last, total_chars, turns = request_texts(body)
    scan = last[:SCAN_CHARS].lower()
    words = set(WORD.findall(scan))
    stems = {w[:6] for w in words if len(w) > 6}
    simple = _hits(words, stems, SIMPLE_WORDS, SIMPLE_STEMS) + len([p for p in SIMPLE_PHRASES if p in scan])
    complex_ = _hits(words, stems, COMPLEX_WORDS, COMPLEX_STEMS) + len([p for p in COMPLEX_PHRASES if p in scan])
    code = len(words & CODE_WORDS) + sum([min(scan.count(c), 3) for c in CODE_CHARS])
    math_hits = len(words & MATH_WORDS) + (min(len(ARITHMETIC.findall(scan)), 3) if any_digit(scan) else 0)
    wants_format = "response_format" in body or not words.isdisjoint(FORMAT_WORDS)
    return [
        math.log1p(len(last)) / 4,
        math.log1p(total_chars) / 4,
        min(turns - 1, 5) / 5 if turns else 0.0,
        1.0 if wants_format else 0.0,
        min(simple, 4) / 2,
        min(complex_, 6) / 2,
        min(code, 6) / 2,
        min(math_hits, 6) / 2,
        min(scan.count("?"), 4) / 2,
        min(len(LIST_ITEM.findall(scan)), 8) / 4,
        min(scan.count(". ") + scan.count(".\n"), 12) / 4,
    ]


DIGIT = re.compile(r"\d")


def any_digit(text: str) -> bool:
    """Whether the text has a digit (no arithmetic without one: the ARITHMETIC scan is skipped)."""
    return DIGIT.search(text) is not None


def features(body: dict[str, Any]) -> np.ndarray:
    """The feature vector of a request body (order of FEATURES), each roughly in 0–3."""
    return np.array(feature_values(body))


@dataclass(frozen=True)
class Classifier:
    """Logistic model over FEATURES: p(complex) = σ(w·x + b); class "complex" at or above `threshold`."""

    weights: np.ndarray
    bias: float
    threshold: float = 0.5

    def __post_init__(self) -> None:
        object.__setattr__(self, "_weights", tuple(float(w) for w in self.weights))  # plain floats: a cheap dot

    def p_complex(self, body: dict[str, Any]) -> float:
        """σ(w·x + b) of a request body."""
        z = sum([w * x for w, x in zip(self._weights, feature_values(body), strict=True)]) + self.bias
        return 1.0 / (1.0 + math.exp(-max(min(z, 40.0), -40.0)))

    def classify(self, body: dict[str, Any]) -> tuple[str, float]:
        """(class, p(complex)) of a request body."""
        p = self.p_complex(body)
        return ("complex" if p >= self.threshold else "simple"), p


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 0.1, iterations: int = 50) -> tuple[np.ndarray, float]:
    """Weights and bias of an L2-regularised logistic regression, by Newton's method (IRLS)."""
    n, k = x.shape
    xb = np.hstack([x, np.ones((n, 1))])
    theta = np.zeros(k + 1)
    penalty = np.eye(k + 1) * l2
    penalty[-1, -1] = 0.0  # the bias is not shrunk
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-np.clip(xb @ theta, -40, 40)))
        grad = xb.T @ (p - y) + penalty @ theta
        hess = (xb * (p * (1 - p))[:, None]).T @ xb + penalty
        step = np.linalg.solve(hess, grad)
        theta -= step
        if np.abs(step).max() < 1e-8:
            break
    return theta[:-1], float(theta[-1])


def load_prompts(path: Path = PROMPTS_FILE) -> list[dict[str, Any]]:
    """The labelled prompt set: one JSON object a line with messages, label (simple|complex) and task."""
    with path.open() as fh:
        return [json.loads(line) for line in fh if line.strip()]


def is_held_out(prompt_id: str, fraction: float = 0.3) -> bool:
    """A fixed, content-independent split: every prompt whose id hashes into the first `fraction` is held out."""
    digest = sum((i + 1) * ord(c) for i, c in enumerate(prompt_id)) * 2654435761 % 2**32
    return digest / 2**32 < fraction


@cache
def default_classifier(threshold: float = 0.5) -> Classifier:
    """The shipped classifier (weights in data/classifier.json)."""
    data = json.loads(WEIGHTS_FILE.read_text())
    if list(data["features"]) != list(FEATURES):
        raise ValueError(f"{WEIGHTS_FILE}: features {data['features']} do not match the code's {FEATURES}")
    return Classifier(np.array(data["weights"], dtype=float), float(data["bias"]), threshold)

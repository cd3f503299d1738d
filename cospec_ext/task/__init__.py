"""The demo's embedded task: synthetic step-by-step arithmetic, a char-level tokenizer, GSM8K I/O.

    from cospec_ext.task import generate, is_correct, build_tokenizer
    probs = generate(100, seed=0, split="test")   # list of dict(question, answer, final)

Modules: `arith` (generator, splits, answer checking), `tokenizer` (character-level
`PreTrainedTokenizerFast`), `gsm8k` (GSM8K-format JSONL loader and answer extraction).
The tokenizer needs `transformers`; it is imported lazily.
"""

from .arith import extract_answer, generate, is_correct, make_problem, split_of
from .gsm8k import extract_gsm8k_answer, load_gsm8k, normalize_number


def build_tokenizer():
    """Character-level tokenizer (see `cospec_ext.task.tokenizer.build_tokenizer`)."""
    from .tokenizer import build_tokenizer as _build

    return _build()


__all__ = [
    "make_problem",
    "generate",
    "split_of",
    "extract_answer",
    "is_correct",
    "build_tokenizer",
    "load_gsm8k",
    "extract_gsm8k_answer",
    "normalize_number",
]

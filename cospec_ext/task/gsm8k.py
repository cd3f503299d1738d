"""GSM8K-format data: JSONL loading and the standard final-answer extraction.

GSM8K JSONL: one JSON object per line, {"question": str, "answer": str}, where the answer
is the worked solution followed by "#### <final>", e.g.

    {"question": "Tom has 3 apples ...", "answer": "He has 3+2=<<3+2=5>>5 apples.\\n#### 5"}

Conventions (those of the usual GSM8K evaluation scripts):
    * the reference final answer is the text after the last "####", whitespace stripped,
      thousands separators removed ("1,000" -> "1000"), a leading "$" and a trailing "."
      dropped;
    * a model output's answer is the text after its last "####" when present, otherwise
      the last number in the text; it is normalized the same way before comparison.
No file is shipped: point `load_gsm8k` at a local copy (nothing is downloaded).
"""

from __future__ import annotations

import json
import os
import re

ANSWER_SEP = "####"
# A number as written in text: optional sign and $, digits with optional thousands commas,
# optional decimals ("-$1,234.50", "7", ".5").
_NUMBER_RE = re.compile(r"-?\$?(?:\d[\d,]*(?:\.\d+)?|\.\d+)")


def normalize_number(text: str) -> str:
    """Canonical form of a final answer string: strip whitespace, remove "," and "$",
    drop trailing "." (sentence end) and trailing zero decimals ("5.00" -> "5")."""
    s = text.strip().replace(",", "").replace("$", "").strip()
    s = s.rstrip(".").strip()
    if re.fullmatch(r"-?\d+\.\d+", s):
        s = s.rstrip("0").rstrip(".")
    if s == "-0":
        s = "0"
    return s


def extract_gsm8k_answer(model_output: str) -> str | None:
    """Normalized final answer of a model output: after the last "####" if present (its first
    line), else the last number in the text; None when neither yields anything."""
    if ANSWER_SEP in model_output:
        tail = model_output.rsplit(ANSWER_SEP, 1)[1].strip()
        tail = tail.split("\n", 1)[0]
        nums = _NUMBER_RE.findall(tail)
        ans = normalize_number(nums[0] if nums else tail)
        return ans or None
    nums = _NUMBER_RE.findall(model_output)
    if not nums:
        return None
    return normalize_number(nums[-1]) or None


def gsm8k_is_correct(model_output: str, final: str) -> bool:
    """Exact match of the extracted answer with the normalized reference `final`
    (numerically when both parse as numbers)."""
    got = extract_gsm8k_answer(model_output)
    if got is None:
        return False
    want = normalize_number(final)
    try:
        return float(got) == float(want)
    except ValueError:
        return got == want


def load_gsm8k(path: str | os.PathLike, limit: int | None = None) -> list[dict]:
    """Records of a GSM8K-format JSONL file as dict(question, answer, final).

    `final` is the normalized text after the answer's last "####" (records without "####"
    are an error: ValueError naming the line). Blank lines are skipped; `limit` keeps the
    first `limit` records.
    """
    out: list[dict] = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            rec = json.loads(line)
            question, answer = rec["question"], rec["answer"]
            if ANSWER_SEP not in answer:
                raise ValueError(f"{path}:{lineno}: answer has no '{ANSWER_SEP}'")
            final = normalize_number(answer.rsplit(ANSWER_SEP, 1)[1])
            out.append({"question": question, "answer": answer, "final": final})
            if limit is not None and len(out) >= limit:
                break
    return out

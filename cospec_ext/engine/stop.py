"""Stop strings, with generate(stop_strings=..., tokenizer=...)'s semantics.

generate() runs transformers' `StopStringCriteria` after every token over the whole sequence
(prompt, with its padding, then the new tokens): a row stops at the token that completes a
stop string, i.e. when the text of the trailing tokens ends with the stop string and the
string overlaps the last token (matching through the tokenizer's vocabulary, token-wise). The
engine commits several tokens per round, so it asks the same criteria, batched, about every
prefix that ends at a token committed this round, and cuts the row after the first match
(like EOS). Using transformers' own class is what makes the match exactly generate()'s.
"""

from __future__ import annotations

import torch


class StopStrings:
    """stop_strings (str or list of str) over `tokenizer` (a transformers tokenizer)."""

    def __init__(self, stop_strings, tokenizer):
        from transformers.generation.stopping_criteria import StopStringCriteria

        if isinstance(stop_strings, str):
            stop_strings = [stop_strings]
        if (not isinstance(stop_strings, (list, tuple)) or not stop_strings
                or not all(isinstance(s, str) and s for s in stop_strings)):
            raise ValueError(f"`stop_strings` must be a non-empty string or a list of them, got {stop_strings!r}")
        if tokenizer is None:
            raise ValueError("`stop_strings` needs a `tokenizer` (the model's), as generate() does")
        if not callable(getattr(tokenizer, "get_vocab", None)):
            raise TypeError(f"`tokenizer` must be a transformers tokenizer, got {type(tokenizer).__name__}")
        try:
            self.criteria = StopStringCriteria(tokenizer, list(stop_strings))
        except ValueError as e:  # e.g. a vocabulary it cannot turn back into strings
            raise ValueError(f"`stop_strings`: transformers' StopStringCriteria rejects them with this `tokenizer` "
                             f"(generate() would too): {e}") from e
        self.window = int(self.criteria.maximum_token_len)  # tokens the criteria reads back from the end

    def cut(self, tails: list[list[int]], new: list[int]) -> list[int | None]:
        """tails[b]: row b's committed token ids (prompt included) ending with the new[b] tokens
        of this round, at least `window` tokens before each of them when the row has them.
        Returns per row the number of this round's tokens to keep, the last one completing a
        stop string (the first such), or None when none does."""
        ends: dict[int, list[tuple[int, int]]] = {}  # window length -> [(row, new token index)]
        for b, (t, n) in enumerate(zip(tails, new)):
            for j in range(n):
                end = len(t) - n + j + 1
                ends.setdefault(min(end, self.window), []).append((b, j))
        hits: list[int | None] = [None] * len(tails)
        for w, who in ends.items():
            ids = torch.tensor([tails[b][len(tails[b]) - new[b] + j + 1 - w: len(tails[b]) - new[b] + j + 1]
                                for b, j in who], dtype=torch.int64)  # [M, w]
            done = self.criteria(ids, None).tolist()  # [M]
            for (b, j), d in zip(who, done):
                if d and (hits[b] is None or j + 1 < hits[b]):
                    hits[b] = j + 1
        return hits

"""Streaming committed tokens out of `decode` as rounds commit them.

Two kinds of streamer:
  - a transformers streamer (TextStreamer, TextIteratorStreamer, any object with `put(value)`
    and `end()`), batch 1 only, as generate() requires: `put` first receives the prompt ids
    (int64 CPU [1, P], as generate() passes input_ids), then each round's committed tokens
    (int64 CPU [1, n], as generate()'s assisted decoding passes a round's valid tokens), and
    `end()` is called once when decoding stops;
  - a plain callable `fn(row, token_ids)`, any batch: called once per row per round with the
    row index in the batch (int) and the tokens it committed in that round (list of int),
    cut after EOS / a stop string / max_new_tokens. Concatenated, a row's chunks are its new
    tokens in `out.sequences` up to and including its end token (no padding).
"""

from __future__ import annotations

import torch


class Stream:
    """The normalized streamer of one decode call."""

    def __init__(self, streamer, batch: int):
        put, end = getattr(streamer, "put", None), getattr(streamer, "end", None)
        self.hf = callable(put) and callable(end)
        if not self.hf and not callable(streamer):
            raise TypeError(f"`streamer` must be a transformers streamer (with put() and end()) or a callable "
                            f"fn(row, token_ids), got {type(streamer).__name__}")
        if self.hf and batch != 1:
            raise ValueError(f"`streamer`: a transformers streamer ({type(streamer).__name__}) needs batch size 1, "
                             f"as generate() does, got {batch} rows (pass a callable fn(row, token_ids) instead)")
        self.streamer = streamer

    def prompt(self, input_ids: torch.Tensor) -> None:
        """input_ids int64 [1, P]: what generate() puts first."""
        if self.hf:
            self.streamer.put(input_ids.cpu())

    def chunks(self, rows: list[int], tokens: list[list[int]]) -> None:
        """Row rows[i] (original index) committed tokens[i] this round (empty lists skipped)."""
        for r, t in zip(rows, tokens):
            if not t:
                continue
            if self.hf:
                self.streamer.put(torch.tensor([t], dtype=torch.int64))  # [1, n]
            else:
                self.streamer(r, t)

    def end(self) -> None:
        if self.hf:
            self.streamer.end()

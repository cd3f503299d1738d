"""An in-memory tokenizer for the tiny models (no downloads): a BPE over single characters plus
multi-character tokens (no merges, so text encodes character by character, while generated ids
decode to multi-character pieces), a Fuse decoder (pieces concatenate), wrapped in
transformers' PreTrainedTokenizerFast. Ids: <pad> 0, <bos> 1, <unk> 2, <eos> 3 (as _models)."""

from __future__ import annotations

from tokenizers import Tokenizer, decoders, models
from transformers import PreTrainedTokenizerFast

SPECIALS = ["<pad>", "<bos>", "<unk>", "<eos>"]
CHARS = list("abcdefgh")
PIECES = ["ab", "ba", "cd", "dc", "ef", "fe", "gh", "hg", "abc", "cde", "efg", "fgh", "ha", "ah", "de", "ed", "bc",
          "cb", "aa", "bb"]
VOCAB = SPECIALS + CHARS + PIECES  # 32 tokens: build the tiny models with vocab=len(VOCAB)


def piece_tokenizer() -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(VOCAB)}, merges=[], unk_token="<unk>"))
    tok.decoder = decoders.Fuse()
    tok.add_special_tokens(SPECIALS)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>",
                                   unk_token="<unk>", padding_side="left", clean_up_tokenization_spaces=False)

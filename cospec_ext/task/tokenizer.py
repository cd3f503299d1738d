"""Character-level tokenizer of the embedded task, in Hugging Face `transformers` format.

Built with the `tokenizers` library (a `WordLevel` model over single characters, each
input character split off by a regex pre-tokenizer, a `Fuse` decoder that concatenates
without spaces) and wrapped in `transformers.PreTrainedTokenizerFast`, so it saves with
`save_pretrained(dir)` and loads offline with `AutoTokenizer.from_pretrained(dir)`.

Vocabulary (ids are fixed; `VOCAB` lists them in order):
    0 <pad>   1 <bos>   2 <eos>
    3..20     the task characters  0-9 + - * ( ) = ; #   (id 3 is "0", ..., id 12 is "9")
    21..      the other printable ASCII characters (space, letters, punctuation) and "\\n",
              so GSM8K-style text also encodes without unknowns
    last      <unk>
Encoding: `tok(text)` gives `<bos>` + one id per character (no `<eos>`: a prompt is
`<bos>` + question and the model continues with the answer characters, then `<eos>`).
Training sequences are `<bos>` + question + answer + `<eos>` (`encode_example`).
Padding side is "left" (batched generation).
"""

from __future__ import annotations

import string

PAD, BOS, EOS = "<pad>", "<bos>", "<eos>"
UNK = "<unk>"
PAD_ID, BOS_ID, EOS_ID = 0, 1, 2
TASK_CHARS = "0123456789+-*()=;#"
_OTHER = "".join(c for c in string.printable if c not in TASK_CHARS and c not in "\t\r\x0b\x0c")
VOCAB: list[str] = [PAD, BOS, EOS] + list(TASK_CHARS) + list(_OTHER) + [UNK]
UNK_ID = len(VOCAB) - 1
VOCAB_SIZE = len(VOCAB)


def _backend():
    """The raw `tokenizers.Tokenizer` (char-level WordLevel, `<bos>` prepended)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors

    tok = Tokenizer(models.WordLevel(vocab={t: i for i, t in enumerate(VOCAB)}, unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tok.decoder = decoders.Fuse()
    tok.add_special_tokens([PAD, BOS, EOS, UNK])
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, BOS_ID)]
    )
    return tok


def build_tokenizer():
    """A `PreTrainedTokenizerFast` over `VOCAB` (pad=0, bos=1, eos=2, unk=last, left padding)."""
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(
        tokenizer_object=_backend(),
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        padding_side="left",
        model_max_length=128,
        clean_up_tokenization_spaces=False,
    )
    assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id) == (PAD_ID, BOS_ID, EOS_ID)
    return tok


def encode_prompt(question: str) -> list[int]:
    """`<bos>` + question character ids (no tokenizer object needed): list of int."""
    return [BOS_ID] + [_CHAR_ID.get(c, UNK_ID) for c in question]


def encode_example(question: str, answer: str) -> tuple[list[int], int]:
    """Training ids `<bos>` + question + answer + `<eos>` and the index where the answer
    starts (positions >= that index are the answer tokens, `<eos>` included)."""
    prompt = encode_prompt(question)
    ids = prompt + [_CHAR_ID.get(c, UNK_ID) for c in answer] + [EOS_ID]
    return ids, len(prompt)


def decode(ids) -> str:
    """Characters of `ids` (int sequence), special tokens dropped."""
    return "".join(VOCAB[i] for i in ids if i > EOS_ID and i != UNK_ID)


_CHAR_ID = {c: i for i, c in enumerate(VOCAB) if len(c) == 1}

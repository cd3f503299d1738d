// Every schema of the `cospec` library, defined once. Implementations register
// per backend in <op>/<op>_cpu.cpp and <op>/<op>_cuda.cu; fake (meta)
// implementations for torch.compile live beside the wrappers in cospec_ext/ops.py.
#include <torch/library.h>

TORCH_LIBRARY(cospec, m) {
  // Walks each tree from the root, accepting the child whose token the target picks
  // (greedy: argmax; temperature > 0: lossless multi-draft speculative sampling driven by
  // `uniforms`), optionally accepting a mismatching child where `accept_draft` says so.
  m.def(
      "verify_tree(Tensor candidates, Tensor parents, Tensor? target_logits=None, "
      "Tensor? target_argmax=None, Tensor? accept_draft=None, float temperature=0.0, "
      "Tensor? uniforms=None) -> (Tensor path, Tensor accept_len, Tensor next_token, "
      "Tensor consulted, Tensor arbiter_accepted)");
  // One online-softmax pass over logits [B, N, V]: per node argmax, max, logsumexp, entropy,
  // top-2 margin, and log p_parent(candidate) for every non-root node.
  m.def(
      "logit_stats(Tensor logits, Tensor? candidates=None, Tensor? parents=None) -> (Tensor "
      "argmax, Tensor max_logit, Tensor logsumexp, Tensor entropy, Tensor margin, Tensor "
      "cand_logprob)");
  // The arbiter's MLP over feature rows [M, F] in one fused kernel: one logit per row.
  m.def(
      "arbiter_score(Tensor features, Tensor w1, Tensor b1, Tensor? w2, Tensor? b2, Tensor "
      "w_out, Tensor b_out, str activation='gelu') -> Tensor");
  // The arbiter's features of every node of each draft tree, float32 [B, N, 20] (the
  // columns of FEATURE_NAMES; the root's row is zero): target statistics at the node's
  // parent and at the node, draft statistics at the parent (draft_parent_logits[b, i]:
  // the draft's logits after node i's parent), KL(draft || target) there, the tree
  // position, and the look-ahead along first children (at most `levels` nodes).
  m.def(
      "node_features(Tensor target_logits, Tensor candidates, Tensor parents, Tensor depth, "
      "Tensor rank, Tensor n_generated, Tensor draft_parent_logits, int levels) -> Tensor");
  // Compacts the accepted path of each tree to the front of the KV cache [..., B, H, S, D],
  // in place; returns the new lengths base_len + |path|.
  m.def("kv_rollback(Tensor(a!) cache, Tensor base_len, Tensor path) -> Tensor");
  // Appends each row's accepted tokens and next token to its sequence, cut at the first EOS
  // and at `limit`, in place; returns int64 [3, B]: kept, finished, accept_len.
  m.def(
      "commit_tokens(Tensor(a!) seq, Tensor(b!) total, Tensor candidates, Tensor path, Tensor "
      "accept_len, Tensor next_token, Tensor eos_ids, int limit) -> Tensor");
  // The attention mask of a forward over tree nodes, written into `out` [B, 1, nq, S]: the
  // committed prefix [pad, root_slot) and each query's ancestors-or-self at root_slot + j.
  m.def("tree_mask(Tensor(a!) out, Tensor pad, Tensor root_slot, Tensor anc) -> ()");
  // y = x W^T + b for a handful of rows x [M, K] (a decode step, a draft level, a verification
  // tree), reading each weight W [N, K] once: register tiles over rows, float32 accumulation.
  m.def("linear_rows(Tensor x, Tensor weight, Tensor? bias=None) -> Tensor");
  // y = x W^T + b for many rows x [M, K] (a batched verification, a prefill), W [n, K] given as
  // column panels packed [ceil(n / 48), K, 48] (ops.pack_weight): broadcast-FMA register tiles.
  m.def("linear_packed(Tensor x, Tensor packed, int n, Tensor? bias=None) -> Tensor");
  // Attention of a few queries per row over a static KV cache under a boolean mask, K/V heads
  // grouped (SDPA's enable_gqa), only the slots some query opens read; an all-false row gets 0.
  m.def("tree_attention(Tensor q, Tensor k, Tensor v, Tensor mask, float scale) -> Tensor");
  // linear_packed over `packed` (ops.pack_weight(weight)) when x has >= packed_rows_min rows,
  // else linear_rows over `weight`, chosen when the op runs (a graph dynamic in the rows).
  m.def(
      "linear_auto(Tensor x, Tensor weight, Tensor? packed, Tensor? bias, int packed_rows_min) -> "
      "Tensor");
}

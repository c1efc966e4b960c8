// The feature cases the CUDA forward and backward tests share: every mask, logit term,
// dropout, GQA, layout and varlen form, each a change to one base case. Each direction's
// test adds the cases only it needs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <iterator>
#include <utility>
#include <vector>

#include "common/attention_case.h"

namespace tileflash::testing::gpu {

// Whether a case uses a logit term or dropout, which the Hopper kernels leave to the
// Ampere-class ones.
inline bool uses_logit_extras(const CaseConfig& c) {
  return c.softcap > 0.0f || c.bias != CaseConfig::Bias::none || c.alibi != CaseConfig::Alibi::none ||
         c.dropout_p > 0.0f || (c.softmax_scale && !(*c.softmax_scale > 0.0f));
}

// Cases made by changing one base case: add() appends a copy of `base` with `change`
// applied.
struct CaseVariants {
  CaseConfig base;
  std::vector<CaseConfig> cases;

  template <class Change>
  void add(Change change) {
    CaseConfig c = base;
    change(c);
    cases.push_back(c);
  }
};

// Two sequences of 37 queries against 577 keys, three heads: odd sizes that end inside tiles.
inline CaseConfig base_case(DType dtype, std::int64_t head_dim) {
  CaseConfig c;
  c.dtype = dtype;
  c.head_dim = head_dim;
  c.batch = 2;
  c.heads_q = 3;
  c.heads_kv = 3;
  c.seq_q = 37;
  c.seq_k = 577;
  return c;
}

// Odd sizes and seq_q != seq_k both ways, rotated across the head dims so each meets a
// different shape, causal and not; long cases take batch 1.
inline std::vector<CaseConfig> shape_grid_cases(DType dtype, const std::vector<std::int64_t>& head_dims) {
  const std::pair<std::int64_t, std::int64_t> seqs[] = {{1, 1}, {37, 577}, {577, 37}, {1000, 1000}, {1, 1000}, {129, 64}};
  std::vector<CaseConfig> cases;
  for (std::size_t i = 0; i < head_dims.size(); ++i)
    for (bool causal : {false, true}) {
      CaseConfig c = base_case(dtype, head_dims[i]);
      const auto [seq_q, seq_k] = seqs[(i + (causal ? 3 : 0)) % std::size(seqs)];
      c.seq_q = seq_q;
      c.seq_k = seq_k;
      c.batch = seq_q * seq_k > 100000 ? 1 : 2;
      c.causal = causal;
      cases.push_back(c);
    }
  return cases;
}

// Cases where a persistent block's walk crosses from one tile to the next under every
// kind of tile boundary: a causal band (tiles of different lengths), a window (tiles with
// no rows), GQA, varlen sequences (tiles past a sequence's end) and seq_q != seq_k.
inline std::vector<CaseConfig> persistent_walk_cases(DType dtype, std::int64_t head_dim) {
  CaseConfig base = base_case(dtype, head_dim);
  base.seq_q = 577;
  base.seq_k = 1000;
  CaseVariants variants{base, {base}};
  variants.add([](CaseConfig& c) { c.causal = true; });
  variants.add([](CaseConfig& c) { c.window_left = 60; c.window_right = 0; c.seq_q = c.seq_k = 1000; });
  variants.add([](CaseConfig& c) { c.heads_q = 6; c.heads_kv = 2; c.causal = true; c.seq_q = 1000; });
  variants.add([](CaseConfig& c) { c.seqlens_q = {37, 0, 577, 1, 300}; c.seqlens_k = {577, 5, 37, 0, 1000}; });
  return variants.cases;
}

inline std::vector<CaseConfig> shared_feature_cases(const CaseConfig& base) {
  CaseVariants variants{base, {}};
  const DType dtype = base.dtype;
  variants.add([](CaseConfig& c) { c.seq_q = c.seq_k = 577; c.causal = true; });
  variants.add([](CaseConfig& c) { c.seq_q = 577; c.seq_k = 300; c.causal = true; });  // rows with no key
  variants.add([](CaseConfig& c) { c.seq_q = c.seq_k = 577; c.window_left = 50; c.window_right = 10; });
  variants.add([](CaseConfig& c) { c.seq_q = 200; c.seq_k = 577; c.window_left = 70; c.causal = true; });
  variants.add([](CaseConfig& c) { c.bias = CaseConfig::Bias::full; });
  variants.add([&](CaseConfig& c) { c.bias = CaseConfig::Bias::per_head; c.bias_dtype = dtype; c.causal = true; });
  variants.add([](CaseConfig& c) { c.bias = CaseConfig::Bias::per_batch; c.seq_q = 100; });
  variants.add([](CaseConfig& c) { c.alibi = CaseConfig::Alibi::per_head; c.causal = true; });
  variants.add([](CaseConfig& c) { c.alibi = CaseConfig::Alibi::per_batch_head; });
  variants.add([](CaseConfig& c) { c.softcap = 5.0f; c.input_stddev = 3.0; });
  variants.add([](CaseConfig& c) { c.dropout_p = 0.17f; c.dropout_seed = 12345; c.dropout_offset = 0x100000007ull; });
  variants.add([](CaseConfig& c) { c.heads_q = 8; c.heads_kv = 2; c.causal = true; });
  variants.add([](CaseConfig& c) { c.heads_first = true; c.seq_q = 129; });
  variants.add([](CaseConfig& c) { c.softmax_scale = -0.3f; });
  variants.add([](CaseConfig& c) { c.seqlens_q = {37, 0, 577, 1, 100}; c.seqlens_k = {577, 5, 37, 0, 100}; });
  variants.add([](CaseConfig& c) {
    c.seqlens_q = {300, 1, 64};
    c.seqlens_k = {257, 33, 64};
    c.causal = true;
    c.heads_first = true;
  });
  variants.add([&](CaseConfig& c) {  // everything at once
    c.seqlens_q = {129, 77, 1};
    c.seqlens_k = {200, 77, 40};
    c.heads_q = 6;
    c.heads_kv = 2;
    c.causal = true;
    c.window_left = 90;
    c.bias = CaseConfig::Bias::full;
    c.bias_dtype = dtype;
    c.alibi = CaseConfig::Alibi::per_head;
    c.softcap = 8.0f;
    c.dropout_p = 0.3f;
    c.dropout_seed = 7;
  });
  return variants.cases;
}

}  // namespace tileflash::testing::gpu

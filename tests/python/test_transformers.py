"""attn_implementation="tileflash" in Hugging Face transformers gives eager's logits."""

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import tileflash.integrations.transformers as tileflash_hf  # noqa: E402

VOCAB = 101


@pytest.fixture(scope="module", autouse=True)
def registered():
    return tileflash_hf.register()


def tiny_config(family):
    common = {"vocab_size": VOCAB, "attention_dropout": 0.0}
    if family == "llama-gqa":
        return transformers.LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                                        **common)
    if family == "gpt-neox":
        return transformers.GPTNeoXConfig(hidden_size=80, intermediate_size=160, num_hidden_layers=2,
                                          num_attention_heads=4, rotary_pct=0.25, max_position_embeddings=256,
                                          **common)
    if family == "gpt2":
        return transformers.GPT2Config(n_embd=64, n_layer=2, n_head=4, n_positions=256, vocab_size=VOCAB,
                                       attn_pdrop=0.0, embd_pdrop=0.0, resid_pdrop=0.0)
    if family == "mistral-sliding":
        return transformers.MistralConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                          num_attention_heads=4, num_key_value_heads=1, sliding_window=8,
                                          max_position_embeddings=256, **common)
    raise AssertionError(family)


def build(family, dtype, seed):
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(tiny_config(family), attn_implementation="tileflash")
    return model.to(dtype).eval()


def batch_with_padding(generator, batch=3, seq=37):
    input_ids = torch.randint(0, VOCAB, (batch, seq), generator=generator)
    attention_mask = torch.ones(batch, seq, dtype=torch.long)
    attention_mask[1, :11] = 0  # left padding
    if batch > 2:
        attention_mask[2, 29:] = 0  # right padding
    return input_ids, attention_mask


def logits_of(model, implementation, **inputs):
    model.set_attn_implementation(implementation)
    with torch.no_grad():
        return model(**inputs).logits


TOLERANCE = {torch.float64: 1e-6, torch.float32: 2e-4}
# transformers' eager attention takes the softmax in float32, where a float64 model's padding
# mask (finfo(float64).min) becomes -inf: fully padded rows turn into NaN and spread. Padded
# float64 batches are therefore compared with torch's SDPA (its float64 math kernel).
PADDED_REFERENCE = {torch.float64: "sdpa", torch.float32: "eager"}
FAMILIES = ["llama-gqa", "gpt-neox", "gpt2", "mistral-sliding"]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("family", FAMILIES)
def test_logits_match_eager_with_and_without_padding(rng, family, dtype):
    model = build(family, dtype, int(torch.randint(0, 2**31, (1,), generator=rng)))
    assert model.config._attn_implementation == "tileflash"
    input_ids, attention_mask = batch_with_padding(rng)

    ours = logits_of(model, "tileflash", input_ids=input_ids)
    eager = logits_of(model, "eager", input_ids=input_ids)
    assert (ours - eager).abs().max().item() < TOLERANCE[dtype]

    ours = logits_of(model, "tileflash", input_ids=input_ids, attention_mask=attention_mask)
    reference = logits_of(model, PADDED_REFERENCE[dtype], input_ids=input_ids, attention_mask=attention_mask)
    valid = attention_mask.bool()
    assert torch.isfinite(ours[valid]).all()
    assert (ours[valid] - reference[valid]).abs().max().item() < TOLERANCE[dtype]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("family", ["llama-gqa", "gpt-neox"])
def test_greedy_generation_with_left_padding_matches(rng, family, dtype):
    """Prefill with a padding mask, then one-token steps against the KV cache."""
    model = build(family, dtype, int(torch.randint(0, 2**31, (1,), generator=rng)))
    input_ids, attention_mask = batch_with_padding(rng, batch=2, seq=21)
    settings = {"max_new_tokens": 6, "do_sample": False, "pad_token_id": 0}
    model.set_attn_implementation("tileflash")
    ours = model.generate(input_ids=input_ids, attention_mask=attention_mask, **settings)
    model.set_attn_implementation(PADDED_REFERENCE[dtype])
    reference = model.generate(input_ids=input_ids, attention_mask=attention_mask, **settings)
    assert torch.equal(ours, reference)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
def test_training_gradients_match(rng, dtype):
    model = build("llama-gqa", dtype, int(torch.randint(0, 2**31, (1,), generator=rng)))
    model.train()
    input_ids, attention_mask = batch_with_padding(rng, seq=19)
    labels = input_ids.masked_fill(attention_mask == 0, -100)
    # The loss at position t is the prediction from position t - 1: a padded position must not
    # predict either (eager gives a fully masked query row uniform weights, tileflash zero).
    labels[:, 1:] = labels[:, 1:].masked_fill(attention_mask[:, :-1] == 0, -100)
    gradients = {}
    for implementation in ("tileflash", PADDED_REFERENCE[dtype]):
        model.set_attn_implementation(implementation)
        model.zero_grad()
        model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss.backward()
        gradients[implementation] = [p.grad.clone() for p in model.parameters()]
    for ours, reference in zip(gradients["tileflash"], gradients[PADDED_REFERENCE[dtype]]):
        assert (ours - reference).abs().max().item() < TOLERANCE[dtype]


def test_mask_builder_returns_padding_mask_only_when_needed():
    from transformers.masking_utils import causal_mask_function

    padding = torch.ones(2, 6, dtype=torch.bool)
    assert tileflash_hf.mask(batch_size=2, q_length=6, kv_length=6, mask_function=causal_mask_function,
                             attention_mask=padding) is None
    padding[0, 0] = False
    built = tileflash_hf.mask(batch_size=2, q_length=6, kv_length=6, mask_function=causal_mask_function,
                              attention_mask=padding)
    assert built.shape == (2, 6) and built.dtype == torch.bool

"""The joint SELF/NEXT pass: its mask and position ids, and equality with two separate causal passes."""

from __future__ import annotations

import pytest
import torch
from retrosearch.trainers.llara.config import LLaRAConfig
from retrosearch.trainers.llara.model import LLaRAModel, load_causal_lm
from retrosearch.trainers.llara.prompt import (
    NEXT,
    SELF,
    TEXT,
    PromptIds,
    PromptSet,
    add_prompt_tokens,
    joint_batch,
)

from tests.trainers.retromae.helpers import scifact_texts

LENGTHS = (23, 7, 15)  # different lengths so that padding sits in every row but the longest


def _texts(tokenizer) -> list[list[int]]:
    ids = tokenizer(scifact_texts(3), add_special_tokens=False)["input_ids"]
    return [row[:n] for row, n in zip(ids, LENGTHS)]


def _setup(folder, style="paper", attn="sdpa"):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    prompts = PromptSet.named(style)
    add_prompt_tokens(tokenizer, prompts)
    config = LLaRAConfig(model=str(folder), corpus="unused", prompt=style, attn_implementation=attn)
    new_ids = tokenizer.convert_tokens_to_ids(list(prompts.added_tokens)) if prompts.added_tokens else None
    model = LLaRAModel(load_causal_lm(folder, config, new_ids), config).eval()
    return tokenizer, PromptIds.build(tokenizer, prompts), model


def _separate(model, ids: list[int], summary: int) -> torch.Tensor:
    # The ground truth: a plain causal pass over one unpadded sequence, no custom mask at all.
    with torch.no_grad():
        out = model.backbone(input_ids=torch.tensor([ids])).last_hidden_state
    return out[0, -summary:].mean(0)


def test_mask_isolates_self_and_next_and_next_positions_continue_the_text(llama_lm):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(llama_lm)
    prompt = PromptIds.build(tokenizer, PromptSet.named("paper"))
    assert prompt.self_part != prompt.next_part
    batch = joint_batch([[5, 6, 7], [8]], prompt, pad_id=0, padding_side="left")
    seg, vis, pos = batch.segments[1], batch.visible[1], batch.position_ids[1]
    rows_next, cols_self = seg == NEXT, seg == SELF
    assert not vis[rows_next][:, cols_self].any() and not vis[cols_self][:, rows_next].any()
    text = seg == TEXT
    assert vis[rows_next][:, text].all() and vis[cols_self][:, text].all()
    body = int(text.sum())
    assert pos[rows_next].tolist() == list(range(body, body + len(prompt.next_part)))
    assert pos[cols_self].tolist() == list(range(body, body + len(prompt.self_part)))
    assert batch.input_ids[1, -1] == tokenizer.eos_token_id or tokenizer.eos_token_id in prompt.next_part
    # Padding (row 1 is shorter) is never looked at by a real token.
    assert not vis[seg != 0][:, seg == 0].any()


@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_joint_pass_equals_two_separate_passes(family, side, llama_lm, gpt2_lm):
    folder = llama_lm if family == "llama" else gpt2_lm
    tokenizer, prompt, model = _setup(folder)
    texts = _texts(tokenizer)
    batch = joint_batch(texts, prompt, tokenizer.pad_token_id, side)
    with torch.no_grad():
        e_self, e_next = model.embed(
            batch.input_ids, batch.position_ids, batch.visible, batch.self_index, batch.next_index
        )
    for row, text in enumerate(texts):
        head = list(prompt.head) + text
        want_self = _separate(model, head + list(prompt.self_part), 1)
        want_next = _separate(model, head + list(prompt.next_part), 1)
        torch.testing.assert_close(e_self[row], want_self, atol=2e-5, rtol=1e-4)
        torch.testing.assert_close(e_next[row], want_next, atol=2e-5, rtol=1e-4)
    # The two prompts must give different vectors, or the equalities above prove nothing.
    assert not torch.allclose(e_self, e_next, atol=1e-3)


def test_eager_attention_and_the_reference_eight_token_prompts_agree_too(llama_lm):
    tokenizer, prompt, model = _setup(llama_lm, style="reference", attn="eager")
    assert prompt.summary == 8 and len(set(prompt.self_part[-8:])) == 8
    texts = _texts(tokenizer)
    batch = joint_batch(texts, prompt, tokenizer.pad_token_id, "left")
    with torch.no_grad():
        e_self, e_next = model.embed(
            batch.input_ids, batch.position_ids, batch.visible, batch.self_index, batch.next_index
        )
    for row, text in enumerate(texts):
        head = list(prompt.head) + text
        torch.testing.assert_close(
            e_self[row], _separate(model, head + list(prompt.self_part), 8), atol=2e-5, rtol=1e-4
        )
        torch.testing.assert_close(
            e_next[row], _separate(model, head + list(prompt.next_part), 8), atol=2e-5, rtol=1e-4
        )

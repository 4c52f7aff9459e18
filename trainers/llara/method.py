"""LLaRA as a harness method: text pairs from a corpus in, an encoder folder (last-token pooling) out."""

from __future__ import annotations

from pathlib import Path

from transformers import AutoConfig

from retrosearch.core.encoder import position_limit
from retrosearch.trainers.harness.data import read_texts
from retrosearch.trainers.harness.method import CheckpointMethod, RunInfo
from retrosearch.trainers.llara.config import LLaRAConfig
from retrosearch.trainers.llara.data import LLaRACollator, TokenPairs, build_pairs
from retrosearch.trainers.llara.export import export_llara
from retrosearch.trainers.llara.model import LLaRAModel, load_causal_lm, unwrap
from retrosearch.trainers.llara.prompt import PromptIds, PromptSet, add_prompt_tokens

# The exported encoder reads at least this far (training texts are cut short for speed).
_MIN_EXPORT_LENGTH = 512


class LLaRAMethod(CheckpointMethod):
    """LLaRA's EBAE + EBAR post-training of a Hugging Face causal LM."""

    name = "llara"
    config: LLaRAConfig

    @property
    def prompts(self) -> PromptSet:
        """The prompt wording the config names."""
        return PromptSet.named(self.config.prompt)

    def load_tokenizer(self):
        """The base tokenizer with the prompt's tokens added and a pad token."""
        tokenizer = super().load_tokenizer()
        add_prompt_tokens(tokenizer, self.prompts)
        if tokenizer.pad_token is None:
            # Padding is masked out, so any id works; decoder LLMs often ship without one.
            tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
        return tokenizer

    def prompt_ids(self) -> PromptIds:
        """The prompts as this tokenizer's ids."""
        return PromptIds.build(self.tokenizer, self.prompts)

    def new_token_ids(self) -> list[int]:
        """Ids of the prompt's added tokens (empty for the paper's prompts)."""
        return [int(i) for i in self.tokenizer.convert_tokens_to_ids(list(self.prompts.added_tokens))]

    def load_examples(self) -> TokenPairs:
        """Consecutive (text, next) pairs of the corpus's documents."""
        cfg = self.config
        positions = position_limit(AutoConfig.from_pretrained(str(self.model_path)))
        longest = cfg.max_length + self.prompt_ids().overhead
        if positions and longest > positions:
            raise ValueError(
                f"max_length {cfg.max_length} plus the prompts exceeds the {positions} positions of {cfg.model}"
            )
        texts = read_texts(cfg.corpus, cfg.text_field, cfg.title_field, cfg.title_separator)
        pairs = build_pairs(texts, self.tokenizer, cfg)
        if not len(pairs):
            raise ValueError(f"{cfg.corpus}: no (text, next) pairs of at least {cfg.min_tokens} tokens")
        return pairs

    def build_model(self) -> LLaRAModel:
        """The causal LM (with LoRA adapters when configured) wrapped with the LLaRA losses."""
        lm = load_causal_lm(self.model_path, self.config, self.new_token_ids())
        return LLaRAModel(lm, self.config)

    def build_collator(self) -> LLaRACollator:
        """Joint SELF/NEXT batches; see :class:`LLaRACollator`."""
        return LLaRACollator(self.tokenizer, self.config, self.prompt_ids())

    def export(self, model: LLaRAModel, out: Path, info: RunInfo) -> None:
        """An encoder folder: EBAE prompt for passages, EBAR prompt for queries, last-token pooling."""
        cfg = self.config
        provenance = self.provenance(
            info,
            pairs=cfg.pairs,
            prompt=cfg.prompt,
            weights={"ebae": cfg.self_weight, "ebar": cfg.next_weight, "lm": cfg.lm_weight},
            **({"lora": {"r": cfg.lora_r, "alpha": cfg.lora_alpha, "export": cfg.lora_export}} if cfg.lora else {}),
        )
        positions = position_limit(unwrap(model.lm).config)
        max_length = min(max(cfg.max_length + self.prompt_ids().overhead, _MIN_EXPORT_LENGTH), positions)
        export_llara(
            model.lm, self.tokenizer, out, self.prompts, max_length, provenance, cfg.lora_export == "adapter"
        )

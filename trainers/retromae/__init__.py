"""RetroMAE (EMNLP 2022) and DupMAE (RetroMAE v2) pretraining on the shared harness."""

from retrosearch.trainers.retromae.config import RetroMAEConfig
from retrosearch.trainers.retromae.data import RetroMAECollator
from retrosearch.trainers.retromae.decoder import DecoderConfig, DecoderLayer
from retrosearch.trainers.retromae.export import export_model, load_decoder, save_decoder
from retrosearch.trainers.retromae.mask import VocabTables, decoder_visibility, sample_word_masks, word_index
from retrosearch.trainers.retromae.method import RetroMAEMethod
from retrosearch.trainers.retromae.model import RetroMAEModel, load_masked_lm

__all__ = [
    "DecoderConfig",
    "DecoderLayer",
    "RetroMAECollator",
    "RetroMAEConfig",
    "RetroMAEMethod",
    "RetroMAEModel",
    "VocabTables",
    "decoder_visibility",
    "export_model",
    "load_decoder",
    "load_masked_lm",
    "sample_word_masks",
    "save_decoder",
    "word_index",
]

"""Contrastive fine-tuning of retrieval encoders with mined hard negatives (InfoNCE, exact cross-device gather)."""

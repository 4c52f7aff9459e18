"""``retrosearch pipeline``: one YAML file from pretraining to a served index.

The stages (pretrain -> mine -> finetune -> evaluate -> ingest -> serve) call the same functions as
the single-stage commands; each writes a manifest beside its output, so a second run skips what is
done, an interrupted training resumes from its checkpoint and a changed setting reruns its stage and
whatever that changes downstream.
"""

import torch

from kshot.training import MetaTrainer


def test_freeze_embeddings_keeps_word_embeddings_and_trains_the_rest(tiny_run):
    config, params = tiny_run
    params.freeze_embeddings = True
    params.meta_steps = 2
    params.eval_every = 0
    params.test_after_train = False
    trainer = MetaTrainer(config, params)
    trainer.train()
    from kshot.models import load_model

    before = load_model(config.model.name_or_path)
    after = trainer.algorithm.export_model()
    assert torch.equal(before.get_input_embeddings().weight, after.get_input_embeddings().weight)
    assert not after.get_input_embeddings().weight.requires_grad
    moved = [n for (n, a), b in zip(after.named_parameters(), before.parameters()) if not torch.equal(a, b)]
    assert any("encoder" in n for n in moved) and any("classifier" in n for n in moved)
    # Meta-parameters hold only what is trained: the frozen matrix is neither copied nor checkpointed.
    n_meta = sum(m.numel() for m in trainer.algorithm.state_dict()["meta"])
    assert n_meta == sum(p.numel() for p in after.parameters() if p.requires_grad)

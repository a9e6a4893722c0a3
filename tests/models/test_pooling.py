"""Mean pooling from BERT's own layers: the classifier reads tanh(LN(masked mean)/√H), and a saved folder
served by the pipeline predicts exactly what the converted model does."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import (
    AutoModelForSequenceClassification,
    BertConfig,
    BertForSequenceClassification,
    BertTokenizerFast,
    DistilBertConfig,
    DistilBertForSequenceClassification,
    pipeline,
)

from kshot.errors import ModelError
from kshot.models.pooling import (
    LAMBDA,
    freeze_pooling,
    head_features,
    is_mean_pooled,
    pooling_modules,
    set_classifier,
    to_mean_pooling,
)

from .. import synthetic

HIDDEN = 32
TEXTS = [
    "good great love excellent happy perfect nice",
    "bad poor",
    "the",
    "topic3w1 topic3w2 it was awful and broken",
]


@pytest.fixture(scope="module")
def tokenizer():
    # transformers 5's BertTokenizerFast takes the vocabulary itself (see tests/synthetic.py).
    return BertTokenizerFast(vocab={w: i for i, w in enumerate(synthetic.vocabulary(6))}, do_lower_case=True)


def tiny_bert(tokenizer, num_labels=2, attn_implementation="sdpa") -> BertForSequenceClassification:
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=HIDDEN,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        max_position_embeddings=64,
        num_labels=num_labels,
        attn_implementation=attn_implementation,
    )
    torch.manual_seed(0)
    return BertForSequenceClassification(config).eval()


def batch(tokenizer, texts=TEXTS) -> dict[str, torch.Tensor]:
    return dict(tokenizer(texts, padding=True, return_tensors="pt"))


@pytest.mark.parametrize("attn_implementation", ["sdpa", "eager"])
def test_features_are_the_normalised_masked_mean(tokenizer, attn_implementation):
    model = tiny_bert(tokenizer, attn_implementation=attn_implementation)
    inputs = batch(tokenizer)
    mask = inputs["attention_mask"]
    assert (mask == 0).any()  # the batch is padded
    with torch.no_grad():
        h = model.bert(**inputs).last_hidden_state  # the original layers' output
        mean = (h * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
        eps = model.config.layer_norm_eps
        reference = torch.tanh(torch.nn.functional.layer_norm(mean, (HIDDEN,), eps=eps) / math.sqrt(HIDDEN))
        # The construction exactly: the CLS token's own state leaks into the mean at 1/λ.
        leaky = torch.nn.functional.layer_norm(LAMBDA * mean + h[:, 0], (HIDDEN,), eps=eps)
        exact = torch.tanh(leaky / math.sqrt(HIDDEN))

        to_mean_pooling(model)
        features = head_features(model, **inputs)
        assert features.shape == (len(TEXTS), HIDDEN)
        assert (features - exact).abs().max() < 1e-5
        # The leak moves each coordinate by about 1/λ here (7e-4 measured at λ = 1000).
        assert (features - reference).abs().max() < 2 / LAMBDA
        norms = features.norm(dim=1)
        assert ((norms > 0.9) & (norms <= 1)).all()

        for i, text in enumerate(TEXTS):  # a row does not depend on the padding around it
            alone = head_features(model, **batch(tokenizer, [text]))
            assert (alone[0] - features[i]).abs().max() < 1e-5


def test_head_features_restores_modes_and_keeps_gradients(tokenizer):
    model = to_mean_pooling(tiny_bert(tokenizer)).train()
    features = head_features(model, **batch(tokenizer))
    assert model.training and all(m.training for m in model.modules())
    features.sum().backward()  # the body is trainable through the features
    assert model.bert.encoder.layer[0].attention.self.query.weight.grad is not None


def test_conversion_freezes_the_pooling_and_is_idempotent(tokenizer):
    model = tiny_bert(tokenizer)
    assert not is_mean_pooled(model) and pooling_modules(model) == ()
    to_mean_pooling(model)
    assert is_mean_pooled(model) and model.config.kshot_pooling == "mean"
    assert model.config.num_hidden_layers == len(model.bert.encoder.layer) == 3
    assert pooling_modules(model) == ("bert.encoder.layer.2", "bert.pooler")
    frozen = {
        f"{prefix}.{n}" for prefix in pooling_modules(model) for n, _ in model.get_submodule(prefix).named_parameters()
    }
    assert frozen and all(not p.requires_grad for n, p in model.named_parameters() if n in frozen)
    assert all(p.requires_grad for n, p in model.named_parameters() if n not in frozen)
    dropouts = [m.p for m in model.get_submodule("bert.encoder.layer.2").modules() if isinstance(m, torch.nn.Dropout)]
    assert dropouts and set(dropouts) == {0.0}  # a fixed function, in training too

    state = {k: v.clone() for k, v in model.state_dict().items()}
    assert to_mean_pooling(model) is model
    assert model.config.num_hidden_layers == len(model.bert.encoder.layer) == 3
    assert state.keys() == model.state_dict().keys()
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())


def test_prototypes_fold_into_the_head(tokenizer):
    model = tiny_bert(tokenizer, num_labels=1)
    inputs = batch(tokenizer, TEXTS[:1])
    model(**inputs, labels=torch.zeros(1))  # a 1-label forward with labels sets problem_type "regression"
    assert model.config.problem_type == "regression"
    to_mean_pooling(model)

    def support(n_classes):  # three texts per class, each class with its own topic words
        return [
            [" ".join(synthetic.topic_words(c)[j : j + 3] + ["it", "was"][: j % 3]) for j in range(3)]
            for c in range(n_classes)
        ]

    for n_classes in (3, 5):  # 1 -> 3 -> 5 rows
        texts = [t for shots in support(n_classes) for t in shots]
        labels = torch.arange(n_classes).repeat_interleave(3)
        names = [f"class {c}" for c in range(n_classes)]
        with torch.no_grad():
            features = head_features(model, **batch(tokenizer, texts))
            prototypes = torch.stack([features[labels == c].mean(0) for c in range(n_classes)])
            set_classifier(model, 2 * prototypes, -(prototypes**2).sum(1), names)
            logits = model(**batch(tokenizer, texts)).logits
        # 2·c·f − ‖c‖² = ‖f‖² − ‖f − c‖²: the nearest prototype wins.
        distances = torch.cdist(features, prototypes) ** 2
        assert torch.allclose(logits, (features**2).sum(1, keepdim=True) - distances, atol=1e-5)
        assert torch.equal(logits.argmax(1), labels)
        assert model.classifier.weight.shape == (n_classes, HIDDEN)
        assert model.classifier.weight.dtype == torch.float32 and model.num_labels == n_classes
        assert model.config.num_labels == n_classes and model.config.id2label[n_classes - 1] == names[-1]
        assert model.config.label2id == {n: i for i, n in enumerate(names)} and model.config.problem_type is None


def test_set_classifier_checks_shapes(tokenizer):
    model = tiny_bert(tokenizer, num_labels=1)
    set_classifier(model, torch.randn(27, HIDDEN, dtype=torch.float64), torch.zeros(27), [f"l{i}" for i in range(27)])
    assert model(**batch(tokenizer)).logits.shape == (len(TEXTS), 27)
    with pytest.raises(ModelError, match=r"\[labels, 32\]"):
        set_classifier(model, torch.zeros(3, HIDDEN + 1), torch.zeros(3), ["a", "b", "c"])
    with pytest.raises(ModelError, match="must agree"):
        set_classifier(model, torch.zeros(3, HIDDEN), torch.zeros(3), ["a", "b"])
    with pytest.raises(ModelError, match="distinct"):
        set_classifier(model, torch.zeros(2, HIDDEN), torch.zeros(2), ["a", "a"])


def test_saved_folder_serves_the_same_predictions(tokenizer, tmp_path):
    model = to_mean_pooling(tiny_bert(tokenizer))
    names = ["negative", "neutral", "positive"]
    torch.manual_seed(1)
    set_classifier(model, torch.randn(3, HIDDEN), torch.randn(3), names)
    inputs = batch(tokenizer)
    with torch.no_grad():
        logits = model(**inputs).logits
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)

    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    assert type(reloaded) is BertForSequenceClassification
    assert reloaded.config.kshot_pooling == "mean" and is_mean_pooled(reloaded)
    with torch.no_grad():
        assert (reloaded(**inputs).logits - logits).abs().max() < 1e-6
    assert all(p.requires_grad for p in reloaded.parameters())  # requires_grad is not saved ...
    freeze_pooling(reloaded)  # ... so kshot freezes again after loading
    assert [n for n, p in reloaded.named_parameters() if not p.requires_grad] == [
        n for n, p in model.named_parameters() if not p.requires_grad
    ]

    classify = pipeline("text-classification", model=str(tmp_path), device="cpu")
    answers = classify(TEXTS, top_k=None)
    probabilities = logits.softmax(-1)
    for row, answer in zip(probabilities, answers):
        scores = {a["label"]: a["score"] for a in answer}
        assert set(scores) == set(names)
        assert max(abs(scores[n] - row[i].item()) for i, n in enumerate(names)) < 1e-6


def test_other_architectures_are_refused():
    config = DistilBertConfig(vocab_size=100, dim=32, n_layers=1, n_heads=4, hidden_dim=37)
    with pytest.raises(ModelError, match="DistilBertForSequenceClassification.*BertForSequenceClassification"):
        to_mean_pooling(DistilBertForSequenceClassification(config))


def test_default_model_features_are_sentence_embeddings():
    from kshot.models import load_model, load_tokenizer

    model, tokenizer = to_mean_pooling(load_model(None, ["a", "b"]).eval()), load_tokenizer(None)
    texts = ["A man is playing a guitar.", "Someone is playing the guitar.", "The stock market fell sharply today."]
    with torch.no_grad():
        features = head_features(model, **tokenizer(texts, padding=True, return_tensors="pt"))
    norms = features.norm(dim=1)
    assert ((norms > 0.8) & (norms < 1.2)).all()
    cos = torch.nn.functional.normalize(features, dim=1) @ torch.nn.functional.normalize(features, dim=1).T
    assert cos[0, 1] > cos[0, 2] and cos[0, 1] > cos[1, 2]

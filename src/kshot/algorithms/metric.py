"""What the metric-based algorithms (protonet, matchnet, relationnet, siamese) share.

Each embeds texts with the encoder (mean pooling, see :mod:`.embedding`) and scores query embeddings
against a *support state* built from the support embeddings: class prototypes, or the support
embeddings themselves. A subclass supplies three pieces: ``support_state``, ``scores`` and,
optionally, a small learned ``scorer`` module and its own ``episode_loss``.

Meta-training is episodic training without an inner loop: the loss of the query set given the
support set is back-propagated into the encoder (and the scorer) and one Adam step is taken.
``adapt`` builds the support state (optionally after a few fine-tuning steps); ``predict`` scores
over the model's labels, with −inf for labels absent from the support set. The support state and
the scorer are saved beside the model (``extra_files``), so an adapted folder predicts on its own
(`kshot predict` reads them back through :func:`has_saved_support` and ``load_pretrained``).
"""

from __future__ import annotations

import logging
from abc import abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from ..data import Episode, TaskExamples
from ..errors import ModelError
from ..models.loading import model_label_names
from ..models.pooling import is_mean_pooled
from .base import NEW_CLASSES_KEY, MetaAlgorithm, full_precision, reduce_mean
from .embedding import embed_task, encode_ids
from .heads import linear_head, prototypes
from .inner_loop import make_inner_optimizer
from .loss_scale import LossScaler
from .shared_state import ParameterState, sum_across_processes

logger = logging.getLogger(__name__)

SUPPORT_FILE = "metric_support.safetensors"
SCORER_FILE = "metric_scorer.safetensors"


def has_saved_support(model_dir: str | Path) -> bool:
    """Whether ``model_dir`` was adapted by a metric-based algorithm (and predicts from its support state)."""
    return (Path(model_dir) / SUPPORT_FILE).is_file()


def class_index(classes: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Position of each label in the sorted ``classes`` (the columns of ``scores``)."""
    idx = torch.searchsorted(classes, labels)
    if bool((idx >= len(classes)).any()) or bool((classes[idx.clamp_max(len(classes) - 1)] != labels).any()):
        raise ValueError("every query label must occur in the support set")
    return idx


def split_support(labels: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Random halves of each class: (pseudo-support, pseudo-query) indices. A class with a single
    example goes to the pseudo-support only, so every pseudo-query label has support."""
    support, query = [], []
    for lab in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == lab))
        half = len(idx) // 2
        query.extend(idx[:half].tolist())
        support.extend(idx[half:].tolist())
    return np.asarray(support, dtype=np.int64), np.asarray(query, dtype=np.int64)


class MetricAlgorithm(MetaAlgorithm):
    """Base of the metric-based algorithms; see the module docstring."""

    def __init__(self, model, params, accelerator, pad_token_id):
        super().__init__(model, params, accelerator, pad_token_id)
        # The scorer starts from the run's seed without disturbing the global generator.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(params.seed)
            self.scorer = self.build_scorer(model.config.hidden_size)
        if self.scorer is not None:
            self.scorer.to(self.device)
        scorer_params = list(self.scorer.parameters()) if self.scorer is not None else []
        self.state = ParameterState(model, list(model.parameters()) + scorer_params)
        # Only the encoder and the scorer learn: the model's classification head is not used.
        self.trainable = list(model.base_model.parameters()) + scorer_params
        groups = [{"params": list(model.base_model.parameters()), "lr": params.metric_lr}]
        if scorer_params:
            groups.append({"params": scorer_params, "lr": params.scorer_lr})
        self.optimizer = torch.optim.Adam(groups)
        self.base_lrs = [g["lr"] for g in groups]
        self.loss_scaler = LossScaler.for_accelerator(accelerator)  # fp16 only (loss_scale.py)
        self.support: dict[str, torch.Tensor] | None = None
        self.prototypes: tuple[torch.Tensor, torch.Tensor] | None = None
        self.finetuned = False

    # ------------------------------------------------------------------ what a subclass supplies
    def build_scorer(self, dim: int) -> torch.nn.Module | None:
        """A small learned module scoring queries against the support state, or None."""
        return None

    @abstractmethod
    def support_state(self, embeddings: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """Tensors summarising the support set; must hold ``classes``, the sorted label ids present."""

    @abstractmethod
    def scores(self, support: dict[str, torch.Tensor], queries: torch.Tensor) -> torch.Tensor:
        """Logits [queries, len(support['classes'])]."""

    def episode_loss(
        self, s_emb: torch.Tensor, s_lab: torch.Tensor, q_emb: torch.Tensor, q_lab: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss, accuracy) of the query set given the support set: cross-entropy over ``scores``."""
        support = self.support_state(s_emb, s_lab)
        logits = self.scores(support, q_emb)
        target = class_index(support["classes"], q_lab)
        return F.cross_entropy(logits, target), (logits.argmax(dim=1) == target).float().mean()

    # ------------------------------------------------------------------ meta-training
    def _episode_loss(self, support: TaskExamples, query: TaskExamples) -> tuple[torch.Tensor, torch.Tensor]:
        # Support and query in one forward pass: episodes are small, one pass is cheaper than two.
        emb = encode_ids(
            self.model,
            list(support.input_ids) + list(query.input_ids),
            self.pad_token_id,
            self.device,
            self.accelerator,
        )
        s_lab = torch.as_tensor(support.labels, device=self.device)
        q_lab = torch.as_tensor(query.labels, device=self.device)
        return self.episode_loss(emb[: len(support)], s_lab, emb[len(support) :], q_lab)

    def _split_episode(self, support: TaskExamples, rng: np.random.Generator) -> tuple[TaskExamples, TaskExamples]:
        s_idx, q_idx = split_support(support.labels, rng)
        return support.subset(s_idx), support.subset(q_idx)

    def meta_step(
        self, episodes: Sequence[Episode], step: int, total_tasks: int, lr_scale: float = 1.0
    ) -> dict[str, float]:
        self.reset()
        self.model.train()
        if self.scorer is not None:
            self.scorer.train()
        self.optimizer.zero_grad(set_to_none=True)
        losses, accs = [], []
        for ep in episodes:
            torch.manual_seed(ep.seed)  # dropout masks: a function of the episode, not of the process
            support, query = ep.support, ep.query
            if not len(query):  # k_query=0: the support set is split into support and query
                support, query = self._split_episode(support, np.random.default_rng(ep.seed))
            # support_sampling=total can miss a class: its queries have no prototype to be scored against.
            query = query.subset(np.flatnonzero(np.isin(query.labels, support.labels)))
            if not len(query):
                continue
            loss, acc = self._episode_loss(support, query)
            # Divided by the tasks of all processes: after the sum across processes, the mean.
            self.loss_scaler.scale(loss / total_tasks).backward()
            losses.append(float(loss.detach()))
            accs.append(float(acc))
        self._outer_update(lr_scale)
        metrics = {"loss": float(np.mean(losses)) if losses else float("nan")}
        if accs:
            metrics["query_accuracy"] = float(np.mean(accs))
        return reduce_mean(self.accelerator, metrics)

    def _outer_update(self, lr_scale: float) -> None:
        # Every process steps with the same summed gradient, so all hold identical parameters.
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.trainable]
        grads = self.loss_scaler.unscale(sum_across_processes(self.accelerator, grads))
        if not self.loss_scaler.step_applies(grads):  # fp16: an overflowed gradient is skipped
            self.optimizer.zero_grad(set_to_none=True)
            return
        for p, g in zip(self.trainable, grads):
            p.grad = g
        for group, lr in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = lr * lr_scale
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.state.capture()

    # ------------------------------------------------------------------ few-shot use
    def reset(self) -> None:
        self.state.reset()
        self.support = None
        self.prototypes = None
        self.finetuned = False

    def caches_features(self) -> bool:
        return True  # the encoder is adapted only with metric_finetune, and then its tasks bypass the cache

    def folded_head(self, means: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(weight, bias) of the saved head over the class means: minus the squared Euclidean distance
        (up to a term common to every class) or, with ``distance: cosine``, cosine_scale × the cosine to
        each normalised mean (exact for features of unit length, which mean pooling gives to within 1 %)."""
        if self.params.distance == "cosine":
            return self.params.cosine_scale * F.normalize(means, dim=-1), torch.zeros(len(means), device=means.device)
        return linear_head(means)

    def export_model(self, adapted: bool = False):
        """The model; adapted, a copy whose own classifier is the prototype head of the support embeddings
        (2μ_c, −‖μ_c‖²: the same argmax and softmax as minus the squared distance to each class mean), so
        the folder is a plain sequence classifier that `transformers.pipeline` serves. It is protonet's
        classifier with Euclidean distance exactly; for the others it is the nearest-class-mean classifier
        of their embeddings."""
        if not adapted or self.prototypes is None:
            return super().export_model(adapted)
        import copy

        from ..models.pooling import set_classifier

        if not is_mean_pooled(self.model):
            raise ModelError(
                f"{self.name} builds its classifier from mean-pooled embeddings, but this model's head reads its "
                "own pooler: an adapted folder would not predict what kshot predicts. Train with model.pooling "
                "'mean' or 'auto'."
            )
        classes, means = self.prototypes
        weight, bias = self.folded_head(means.float())
        names = self.adapted_labels or model_label_names(self.model)
        if not self.new_classes:
            # Every label of the model keeps its row; a label absent from the support set can never win.
            full_w = torch.zeros(self.model.config.num_labels, weight.shape[1], device=weight.device)
            full_b = torch.full((self.model.config.num_labels,), -1e4, device=weight.device)
            full_w[classes], full_b[classes] = weight, bias
            weight, bias, names = full_w, full_b, model_label_names(self.model)
        model = copy.deepcopy(self.model)
        set_classifier(model, weight, bias, list(names))
        setattr(model.config, NEW_CLASSES_KEY, False)
        return model

    def adapt(self, support: TaskExamples, steps: int, seed: int = 0) -> dict[str, float]:
        self.reset()
        if not len(support):
            raise ModelError("The support set is empty: give at least one labelled example per class.")
        if not self.new_classes and int(support.labels.max()) >= self.model.config.num_labels:
            raise ModelError(
                f"Support label id {int(support.labels.max())} is outside the model's"
                f" {self.model.config.num_labels} labels."
            )
        stats: dict[str, float] = {"steps": 0}
        if self.params.metric_finetune and steps > 0:
            stats.update(self._finetune(support, steps, seed))
        self.finetuned = bool(stats["steps"])  # the encoder changed: cached embeddings no longer hold
        emb = embed_task(
            self.model,
            support,
            self.params.eval_batch_size,
            self.pad_token_id,
            self.device,
            self.accelerator,
            cache=None if self.finetuned else self.feature_cache,
        )
        labels = torch.as_tensor(support.labels, device=self.device)
        with torch.no_grad():
            state = self.support_state(emb, labels)
        self.support = {k: v.detach() for k, v in state.items()}
        # What a saved folder's own head becomes (export_model): the class means of these embeddings.
        self.prototypes = prototypes(emb.detach(), labels)
        self.adapted_labels = support.label_names
        return stats

    def _finetune(self, support: TaskExamples, steps: int, seed: int) -> dict[str, float]:
        """A few steps of the algorithm's own loss on random halves of each support class."""
        p = self.params
        rng = np.random.default_rng(seed)
        torch.manual_seed(seed)
        opt = make_inner_optimizer(p.inner_optimizer, self.trainable, p.inner_lr)
        scaler = LossScaler.for_accelerator(self.accelerator)
        self.model.train()
        losses = []
        for _ in range(steps):
            s, q = self._split_episode(support, rng)
            if not len(q):
                logger.warning("metric_finetune: every class has a single support example; no fine-tuning.")
                return {"steps": 0}
            loss = scaler.backward(
                lambda s=s, q=q: self._episode_loss(s, q)[0], self.trainable, lambda: opt.zero_grad(set_to_none=True)
            )
            if p.max_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(self.trainable, p.max_grad_norm)
            opt.step()
            losses.append(float(loss.detach()))
        return {"steps": steps, "loss": float(np.mean(losses))}

    @torch.no_grad()
    def predict(self, task: TaskExamples, batch_size: int) -> np.ndarray:
        if self.support is None:
            raise ModelError(
                f"{self.name}: call adapt(support) before predict; predictions are relative to a support set."
            )
        if self.scorer is not None:
            self.scorer.eval()
        cache = self.feature_cache if not self.finetuned else None
        emb = embed_task(self.model, task, batch_size, self.pad_token_id, self.device, self.accelerator, cache=cache)
        columns = self.support["classes"].cpu().numpy()
        width = int(columns.max()) + 1 if self.new_classes else self.model.config.num_labels
        out = np.full((len(task), width), -np.inf, dtype=np.float32)
        for start in range(0, len(task), batch_size):
            with full_precision(self.device):  # float32 scores, as in meta-training, even under an enclosing autocast
                logits = self.scores(self.support, emb[start : start + batch_size])
            out[start : start + batch_size, columns] = logits.float().cpu().numpy()
        return out

    def usage_note(self, adapted: bool) -> str:
        """How to use a saved folder (for its model card): the model's own head is not the classifier."""
        if not adapted:
            return (
                f"This folder holds an encoder meta-trained by **{self.name}**; its classification head is not "
                "trained (the classifier is built from a support set). Adapt it to your labels, then predict:\n\n"
                "```bash\nkshot adapt --model PATH_TO_THIS_FOLDER --support support.csv --out adapted\n"
                "kshot predict --model adapted --input texts.txt\n```"
            )
        if is_mean_pooled(self.model):
            return (
                f"This folder was adapted by **{self.name}**: its classification head holds the class means of the "
                "support set's embeddings (the head reads the mean-pooled embedding), so it is a plain sequence "
                'classifier: `transformers.pipeline("text-classification", model=PATH_TO_THIS_FOLDER)` and '
                "`kshot predict` give the same labels and scores."
            )
        return (
            f"The classifier of this folder is the **{self.name}** support state in `{SUPPORT_FILE}`"
            + (f" with the learned scorer in `{SCORER_FILE}`" if self.scorer is not None else "")
            + ", applied to the mean-pooled embeddings of the encoder. `kshot predict --model "
            "PATH_TO_THIS_FOLDER --input texts.txt` uses it. The folder loads with `transformers`, but the "
            "model's own classification head is not trained: `pipeline(...)` on it does not give these predictions."
        )

    # ------------------------------------------------------------------ persistence
    def state_dict(self) -> dict[str, Any]:
        state = {"meta": [m.cpu() for m in self.state.meta], "outer_optimizer": self.optimizer.state_dict()}
        if self.loss_scaler.enabled:
            state["loss_scale"] = self.loss_scaler.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        with torch.no_grad():
            torch._foreach_copy_(self.state.meta, [m.to(self.device) for m in state["meta"]])
        if state.get("outer_optimizer"):
            self.optimizer.load_state_dict(state["outer_optimizer"])
        self.loss_scaler.load_state_dict(state.get("loss_scale"))
        self.reset()

    def initial_state(self) -> dict[str, Any]:
        return {"meta": [p.detach().clone() for p in self.state.live]}

    def load_pretrained(self, model_dir: str) -> None:
        folder = Path(model_dir)
        if self.scorer is not None:
            if (folder / SCORER_FILE).is_file():
                self.scorer.load_state_dict(load_file(str(folder / SCORER_FILE), device=str(self.device)))
            else:
                logger.warning("%s has no %s: %s starts from an untrained scorer.", folder, SCORER_FILE, self.name)
        self.state.capture()
        self.reset()
        if has_saved_support(folder):
            self.support = self._read_support(folder / SUPPORT_FILE)

    def _read_support(self, path: Path) -> dict[str, torch.Tensor]:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as fh:
            saved_by = (fh.metadata() or {}).get("algorithm")
        if saved_by != self.name:
            raise ModelError(
                f"{path} holds a {saved_by} support state, not a {self.name} one;"
                " adapt the model again with `kshot adapt`."
            )
        support = load_file(str(path), device=str(self.device))
        if int(support["classes"].max()) >= self.model.config.num_labels:
            raise ModelError(
                f"{path} refers to label ids beyond the model's {self.model.config.num_labels} labels;"
                " adapt the model again."
            )
        return support

    def extra_files(self) -> dict[str, Any]:
        files: dict[str, Any] = {}
        if self.scorer is not None:
            weights = {k: v.detach().cpu().contiguous() for k, v in self.scorer.state_dict().items()}
            files[SCORER_FILE] = lambda path: save_file(weights, str(path))
        if self.support is not None and not is_mean_pooled(self.model):
            # Only an unfolded model needs its support state beside it (export_model folds it into the head).
            support = {k: v.detach().cpu().contiguous() for k, v in self.support.items()}
            files[SUPPORT_FILE] = lambda path: save_file(support, str(path), metadata={"algorithm": self.name})
        return files

"""The model card (``README.md``) of a saved kshot model."""

from __future__ import annotations

from typing import Any


def _table(results: dict[str, Any]) -> str:
    tasks = results.get("tasks", {})
    if not tasks:
        return ""
    lines = ["| task | accuracy | macro-F1 |", "|---|---|---|"]
    for name, m in tasks.items():
        lines.append(f"| {name} | {100 * m['accuracy']:.2f} | {m['macro_f1']:.3f} |")
    mean = results.get("mean", {})
    if mean:
        lines.append(f"| **mean** | **{100 * mean['accuracy']:.2f}** | **{mean['macro_f1']:.3f}** |")
    return "\n".join(lines)


def model_card(meta: dict[str, Any]) -> str:
    params = meta.get("params", {})
    config = meta.get("config", {})
    data = config.get("data", {})
    labels = meta.get("label_names", [])
    algorithm = params.get("algorithm", meta.get("algorithm", "unknown"))
    parts = [
        "---",
        "library_name: transformers",
        "pipeline_tag: text-classification",
        "tags:\n- kshot\n- few-shot\n- meta-learning\n- " + str(algorithm),
        "---",
        "",
        f"# {meta.get('title', 'kshot few-shot text classifier')}",
        "",
        f"Trained with kshot {meta.get('kshot_version', '')} using **{algorithm}**.",
        "",
        f"- base model: `{meta.get('base_model', config.get('model', {}).get('name_or_path'))}`",
        f"- labels: {', '.join(labels)}",
        f"- data: {data.get('format', '?')} from `{data.get('path', '?')}`",
    ]
    if meta.get("adapted_on"):
        parts.append(f"- adapted on: `{meta['adapted_on']}`")
    parts += [
        "",
        "## Use",
        "",
    ]
    # An algorithm whose classifier is not the model's own head says how to use the folder instead.
    parts += (
        [meta["usage"], ""]
        if meta.get("usage")
        else [
            "```python",
            "from transformers import pipeline",
            'clf = pipeline("text-classification", model="PATH_TO_THIS_FOLDER")',
            "```",
            "",
        ]
    )
    parts += [
        "Adapt to a new task with a few labelled examples: `kshot adapt --model PATH --support FILE --out DIR`.",
        "",
    ]
    if params:
        parts += ["## Hyperparameters", "", "```yaml"] + [f"{k}: {v}" for k, v in params.items()] + ["```", ""]
    for key, title in (("validation", "Validation"), ("test", "Evaluation (few-shot protocol)")):
        table = _table(meta.get("results", {}).get(key, {}))
        if table:
            parts += [f"## {title}", "", table, ""]
    return "\n".join(parts)

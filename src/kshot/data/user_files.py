"""Reading a user's own files: labelled examples for `kshot adapt`, texts for `kshot predict`."""

from __future__ import annotations

from pathlib import Path

from ..errors import DataError


def read_labelled_file(
    path: str | Path, text_column: str = "text", label_column: str | None = "label"
) -> tuple[list[str], list[str] | None]:
    """Texts (and labels) from a CSV, JSON/JSONL or plain text file (one text per line, unlabelled)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} does not exist or is not a file.")
    suffix = path.suffix.lower()
    if suffix == ".txt":
        if label_column is not None:
            raise DataError(
                f"{path}: a .txt file holds no labels;"
                f" give a CSV or JSONL file with '{text_column}' and '{label_column}' columns."
            )
        texts = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        if not texts:
            raise DataError(f"{path} holds no texts.")
        return texts, None
    builder = {".csv": "csv", ".json": "json", ".jsonl": "json"}.get(suffix)
    if builder is None:
        raise DataError(f"{path}: unsupported file type '{suffix}'. Use .csv, .jsonl, .json (or .txt for predict).")
    import datasets

    try:
        ds = datasets.load_dataset(builder, data_files=str(path), split="train")
    except Exception as err:  # datasets raises many types for malformed files
        raise DataError(f"Cannot read {path}: {type(err).__name__}: {err}") from err
    for col in [c for c in (text_column, label_column) if c]:
        if col not in ds.column_names:
            raise DataError(f"{path}: no column '{col}'. Columns: {', '.join(ds.column_names)}.")
    texts = ds[text_column]
    for i, t in enumerate(texts):
        if not isinstance(t, str) or not t.strip():
            raise DataError(
                f"{path}, row {i + 1}: the text ('{text_column}') is empty. Remove the row or fill in the text."
            )
    labels = None
    if label_column:
        labels = [None if v is None else str(v) for v in ds[label_column]]
        for i, lab in enumerate(labels):
            if lab is None or not lab.strip():
                raise DataError(f"{path}, row {i + 1}: the label ('{label_column}') is empty.")
    return [t.strip() for t in texts], labels

"""A text file as batches of token ids, read lazily: what ``inspector analyze MODEL_DIR --text FILE`` reads.

``FILE`` is one of

* ``.txt``: one text a line (blank lines skipped), no labels;
* ``.jsonl``: one JSON object a line, the text under ``text_column`` (default ``"text"``), the label
  under ``label_column`` (default ``"label"`` when the first object has it);
* ``.csv``: a header row naming the columns, then one row per text (the same two columns).

:class:`TextFile` is re-iterable: each pass opens the file again and yields ``batch_size`` texts at a
time as a dict batch (``input_ids`` ``(n, T)``, ``attention_mask`` ``(n, T)``, ``labels``), tokenized
then (never the whole file at once: memory is one batch), truncated to ``max_length`` tokens and
right-padded to the longest text of its batch (not to ``max_length``). Labels are integers or
strings mapped through the model's ``label2id``; for a causal language model the labels are the
token ids themselves with ``-100`` at padding (Hugging Face's convention: the model predicts each
next token). Every problem with the file is an :class:`~inspector.errors.InspectorError` of one line.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from inspector.errors import InspectorError

TEXT_SUFFIXES = (".txt", ".jsonl", ".csv")
DEFAULT_TEXT_COLUMN = "text"
DEFAULT_LABEL_COLUMN = "label"
DEFAULT_MAX_LENGTH = 128
DEFAULT_TEXT_BATCH = 32
IGNORE_INDEX = -100  # Hugging Face's "no label here"

Record = tuple[int, str, Any]  # (line number, text, label or None)


class TextFile:
    """The texts of ``path``, tokenized by ``tokenizer`` one batch at a time; see the module docstring.

    ``label_ids``: the model's ``label2id`` (string labels are looked up there). ``next_token_labels``:
    labels are the ids (a causal LM) and the file's label column is not read. ``pad_id``: the id of
    padding (the tokenizer's pad token, else its end-of-text token, else 0). The file is checked now:
    it exists, is not empty, and holds the columns asked for.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        tokenizer: Any,
        *,
        text_column: str | None = None,
        label_column: str | None = None,
        max_length: int = DEFAULT_MAX_LENGTH,
        batch_size: int = DEFAULT_TEXT_BATCH,
        label_ids: Mapping[str, int] | None = None,
        next_token_labels: bool = False,
        pad_id: int = 0,
    ) -> None:
        self.path = Path(path)
        self.tokenizer = tokenizer
        self.text_column = text_column or DEFAULT_TEXT_COLUMN
        self.max_length = int(max_length)
        self.batch_size = int(batch_size)
        self.label_ids = dict(label_ids or {})
        self.next_token_labels = next_token_labels
        self.pad_id = int(pad_id)
        self.suffix = self.path.suffix.lower()
        if not self.path.is_file():
            reason = "is a folder" if self.path.is_dir() else "does not exist"
            raise InspectorError(f"--text {self.path} {reason}; give a .txt, .jsonl or .csv file")
        if self.suffix not in TEXT_SUFFIXES:
            raise InspectorError(
                f"--text {self.path}: a {self.suffix or 'suffix-less'} file; give .txt (one text a line), "
                ".jsonl or .csv (a text column)"
            )
        if self.max_length < 1 or self.batch_size < 1:
            raise ValueError("max_length and batch_size must be positive")
        self._check_max_length()
        columns = self._columns()
        if self.suffix == ".txt":
            for flag, given in (("--label-column", label_column), ("--text-column", text_column)):
                if given is not None:
                    raise InspectorError(
                        f"{flag} {given}: a .txt file has no columns (one text a line); use .jsonl or .csv"
                    )
        elif self.text_column not in columns:
            raise InspectorError(
                f"--text {self.path}: no column {self.text_column!r}; its columns are "
                f"{', '.join(columns) or 'none'} (choose one with --text-column)"
            )
        elif label_column is not None and label_column not in columns:
            raise InspectorError(
                f"--text {self.path}: no label column {label_column!r}; its columns are {', '.join(columns)}"
            )
        if label_column is not None and next_token_labels:  # said, not dropped in silence
            raise InspectorError(
                f"--label-column {label_column}: a causal LM's labels are each text's next tokens, not a column; "
                "drop --label-column (or give a sequence-classification model folder)"
            )
        if label_column is None and DEFAULT_LABEL_COLUMN in columns and self.suffix != ".txt":
            label_column = DEFAULT_LABEL_COLUMN
        self.label_column = None if next_token_labels else label_column
        if next(self.records(), None) is None:
            raise InspectorError(f"--text {self.path} holds no text (every line is blank); give one text a line")

    @property
    def has_labels(self) -> bool:
        """Whether batches carry ``labels``: the file's label column, or the next tokens of a causal LM."""
        return self.next_token_labels or self.label_column is not None

    @property
    def name(self) -> str:
        return self.path.name

    # --- reading -----------------------------------------------------------------------------------

    def _open(self) -> Any:
        return open(self.path, encoding="utf-8-sig", newline="" if self.suffix == ".csv" else None)  # noqa: SIM115

    def _columns(self) -> list[str]:
        """The file's column names: the CSV header, the first JSON object's keys (none for .txt)."""
        if self.suffix == ".txt":
            return []
        with self._open() as f:
            try:
                if self.suffix == ".csv":
                    return [str(c) for c in next(csv.reader(f), [])]
                for number, line in enumerate(f, 1):
                    if line.strip():
                        return list(self._json(line, number))
            except UnicodeDecodeError:
                raise InspectorError(f"--text {self.path} is not UTF-8 text") from None
        return []

    def _json(self, line: str, number: int) -> dict[str, Any]:
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InspectorError(f"--text {self.path}, line {number}: not JSON ({exc.msg})") from None
        if not isinstance(value, dict):
            raise InspectorError(f"--text {self.path}, line {number}: a JSON {type(value).__name__}, not an object")
        return value

    def _rows(self) -> Iterator[tuple[int, Mapping[str, Any]]]:
        with self._open() as f:
            try:
                if self.suffix == ".csv":
                    reader = csv.DictReader(f)
                    for row in reader:
                        yield reader.line_num, row
                else:
                    for number, line in enumerate(f, 1):
                        if line.strip():
                            yield number, self._json(line, number)
            except UnicodeDecodeError:
                raise InspectorError(f"--text {self.path} is not UTF-8 text") from None
            except csv.Error as exc:
                raise InspectorError(f"--text {self.path}: not a CSV table ({exc})") from None

    def records(self) -> Iterator[Record]:
        """``(line, text, label)`` of every non-blank text, in file order (``label`` ``None`` without labels)."""
        if self.suffix == ".txt":
            with self._open() as f:
                try:
                    for number, line in enumerate(f, 1):
                        text = line.rstrip("\r\n")
                        if text.strip():
                            yield number, text, None
                except UnicodeDecodeError:
                    raise InspectorError(f"--text {self.path} is not UTF-8 text") from None
            return
        for number, row in self._rows():
            if self.text_column not in row:
                raise InspectorError(f"--text {self.path}, line {number}: no {self.text_column!r} value")
            text = row[self.text_column]
            if not isinstance(text, str):
                raise InspectorError(
                    f"--text {self.path}, line {number}: {self.text_column!r} is a {type(text).__name__}, not text"
                )
            if not text.strip():
                continue
            label = None
            if self.label_column is not None:
                if self.label_column not in row or row[self.label_column] in (None, ""):
                    raise InspectorError(f"--text {self.path}, line {number}: no {self.label_column!r} value")
                label = self._label(row[self.label_column], number)
            yield number, text, label

    def _label(self, value: Any, number: int) -> int:
        """A label as a class number: an integer as it is, a string through ``label2id``."""
        if isinstance(value, bool):
            value = str(value).lower()
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        text = str(value).strip()
        if text in self.label_ids:
            return int(self.label_ids[text])
        try:
            return int(text)
        except ValueError:
            pass
        known = ", ".join(str(k) for k in self.label_ids) or "none (the config has no label2id)"
        raise InspectorError(
            f"--text {self.path}, line {number}: unknown label {text[:40]!r}; the model's labels are {known} "
            "(or give class numbers)"
        )

    def _check_max_length(self) -> None:
        """``max_length`` keeps at least one token of each text besides the tokenizer's special tokens (a
        tokenizer asked to cut below them does not cut at all), and two for next-token labels (a causal LM
        predicts the second from the first)."""
        count = getattr(self.tokenizer, "num_special_tokens_to_add", None)
        special = int(count(pair=False)) if callable(count) else 0
        least = special + (2 if self.next_token_labels else 1)
        if self.max_length < least:
            reasons = []
            if special:
                reasons.append(f"the tokenizer adds {special} special token{'s' if special != 1 else ''} to each text")
            if self.next_token_labels:
                reasons.append("a causal LM needs two tokens of a text to predict one")
            why = " and ".join(reasons)
            raise InspectorError(
                f"--max-length {self.max_length} is too short: {why}; give --max-length {least} or more"
            )

    # --- batches -----------------------------------------------------------------------------------

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """The token ids of each text, truncated to ``max_length`` (special tokens as the tokenizer adds them)."""
        encoded = self.tokenizer(list(texts), truncation=True, max_length=self.max_length)
        return [list(ids) for ids in encoded["input_ids"]]

    def batch(self, records: Sequence[Record]) -> dict[str, torch.Tensor]:
        """One dict batch of ``records``, right-padded to its longest text."""
        ids = self.encode([text for _, text, _ in records])
        width = max(1, max(len(row) for row in ids))
        input_ids = torch.full((len(ids), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        for i, row in enumerate(ids):
            input_ids[i, : len(row)] = torch.as_tensor(row, dtype=torch.long)
            mask[i, : len(row)] = 1
        batch = {"input_ids": input_ids, "attention_mask": mask}
        if self.next_token_labels:
            batch["labels"] = input_ids.masked_fill(mask == 0, IGNORE_INDEX)
        elif self.label_column is not None:
            batch["labels"] = torch.as_tensor([label for _, _, label in records], dtype=torch.long)
        return batch

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        chunk: list[Record] = []
        for record in self.records():
            chunk.append(record)
            if len(chunk) == self.batch_size:
                yield self.batch(chunk)
                chunk = []
        if chunk:
            yield self.batch(chunk)

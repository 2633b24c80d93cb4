"""An n-gram LM inside an export folder (``dmao export --lm``), for ``dmao transcribe --method lm``.

A CTC model decoded with a word n-gram and a lexicon makes far fewer errors than greedy decoding
(BENCHMARKS.md: 20.44 % → 8.19 % test WER on the benchmark recipe), so an export can carry the
LM, its lexicon and the search settings chosen on dev, and ``dmao transcribe`` decodes with them
as ``dmao decode --method lm`` does (the same :class:`~dmao.decoding.lm_decoder.CTCLMDecoder`)::

    lm/lm.arpa | lm/lm.bin   the n-gram (ARPA text or KenLM binary, copied byte for byte)
    lm/lexicon.txt           its lexicon (word LMs only; lexicon-free token LMs have none)

``manifest.json`` records them under ``"lm"``: the two file names, the mode (``lexicon`` or
``lexicon-free``), the order (ARPA files), the source files' names and SHA-256, and the search
settings (``lm_weight``, ``word_score``, ``sil_score``, ``beam_size``, ``beam_size_token``,
``beam_threshold``); the files' sizes and hashes are in its file table like every other file.
Like the ONNX graphs, they are checked when they are used, not by every :func:`load_exported`:
an LM can be gigabytes.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dmao.data.tokenizer import Tokenizer
from dmao.decoding.lm_decoder import LM_OPTION_FIELDS, CTCLMDecoder, LMDecoderOptions, arpa_order
from dmao.export.files import sha256_file, verify_files

__all__ = [
    "LM_DIR",
    "LanguageModel",
    "bundle_language_model",
    "bundled_language_model",
    "language_model_from_decode",
    "read_decode_result",
    "recorded_options",
]

LM_DIR = "lm"
LEXICON_FILE = f"{LM_DIR}/lexicon.txt"


@dataclass(frozen=True)
class LanguageModel:
    """An n-gram LM and how to search with it.

    ``path`` is an ARPA or KenLM binary file: a word LM when ``lexicon`` is set, a token LM
    (``dmao lm build --unit token``) for lexicon-free search when it is None.
    """

    path: Path
    lexicon: Path | None = None
    options: LMDecoderOptions = dataclasses.field(default_factory=LMDecoderOptions)

    def with_options(self, **changes: Any) -> LanguageModel:
        """A copy with the search settings in ``changes`` replaced (``None`` values ignored)."""
        changes = {key: value for key, value in changes.items() if value is not None}
        unknown = set(changes) - set(LM_OPTION_FIELDS)
        if unknown:
            raise ValueError(f"unknown LM search settings {sorted(unknown)}")
        return dataclasses.replace(self, options=dataclasses.replace(self.options, **changes))

    def decoder(self, tokenizer: Tokenizer) -> CTCLMDecoder:
        """The beam-search decoder for a model with ``tokenizer`` (loads the LM)."""
        return CTCLMDecoder.from_tokenizer(tokenizer, self.path, self.lexicon, self.options)

    @property
    def mode(self) -> str:
        """``lexicon`` (word LM) or ``lexicon-free`` (token LM)."""
        return "lexicon" if self.lexicon is not None else "lexicon-free"


def options_record(options: LMDecoderOptions) -> dict[str, Any]:
    """The stored search settings of ``options``."""
    return {key: getattr(options, key) for key in LM_OPTION_FIELDS}


def bundle_language_model(
    language_model: LanguageModel, export_dir: Path, tokenizer: Tokenizer
) -> dict[str, Any]:
    """Copy ``language_model``'s files into ``export_dir/lm/`` and return its manifest record.

    The LM is first loaded with ``tokenizer`` (as ``dmao transcribe`` will), so an LM of the
    wrong kind (a word LM without a lexicon, a token LM with one, an order KenLM cannot load) or
    a lexicon spelled in other tokens fails the export, not a later transcription.

    Raises:
        FileNotFoundError: the LM or lexicon file does not exist.
        ValueError: they do not fit each other or the model's tokens.
    """
    for what, path in (("LM", language_model.path), ("lexicon", language_model.lexicon)):
        if path is not None and not Path(path).is_file():
            raise FileNotFoundError(f"{what} file {path} does not exist")
    language_model.decoder(tokenizer)
    order = arpa_order(language_model.path)
    with open(language_model.path, "rb") as f:
        is_arpa = b"\\data\\" in f.read(4096)
    # ARPA text is lm.arpa; anything else (a KenLM binary, a compressed ARPA) keeps its suffix.
    name = f"{LM_DIR}/lm" + (".arpa" if is_arpa else language_model.path.suffix)
    (export_dir / LM_DIR).mkdir()
    shutil.copyfile(language_model.path, export_dir / name)
    source = {"lm": language_model.path.name, "lm_sha256": sha256_file(export_dir / name)}
    if language_model.lexicon is not None:
        shutil.copyfile(language_model.lexicon, export_dir / LEXICON_FILE)
        source["lexicon"] = language_model.lexicon.name
        source["lexicon_sha256"] = sha256_file(export_dir / LEXICON_FILE)
    return {
        "file": name,
        "lexicon": LEXICON_FILE if language_model.lexicon is not None else None,
        "mode": language_model.mode,
        "order": order,
        "source": source,
        "options": options_record(language_model.options),
    }


def recorded_options(manifest: Mapping[str, Any]) -> LMDecoderOptions | None:
    """The search settings an export's ``manifest`` records for its LM (None: it has no LM)."""
    record = manifest.get("lm")
    return None if record is None else _options(record)


def _options(record: Mapping[str, Any]) -> LMDecoderOptions:
    try:
        return LMDecoderOptions(**{key: record["options"][key] for key in LM_OPTION_FIELDS})
    except (KeyError, TypeError) as err:
        raise ValueError(
            f"the export manifest's 'lm' record has incomplete search settings ({err!r})"
        ) from err


def bundled_language_model(
    directory: Path, manifest: Mapping[str, Any], manifest_name: str
) -> LanguageModel | None:
    """The LM recorded in an export's ``manifest`` (None when it has none), after checking its
    files against the manifest's file table."""
    record = manifest.get("lm")
    if record is None:
        return None
    source = f"{directory / manifest_name} 'lm'"
    options = _options(record)
    try:
        names = [record["file"]] + ([record["lexicon"]] if record["lexicon"] else [])
    except (KeyError, TypeError) as err:
        raise ValueError(f"{source}: expected file and lexicon ({err!r})") from err
    if not all(isinstance(name, str) for name in names):
        raise ValueError(f"{source}: file and lexicon must be file names")
    table = manifest.get("files", {})
    missing = [name for name in names if name not in table]
    if missing:
        raise ValueError(f"{source}: {missing} not in the file table")
    verify_files(directory, {name: table[name] for name in names}, set(), manifest_name)
    lexicon = directory / record["lexicon"] if record["lexicon"] else None
    return LanguageModel(directory / record["file"], lexicon, options)


def language_model_from_decode(result: str | Path) -> LanguageModel:
    """The LM and settings of a ``dmao decode --method lm`` result (its ``result.json``, or the
    folder that holds it), e.g. the dev decode whose weights were tuned.

    Relative file paths are taken as ``dmao decode`` was given them: relative to the current
    folder.

    Raises:
        FileNotFoundError: no ``result.json`` there.
        ValueError: it is not the result of an LM decode.
    """
    path, data = read_decode_result(result)
    try:
        record = data["lm"]
        lexicon = record["lexicon_path"]
        options = LMDecoderOptions(**{key: record[key] for key in LM_OPTION_FIELDS})
        lm_path = Path(record["lm_path"])
    except (KeyError, TypeError) as err:
        raise ValueError(
            f"{path}: not the result of `dmao decode --method lm` (no complete 'lm' record: "
            f"{err!r})"
        ) from err
    return LanguageModel(lm_path, Path(lexicon) if lexicon else None, options)


def read_decode_result(result: str | Path) -> tuple[Path, Any]:
    """The path and parsed content of a ``dmao decode`` ``result.json`` (given as the file or
    the folder that holds it).

    Raises:
        FileNotFoundError: no ``result.json`` there.
        ValueError: it is not JSON.
    """
    path = Path(result)
    if path.is_dir():
        path = path / "result.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist (expected a `dmao decode` result.json)")
    try:
        return path, json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not a `dmao decode` result.json (not JSON: {err})") from err

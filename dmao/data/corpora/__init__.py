"""The real corpora: LibriSpeech, TED-LIUM 2, Switchboard-1 and Hub5'00; any corpus as Kaldi
data directories, NeMo manifests, a Hugging Face dataset's Parquet files or the manifests of one
of lhotse's recipes.

Each module checks a local copy's layout (errors name what is missing) and reads it through
lhotse's own recipe. LibriSpeech's reader is :mod:`dmao.data.manifests`, shared with the built-in
corpus (same layout); TED-LIUM, Switchboard and Kaldi data directories normalise transcripts with
one documented function and cut one utterance per segment (Kaldi's are read by dmao itself:
lhotse's reader assumes one sampling rate and drops unreadable recordings quietly).
:func:`dmao.data.manifests.load_or_prepare` then caches features the same way for all. See
docs/corpora.md.
"""

from dmao.data.corpora.kaldi import normalize_kaldi, prepare_kaldi
from dmao.data.corpora.lhotse_manifests import prepare_lhotse
from dmao.data.corpora.librispeech import prepare_librispeech
from dmao.data.corpora.nemo import prepare_nemo
from dmao.data.corpora.parquet import prepare_parquet
from dmao.data.corpora.switchboard import normalize_switchboard, prepare_switchboard
from dmao.data.corpora.tedlium import normalize_tedlium, prepare_tedlium2

__all__ = [
    "normalize_kaldi",
    "normalize_switchboard",
    "normalize_tedlium",
    "prepare_kaldi",
    "prepare_lhotse",
    "prepare_librispeech",
    "prepare_nemo",
    "prepare_parquet",
    "prepare_switchboard",
    "prepare_tedlium2",
]

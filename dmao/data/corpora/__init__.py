"""Real corpora beyond the LibriSpeech layout: TED-LIUM 2, Switchboard-1 and Hub5'00.

Each module checks a local copy's layout (errors name what is missing), reads it through lhotse's
own recipe, normalises transcripts with one documented function, and cuts one utterance per
segment; :func:`dmao.data.manifests.load_or_prepare` then caches features exactly as for
LibriSpeech. See docs/corpora.md.
"""

from dmao.data.corpora.switchboard import normalize_switchboard, prepare_switchboard
from dmao.data.corpora.tedlium import normalize_tedlium, prepare_tedlium2

__all__ = ["normalize_switchboard", "normalize_tedlium", "prepare_switchboard", "prepare_tedlium2"]

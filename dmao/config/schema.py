"""Typed experiment configuration.

Every setting of a run lives in one of these dataclasses; the docstring of each field says what it
means and in which unit. YAML files and ``key=value`` command-line overrides are turned into an
:class:`ExperimentConfig` by :mod:`dmao.config.loading`; the resolved config is written into the run
folder and into every checkpoint.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, field
from typing import Literal

from dmao.method.config import DmaoConfig

__all__ = [
    "BAD_AUDIO_MODES",
    "COMPILE_MODES",
    "CORPUS_KINDS",
    "DECODE_METHODS",
    "LR_SCHEDULES",
    "PRECISION_NAMES",
    "TOKENIZER_KINDS",
    "DataConfig",
    "DecodeConfig",
    "DmaoConfig",
    "ExperimentConfig",
    "ModelConfig",
    "OptimConfig",
    "TokenizerConfig",
    "TrainConfig",
]

# The settings that take one of a few names. The loader (dmao.config.loading) refuses any other
# value when the config is read, naming the key and the choices; the code that acts on a setting
# takes its tuple of names from here, so each vocabulary is written once.
CorpusKind = Literal[
    "synthetic", "librispeech", "tedlium2", "switchboard", "kaldi", "lhotse", "nemo", "parquet"
]
BadAudioMode = Literal["strict", "skip"]
TokenizerKind = Literal["char", "bpe", "unigram"]
PrecisionName = Literal["fp32", "bf16", "fp16"]
CompileMode = Literal["none", "dynamic", "static", "cudagraphs"]
DecodeMethod = Literal["greedy", "beam", "lm"]
LRSchedule = Literal["one_cycle", "warmup_cosine", "noam"]

CORPUS_KINDS: tuple[str, ...] = typing.get_args(CorpusKind)
BAD_AUDIO_MODES: tuple[str, ...] = typing.get_args(BadAudioMode)
TOKENIZER_KINDS: tuple[str, ...] = typing.get_args(TokenizerKind)
PRECISION_NAMES: tuple[str, ...] = typing.get_args(PrecisionName)
COMPILE_MODES: tuple[str, ...] = typing.get_args(CompileMode)
DECODE_METHODS: tuple[str, ...] = typing.get_args(DecodeMethod)
"""``decode.method``: the searches of ``dmao decode``, ``dmao transcribe`` and an export."""
LR_SCHEDULES: tuple[str, ...] = typing.get_args(LRSchedule)


@dataclass
class DataConfig:
    """Where the corpus is and how batches are formed."""

    corpus: CorpusKind = "synthetic"
    """Corpus kind. ``synthetic`` (built in, generated when missing), ``librispeech`` (any
    corpus in the LibriSpeech layout: ``<part>/<spk>/<chapter>/*.flac`` + ``*.trans.txt``),
    ``tedlium2`` (TED-LIUM release 2), ``switchboard`` (Switchboard-1 + Hub5'00) or ``kaldi``
    (any corpus as Kaldi data directories, one per part: ``wav.scp``, ``text``, optionally
    ``segments`` and ``utt2spk``), ``lhotse`` (the manifests any of lhotse's recipes writes,
    ``lhotse prepare <corpus>``), ``nemo`` (NeMo manifests ``<part>.json``: JSON lines with
    ``audio_filepath``, ``duration``, ``text``) or ``parquet`` (a Hugging Face dataset's Parquet
    files, a part per split); see docs/corpora.md for the layouts and part names."""
    corpus_dir: str = "data/synthetic/corpus"
    """Directory holding the corpus (LibriSpeech layout, or the folder holding ``LibriSpeech/``;
    ``TEDLIUM_release2`` or the folder holding it; the LDC97S62 Switchboard copy; for ``kaldi``
    the folder holding a data directory per part, e.g. an ESPnet recipe's ``data/``; for
    ``lhotse`` the folder of the recipe's manifests; for ``nemo`` the folder of the part
    manifests; for ``parquet`` the dataset's folder, or one config's)."""
    manifest_dir: str = "data/synthetic/manifests"
    """Directory for lhotse manifests and the cached fbank features."""
    sampling_rate: int = 16000
    """Rate in Hz the features are computed at; audio at another rate is resampled. 16000, or
    8000 for Switchboard's telephone speech (METHOD.md §6)."""
    text_column: str | None = None
    """``parquet`` only: the transcript column (default: the first of ``text``, ``sentence``,
    ``transcription``, ``transcript``, ``normalized_text`` the files have)."""
    transcripts_dir: str | None = None
    """Switchboard only: the ISIP ``swb_ms98_transcriptions`` folder (default: looked up inside
    and beside ``corpus_dir``)."""
    eval2000_dir: str | None = None
    """Switchboard only: the folder holding ``LDC2002S09`` and ``LDC2002T43`` (Hub5'00), needed
    for the ``eval2000-swbd`` / ``eval2000-callhome`` parts."""
    train_parts: list[str] = field(default_factory=lambda: ["train"])
    """Corpus parts (sub-directories) used for training."""
    dev_parts: list[str] = field(default_factory=lambda: ["dev"])
    """Corpus parts used for validation during training."""
    test_parts: list[str] = field(default_factory=lambda: ["test"])
    """Corpus parts decoded by ``dmao decode`` / the demo."""
    synthetic_hours: float = 3.0
    """Hours of speech to synthesise when ``corpus: synthetic`` and the corpus is absent."""
    synthetic_seed: int = 0
    """Seed of the synthetic corpus (sentences, voices, noise)."""
    max_batch_seconds: float = 200.0
    """Upper bound on the total audio of one batch, in seconds (lhotse ``max_duration``)."""
    num_buckets: int = 10
    """Number of duration buckets of the dynamic bucketing sampler."""
    pad_to_bucket: bool = False
    """Static batch shapes (docs/performance.md): every training batch of duration bucket ``k``
    holds ``⌊max_batch_seconds / edge_k⌋`` utterances padded to the bucket's upper edge ``edge_k``,
    so an epoch has ``num_buckets`` shapes and ``train.compile=static`` compiles each once. Costs
    padding (real ÷ padded frames 0.910 with 10 buckets, 0.970 with 30 on the built-in corpus) and
    changes the batch order; off by default."""
    auto_batch: bool = False
    """Compute each step's ``max_batch_seconds`` in as few micro-batches as fit the device
    (gradient accumulation; ``dmao/training/auto_batch.py``, docs/performance.md): the recipe's
    batch stays what it is, only how it is split is measured (a short probe at setup, kept in
    ``RUN/auto_batch.json`` for resuming)."""
    auto_batch_memory_fraction: float = 0.85
    """``auto_batch``: share of the device's memory (CUDA: the card's; CPU: available RAM) a step
    may use."""
    auto_batch_memory_gib: float = 0.0
    """``auto_batch``: a memory budget in GiB instead of the fraction (0: use the fraction)."""
    num_workers: int = 0
    """Data-loader worker processes (0 = load in the training process)."""
    on_the_fly_features: bool = False
    """Compute the fbank features from the audio in the data loader, batch by batch (ESPnet's
    way; icefall's ``--on-the-fly-feats``), instead of once at preparation into feature archives
    (the default): no archives on disk — of speed-perturbed and reverberated copies and noise
    windows neither, only their manifests —, more CPU per step (loader workers hide it). The
    numbers equal the cached ones up to the archives' lossy compression (lilcom, ~0.01). Audio
    that fails to load leaves its batch with a warning; ``dmao validate`` decodes every file
    before a run (:mod:`dmao.data.pipeline`)."""
    spec_augment: bool = True
    """Apply SpecAugment to training batches (lhotse's, with the ``spec_augment_*`` policy below:
    by default icefall's LibriSpeech policy without time warping)."""
    spec_augment_freq_masks: int = 2
    """Frequency masks per utterance (Park et al. 2019: mF)."""
    spec_augment_freq_width: int = 27
    """Widest frequency mask, in fbank bins (F)."""
    spec_augment_time_masks: int = 10
    """Time masks per utterance at most, at least 1 (lhotse scales the count down for short
    utterances; it always masks in time: ``spec_augment: false`` turns SpecAugment off)."""
    spec_augment_time_width: int = 100
    """Widest time mask, in 10 ms frames (T)."""
    spec_augment_max_time_fraction: float = 0.15
    """Largest share of an utterance's frames that the time masks cover together (pS), > 0."""
    spec_augment_time_warp: int = 0
    """Time warping factor in frames (W; icefall uses 80); 0: off, as in the reference setups
    (METHOD.md §6) — it is also the one costly part (an interpolation per utterance)."""
    spec_augment_prob: float = 0.9
    """Share of training utterances SpecAugment is applied to."""
    speed_perturb: list[float] = field(default_factory=list)
    """Speed factors whose copies extend the training parts (``[0.9, 1.1]``: the common 3-way
    speed perturbation of icefall and ESPnet); their features are computed once and cached as
    ``<part>_sp<f>`` in ``manifest_dir`` (:mod:`dmao.data.speed_perturb`). Empty: off. Dev and
    test are never perturbed; an epoch grows, the recipe's step count does not."""
    noise_dir: str | None = None
    """A folder of noise recordings (MUSAN, or any ``.wav``/``.flac``/``.ogg``/``.sph`` files,
    searched recursively) mixed into training utterances, as icefall's LibriSpeech recipes mix
    MUSAN (:mod:`dmao.data.noise`); cut into 10 s windows whose features are cached in
    ``manifest_dir``. None: off. Dev and test are never mixed."""
    noise_prob: float = 0.5
    """``noise_dir``: the chance that a training utterance gets noise (icefall: 0.5)."""
    noise_snr: list[float] = field(default_factory=lambda: [10.0, 20.0])
    """``noise_dir``: ``[low, high]`` signal-to-noise ratio in dB, drawn uniformly per utterance
    (icefall: 10–20 dB)."""
    rir_dir: str | None = None
    """A folder of room impulse responses (OpenSLR 28's ``RIRS_NOISES``, or any
    ``.wav``/``.flac``/``.ogg``/``.sph`` files, searched recursively): the training parts are
    extended with ``reverb_copies`` reverberated copies of every utterance, each with an RIR drawn
    from the folder, features cached as ``<part>_rvb<k>_<hash>`` in ``manifest_dir``
    (:mod:`dmao.data.reverb`). None: off. Dev and test are never reverberated."""
    reverb_copies: int = 1
    """``rir_dir``: reverberated copies of each training utterance (1–10)."""
    min_duration_s: float = 0.3
    """Training utterances shorter than this are excluded (seconds)."""
    max_duration_s: float = 30.0
    """Training utterances longer than this are excluded (seconds)."""
    bad_audio: BadAudioMode = "strict"
    """What corpus preparation does with missing or corrupt audio (0 bytes, unreadable or
    truncated, NaN/inf samples): ``strict`` lists every bad file (also in
    ``<manifest_dir>/bad_audio.json``) and stops before training; ``skip`` logs each once and
    leaves its utterance out. Another sampling rate is resampled, not bad. See docs/corpora.md."""
    max_bad_audio_fraction: float = 0.01
    """``bad_audio: skip`` only: the error budget, the largest fraction (0–1) of a part's
    utterances that may be left out; more stops the preparation."""


@dataclass
class TokenizerConfig:
    """Output units of the CTC model."""

    kind: TokenizerKind = "bpe"
    """``char`` (characters + word boundary), ``bpe`` (sentencepiece BPE, icefall's choice) or
    ``unigram`` (sentencepiece unigram, ESPnet's default)."""
    vocab_size: int = 256
    """Subword vocabulary size (``bpe``, ``unigram``; ignored for ``char``): every unit, the CTC
    blank and ``<unk>`` included (the model's output size)."""


@dataclass
class ModelConfig:
    """Encoder hyper-parameters (METHOD.md §6). The per-layer widths default to uniform."""

    name: str = "conformer_ctc"
    """Registered model name (see ``dmao.models.registry``): ``conformer_ctc``,
    ``ebranchformer_ctc``, ``transformer_ctc`` or a preset such as ``conformer_ctc_d384``. The
    fields below override the preset's; a field the model family does not have is ignored."""
    d_model: int = 256
    """Model dimension d."""
    num_layers: int = 12
    """Number of encoder blocks."""
    head_dim: int = 64
    """Dimension of one attention head; heads per layer default to d_model / head_dim."""
    ff_multiplier: int = 4
    """FFN hidden units per layer default to ff_multiplier * d_model."""
    cgmlp_multiplier: int = 6
    """E-Branchformer only: cgMLP hidden units (values + gates) per model dimension."""
    conv_kernel_size: int = 31
    """Depthwise convolution kernel size (frames after subsampling); the E-Branchformer uses it for
    the cgMLP gate and the branch merge; the Transformer has none."""
    dropout: float = 0.1
    """Dropout probability of every module at its default width."""
    dropout_scaling: bool = True
    """Every adaptable module trains with ``min(dropout · width / default width, 0.9)``
    (METHOD.md §4.7): after each DMAO event, and whenever a model is built from non-uniform widths
    (a control, a resumed or decoded run), so a control differs from its DMAO run only in when
    the architecture was reached. Uniform widths get ``dropout`` everywhere either way. (Was
    ``dmao.dropout_scaling``, which old configs may still use.)"""
    frontend_channels: list[int] = field(default_factory=lambda: [32, 64, 64, 32])
    """Channels of the four VGG frontend convolutions."""
    architecture: str | None = None
    """Optional per-layer widths: a JSON/YAML file with an ``EncoderArchitecture`` or a run folder
    whose final architecture is used (training a found architecture from scratch)."""


@dataclass
class OptimConfig:
    """AdamW and the learning-rate schedule (default: one-cycle, METHOD.md §6)."""

    schedule: LRSchedule = "one_cycle"
    """``one_cycle`` (METHOD.md §6), ``warmup_cosine`` (linear warm-up, then a half cosine to
    ``final_lr``) or ``noam`` (linear warm-up, then inverse square root); dmao/training/schedule.py.
    """
    peak_lr: float = 4e-4
    """Peak learning rate of the schedule."""
    initial_lr_ratio: float = 0.1
    """The warm-up starts at peak_lr * initial_lr_ratio (one-cycle also returns to it)."""
    final_lr: float = 1e-6
    """Learning rate at the last step (one_cycle, warmup_cosine)."""
    warmup_fraction: float = 0.45
    """Fraction of steps of the linear rise to the peak. One-cycle (at most 0.5) uses the same
    fraction for the fall back to the initial LR, the rest decays linearly to final_lr (RWTH
    one-cycle schedule); for warmup_cosine and noam 0.05–0.1 is usual."""
    weight_decay: float = 1e-3
    """AdamW decoupled weight decay."""
    betas: list[float] = field(default_factory=lambda: [0.9, 0.98])
    """AdamW betas."""
    eps: float = 1e-16
    """AdamW epsilon (METHOD.md §6 uses 1e-16)."""
    grad_clip_norm: float = 5.0
    """Clip the global gradient norm to this value (0 disables clipping)."""


@dataclass
class TrainConfig:
    """The training loop."""

    max_steps: int = 10_000
    """Total optimizer steps. The LR schedule (and DMAO's event schedule) are fractions of it."""
    stop_at_step: int = 0
    """End the run after this many optimizer steps (0: at ``max_steps``) while the LR and DMAO
    schedules still span ``max_steps``: the search half of ``dmao compare --search-retrain``
    stops right after its last event."""
    seed: int = 42
    """Seed of model initialisation, data order and augmentation."""
    init_from: str = ""
    """Start from these weights (a checkpoint file or a run folder: its ``best.pt``) instead of
    a random initialisation; data, optimizer, schedule and DMAO start anew at step 0
    (fine-tuning; ``dmao/training/initialization.py``). The model takes the checkpoint's
    per-layer architecture unless ``model.architecture`` is set, and the source run's tokeniser.
    Ignored when resuming."""
    init_exclude: list[str] = field(default_factory=list)
    """``init_from``: weight-name prefixes that keep their fresh initialisation, e.g.
    ``[output]`` for a new vocabulary (the run then trains its own tokeniser)."""
    log_every_steps: int = 25
    """Write training metrics every this many steps."""
    valid_every_steps: int = 500
    """Validate (dev loss and greedy WER) every this many steps, and at the end."""
    max_valid_utterances: int = 400
    """Validate on at most this many dev utterances (the first ones, a fixed subset)."""
    checkpoint_every_steps: int = 500
    """Write a checkpoint every this many steps, and at the end."""
    keep_last_checkpoints: int = 3
    """Keep the newest k step checkpoints (``best`` and ``last`` are kept in addition)."""
    ema_decay: float = 0.0
    """Keep an exponential moving average of the weights with this decay (e.g. 0.999; 0: off),
    as icefall's averaged model: stored in every checkpoint, restarted after each DMAO event,
    decoded with ``dmao decode --ema`` (``dmao/training/ema.py``). Training uses the live
    weights; each validation scores both (``valid_ema``), ``best-ema.pt`` follows the average's
    dev WER."""
    max_consecutive_bad_steps: int = 20
    """Stop after this many optimizer steps in a row had a non-finite loss or gradient (each is
    skipped without an update); the last bad batches and the model are dumped to
    ``RUN/bad_steps/`` for inspection. Isolated bad steps never stop a run."""
    device: str = "auto"
    """``auto`` (CUDA when available), ``cpu`` or ``cuda[:N]``. Under torchrun each process uses
    ``cuda:LOCAL_RANK`` (``auto``/``cuda``); see docs/distributed.md."""
    precision: PrecisionName = "fp32"
    """``fp32``, ``bf16`` or ``fp16``: autocast dtype of forward passes (fp16 adds a GradScaler).
    bf16 needs no loss scaling and also runs on CPU."""
    accum_grad_steps: int = 1
    """Micro-batches per optimizer step on each rank: the global batch is
    ``world_size × accum_grad_steps × data.max_batch_seconds`` of audio at most."""
    num_threads: int = 0
    """torch intra-op threads on CPU (0 = leave torch's default)."""
    compile: CompileMode = "none"
    """``torch.compile`` of the training forward (docs/performance.md): ``none``; ``dynamic``
    (one graph for every batch shape); ``static`` (one graph per shape: use with
    ``data.pad_to_bucket``, refused without it); ``cudagraphs`` (``static`` plus CUDA graphs,
    ``mode="reduce-overhead"``; CUDA only). A DMAO event changes the model's shapes: the forward
    is compiled again once per new shape."""
    compile_backend: str = "inductor"
    """The ``torch.compile`` backend (``inductor``; ``aot_eager`` compiles fast and runs eagerly,
    for debugging)."""
    progress_bar: bool = True
    """Show a tqdm progress bar."""

    @property
    def end_step(self) -> int:
        """The optimizer step the run ends at: ``stop_at_step`` if set (and below
        ``max_steps``), else ``max_steps``."""
        return min(self.stop_at_step or self.max_steps, self.max_steps)


@dataclass
class DecodeConfig:
    """Decoding settings used by ``dmao decode`` and the demo."""

    method: DecodeMethod = "greedy"
    """``greedy``, ``beam`` (CTC prefix beam search) or ``lm`` (beam search with the n-gram LM
    ``lm_path``, over the words of ``lexicon_path`` or lexicon-free; docs/decoding.md)."""
    beam_size: int = 8
    """Beam size of the prefix beam search (``beam``) and of the LM beam search (``lm``)."""
    lm_path: str | None = None
    """``lm`` only: KenLM/ARPA n-gram file (``dmao lm build``): a word LM with a lexicon, a token
    LM (``--unit token``) without."""
    lexicon_path: str | None = None
    """``lm`` only: lexicon (``WORD t1 t2 ...`` per line, ``dmao lm lexicon``); ``None`` decodes
    lexicon-free over tokens."""
    lm_weight: float = 0.5
    """``lm`` only: weight of the LM's log10 score added to the acoustic log-probability."""
    word_score: float = 0.0
    """``lm`` with a lexicon: score added per word (word insertion bonus; negative penalises)."""
    sil_score: float = 0.0
    """``lm`` only: score added per frame emitting the word boundary ``|`` (lexicon-free
    decoding's insertion control for character models)."""
    beam_size_token: int | None = None
    """``lm`` only: tokens tried per frame and hypothesis, the most probable first; ``None`` =
    all."""
    beam_threshold: float = 25.0
    """``lm`` only: hypotheses scoring more than this below the frame's best are pruned."""
    checkpoint: str = "best"
    """Which checkpoint to decode: ``best`` (lowest dev WER), ``last`` or a file name."""
    max_batch_seconds: float = 300.0
    """Total audio per decoding batch, in seconds."""


@dataclass
class ExperimentConfig:
    """One complete run."""

    data: DataConfig = field(default_factory=DataConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    dmao: DmaoConfig = field(default_factory=DmaoConfig)
    """In-training architecture optimisation (off unless ``dmao.enabled: true``)."""

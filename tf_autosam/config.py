"""Every hyper-parameter of a run, in one dataclass, with named presets.

The CLI builds its flags from the fields below (their ``help`` metadata is the
flag's help text), a preset overrides the defaults, and explicit flags override
the preset. A run saves the resolved object as ``config.json``.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Optional

from tf_autosam.backbones import REGISTRY as BACKBONES


def _field(default: Any, help: str, choices: Optional[tuple] = None, sampler: bool = False) -> Any:
    """A config field; ``sampler`` marks one that only the AutoSAM model reads."""
    metadata: dict[str, Any] = {"help": help, "sampler": sampler}
    if choices is not None:
        metadata["choices"] = choices
    return dataclasses.field(default=default, metadata=metadata)


LARGE_CATALOGUE_NEGATIVES = 10_000

# How AutoSAM's sampler acts at evaluation and serving (``inference_mode``).
INFERENCE_MODES = ("deterministic", "stochastic", "keep_all")

# ``--strategy`` values, built by ``tf_autosam.distribution.make_strategy``.
STRATEGIES = ("default", "mirrored", "multi_worker", "parameter_server")


@dataclasses.dataclass
class TrainerConfig:
    """The resolved configuration of one training run."""

    # Data.
    dataset: str = _field("ml100k", "Dataset name: ml100k (MovieLens-100K, fetched and cached), csv (--data_path), or a hand-downloaded one: tmall, alipay, yelp, amazon/<category> (raw file in --manual_dir; a missing file prints where to get it).")
    data_path: Optional[str] = _field(None, "Interaction CSV with header user_id,item_id,timestamp (for --dataset=csv).")
    data_dir: Optional[str] = _field(None, "Cache directory for raw and prepared data (default: $TF_AUTOSAM_DATA_DIR or ~/.cache/tf_autosam).")
    manual_dir: Optional[str] = _field(None, "Folder holding hand-downloaded raw files (default: <data_dir>/tfds/downloads/manual, tensorflow-datasets' convention).")
    dedupe: bool = _field(True, "Drop exact duplicate (user, item, timestamp) rows before building sequences.")
    k_core: Optional[int] = _field(None, "Iterative k-core filter on users and items (0 = off; unset = the dataset's default: 5 for tmall, alipay, yelp, amazon; off for ml100k and csv).")
    actions: Optional[str] = _field(None, "Comma-separated action codes that count as interactions (tmall: 0 click, 1 cart, 2 purchase, 3 favourite; alipay: 0 click, 1 buy); unset = all.")
    skip_bad_rows: bool = _field(False, "Skip malformed rows and report them instead of stopping at the first one.")

    # Model.
    model: str = _field("autosam", "Model to train: sasrec (the plain --backbone, every behaviour kept: the name predates other backbones and means 'no sampler'), autosam (the backbone fed by the learned behaviour sampler), or popularity (most-popular baseline, no training).", ("sasrec", "autosam", "popularity"))
    backbone: str = _field("sasrec", "Sequence encoder of sasrec and autosam models (registered in tf_autosam.backbones): sasrec (causal self-attention), gru4rec (a GRU over item embeddings). The preset of the same name holds its reference hyper-parameters.", tuple(BACKBONES))
    max_len: int = _field(100, "Length of the input window (most recent items kept).")
    hidden_size: int = _field(128, "Width d of the item embeddings and of the hidden states that score them; also the width of SASRec's and the sampler's transformer blocks.")
    num_blocks: int = _field(2, "Number of backbone layers: transformer blocks (sasrec) or stacked GRUs (gru4rec).")
    gru_size: int = _field(128, "Units of each GRU of gru4rec (its state is projected to hidden_size to score items).")
    num_heads: int = _field(4, "Attention heads per block.")
    ffn_size: int = _field(256, "Inner width of the feed-forward sub-layer.")
    dropout: float = _field(0.1, "Dropout on embeddings, attention weights and sub-layer outputs (gru4rec: on the item embeddings it reads).")
    norm: str = _field("post", "Block layout: post (reference: LayerNorm(x + a*Sublayer(x))) or pre (pre-norm).", ("post", "pre"))
    residual_scale_init: float = _field(1e-8, "Initial value of the learnable residual scale a of post-norm blocks.")

    # AutoSAM sampler (AUTOSAM_SPEC sections 2 to 5).
    tau: float = _field(5.0, "Sampler softmax temperature; larger flattens keep probabilities towards 0.5.", sampler=True)
    base_rate: float = _field(1.0, "Base rate b of the sequence-perplexity reward; larger keeps more items.", sampler=True)
    lambda1: float = _field(1e-2, "Weight of the future-prediction reward.", sampler=True)
    lambda2: float = _field(1e-2, "Weight of the sequence-perplexity reward.", sampler=True)
    gamma: float = _field(0.9, "Discount of the future-prediction reward-to-go.", sampler=True)
    sampler_optimizer: str = _field("sgd", "Optimiser of the sampler's own weights (the recommender always uses Adam).", ("sgd", "adam"), sampler=True)
    sampler_learning_rate: float = _field(0.1, "Learning rate of the sampler's own weights.", sampler=True)
    normalize_rewards: bool = _field(False, "Standardise the total reward over each batch's real positions before the policy gradient (a baseline that makes the sampler's step size independent of the reward scale).", sampler=True)
    sampler_surprise: bool = _field(False, "Give the sampler each behaviour's surprise: how much worse the backbone scores it, given the behaviours before it, than the user's average (costs one extra backbone pass at inference).", sampler=True)
    policy_weight: float = _field(1.0, "Weight of the policy loss in the joint loss. The sampler's own Adam is blind to it; it sets how hard the policy gradient pulls on the embeddings the recommender shares.", sampler=True)
    recommender_input: str = _field("sampled", "What the recommender trains on once the sampler acts: the sampled Bernoulli actions (reference), the decision inference makes (decided: p >= 0.5, newest kept), so training and inference inputs match, or the full window (full: the recommender trains as plain SASRec would and the sampler only filters its input at inference), or the full window predicting only the behaviours the sampler decides to keep (full_kept_targets: no next-item loss on what it judges noise).", ("sampled", "decided", "full", "full_kept_targets"), sampler=True)
    sampler_warmup_epochs: int = _field(0, "Epochs of plain backbone training (every behaviour kept, sampler off and not learning) before the sampler acts; its rewards need a backbone that already predicts.", sampler=True)
    entropy_weight: float = _field(0.0, "Weight of a bonus for the keep decisions' entropy in the sampler's loss; keeps keep probabilities from saturating at 0 or 1 (reference: 0).", sampler=True)
    target_keep_rate: Optional[float] = _field(None, "If set (0 < rate <= 1), pull the mean keep probability towards this rate with a quadratic penalty on the sampler; unset = the rewards alone decide.", sampler=True)
    keep_rate_weight: float = _field(1.0, "Weight of the target_keep_rate penalty (squared distance of the batch's mean keep probability to the target).", sampler=True)
    inference_mode: str = _field("deterministic", "How the sampler acts at evaluation: deterministic (keep p >= 0.5, last item always), stochastic (Bernoulli draws averaged), keep_all (sampler off).", INFERENCE_MODES, sampler=True)
    inference_draws: int = _field(1, "Bernoulli draws averaged per user in stochastic inference (seeded, so reproducible).", sampler=True)

    # Training.
    epochs: int = _field(200, "Maximum number of epochs.")
    batch_size: int = _field(128, "Training batch size (sequences).")
    learning_rate: float = _field(1e-3, "Adam learning rate.")
    strategy: str = _field("default", "Where training runs: default (one device), mirrored (this host's GPUs or CPUs, synchronous), multi_worker (hosts from TF_CONFIG, synchronous), parameter_server (chief, workers and parameter servers from TF_CONFIG, item table sharded over the servers; asynchronous). batch_size is the global batch.", STRATEGIES)
    cpu_devices: int = _field(1, "Split the host CPU into this many logical devices at start-up; without GPUs, --strategy=mirrored makes each one a replica (tests and benchmarks of the mirrored path on a CPU host).")
    precision: str = _field("float32", "Compute dtype of the layers: float32, or mixed_bfloat16 (bfloat16 compute, the item-scoring products included; float32 variables, hidden states, softmaxes and losses; for GPUs with bfloat16 units, e.g. A100/H100, TPUs, and CPUs with AVX-512 BF16 or AMX; no loss scaling needed).", ("float32", "mixed_bfloat16"))
    jit_compile: bool = _field(False, "Compile the training step with XLA (AutoSAM then runs compacted windows at full width: XLA needs static shapes).")
    weight_average_decay: float = _field(0.0, "Decay of an exponential moving average of the weights (sampler's included) that validation, early stopping, the test metrics, checkpoints and the export use; training steps still move the raw weights. 0 = off; 0.999 averages over about the last thousand steps.")
    weight_decay: float = _field(0.0, "Decoupled weight decay of the recommender's weights (AdamW; LayerNorm parameters and biases excluded); 0 = plain Adam.")
    label_smoothing: float = _field(0.0, "Share of the next-item target spread evenly over every class of the softmax (all items, or the sampled negatives): the recommender trains towards (1 - s) on the target plus s / classes on each class; 0 = plain cross-entropy. The rewards always score the unsmoothed log P(target).")
    loss_excludes_history: bool = _field(False, "Leave the items a training window holds at or before each position (other than its target) out of that position's softmax, as the evaluation masks a user's history: the model is no longer trained to rank seen items below the unseen ones they resemble. The rewards still score the plain log P(target).")
    num_negatives: int = _field(0, "Shared uniform negatives per batch for sampled softmax; 0 (or >= catalogue size) = full softmax.")
    full_softmax_max_items: int = _field(200_000, "Largest catalogue trained with a full softmax: above it, num_negatives 0 becomes 10,000 shared negatives (full logits need batch x max_len x items floats), and the run says so.")
    window_overlap: float = _field(0.5, "Fraction of a training window shared with the next window cut from the same history (0 = non-overlapping).")
    new_targets_only: bool = _field(False, "With overlapping windows, train each target once: only on the positions a window adds over the next (autosam: the predictions its compacted window makes at those positions; the rewards still score every position).")
    patience: int = _field(10, "Epochs without validation NDCG@10 improvement before stopping (best weights are restored).")
    seed: int = _field(42, "Seed for every random choice (initialisation, shuffling, dropout, negatives).")

    # Fault tolerance.
    backup_every_steps: int = _field(0, "Back up the training state (weights, optimisers, counters, early stopping) to RUN_DIR/backup every this many steps; 0 = at the end of every epoch. Rerunning the same command with the same --run_dir resumes from the last backup.")
    min_free_gb: float = _field(1.0, "Free disk space (GiB) the run directory needs before training starts; less stops the run at once.")

    # Evaluation.
    eval_batch_size: int = _field(256, "Users per evaluation batch (the users x items score matrix is built one batch at a time).")
    sampled_eval_negatives: int = _field(0, "Also report sampled metrics against this many random negatives (0 = off; secondary, labelled 'sampled').")

    # Output.
    run_dir: Optional[str] = _field(None, "Directory for this run's config, metrics, checkpoints and TensorBoard logs (default: runs/<dataset>-<model>-<time>).")
    export: bool = _field(True, "At the end, export the best model (sasrec, autosam) as a SavedModel for TF Serving under RUN_DIR/export/<export_model_name>/<version>/.")
    export_model_name: str = _field("autosam", "Model name of the export (the name TF Serving serves it under).")
    serving_k: int = _field(10, "Recommendations per request of the exported serving_default signature.")
    serving_chunk_items: int = _field(1_048_576, "Largest catalogue the export's top-k scores in one product; a larger one is scored this many items at a time (same exact answer, a request holds batch x this many scores).")
    verbose: int = _field(1, "0 = quiet, 1 = progress bar per epoch, 2 = one line per epoch.")

    @property
    def window_stride(self) -> int:
        """Items between the ends of consecutive training windows of one user."""
        return max(1, round(self.max_len * (1.0 - self.window_overlap)))

    @property
    def action_codes(self) -> Optional[frozenset[str]]:
        """``actions`` as a set of codes (None = every action)."""
        if self.actions is None:
            return None
        return frozenset(code.strip() for code in self.actions.split(",") if code.strip())

    def dataset_options(self) -> dict[str, Any]:
        """``input_pipeline.datasets.load_dataset``'s keyword arguments for this config's data."""
        return dict(
            data_path=self.data_path, data_dir=self.data_dir, manual_dir=self.manual_dir, dedupe=self.dedupe,
            k_core=self.k_core, skip_bad_rows=self.skip_bad_rows, actions=self.action_codes,
        )

    def __post_init__(self) -> None:
        if self.target_keep_rate is not None and not 0.0 < self.target_keep_rate <= 1.0:
            raise ValueError(f"target_keep_rate must be in (0, 1], got {self.target_keep_rate}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if not 0.0 <= self.weight_average_decay < 1.0:
            raise ValueError(f"weight_average_decay must be in [0, 1), got {self.weight_average_decay}")
        if self.weight_average_decay and self.strategy == "parameter_server":
            raise ValueError("weight_average_decay is not supported with --strategy=parameter_server "
                             "(the average would need its own sharded copy of the item table)")
        if self.serving_chunk_items < 1:
            raise ValueError(f"serving_chunk_items must be positive, got {self.serving_chunk_items}")

    def check_catalogue(self, num_items: int) -> None:
        """Raises ValueError for a setting a catalogue of ``num_items`` items cannot satisfy."""
        if self.sampled_eval_negatives >= num_items:
            raise ValueError(
                f"--sampled_eval_negatives={self.sampled_eval_negatives} needs more items than the catalogue's "
                f"{num_items:,} (the target is one of them); use fewer negatives or 0 for full ranking only"
            )

    def for_catalogue(self, num_items: int) -> "TrainerConfig":
        """This config, checked against ``num_items`` (:meth:`check_catalogue`), with sampled softmax where
        a full one over the catalogue would not fit."""
        self.check_catalogue(num_items)
        if self.num_negatives == 0 and num_items > self.full_softmax_max_items:
            return self.replace(num_negatives=LARGE_CATALOGUE_NEGATIVES)
        return self

    def replace(self, **overrides: Any) -> "TrainerConfig":
        unknown = set(overrides) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ValueError(f"unknown config fields: {sorted(unknown)}")
        return dataclasses.replace(self, **overrides)

    def trained_fields(self) -> dict[str, Any]:
        """The values that decide a run's trained weights and metrics (finished runs are reused on them).

        A model without the sampler never reads the sampler's fields, so two
        such configs that differ only there describe the same run; nor do
        where files live and what the run prints or exports change its result.
        """
        ignored = OUTPUT_FIELDS | (set() if self.model == "autosam" else SAMPLER_FIELDS)
        return {name: value for name, value in dataclasses.asdict(self).items() if name not in ignored}

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "TrainerConfig":
        return cls().replace(**json.loads(text))


# Where a run's files live and what it prints or exports: nothing it trains or measures.
OUTPUT_FIELDS = frozenset(
    {"data_dir", "manual_dir", "run_dir", "min_free_gb", "backup_every_steps", "verbose", "export", "export_model_name", "serving_k",
     "serving_chunk_items"}
)
# The fields only the AutoSAM model reads (marked ``sampler`` above).
SAMPLER_FIELDS = frozenset(field.name for field in dataclasses.fields(TrainerConfig) if field.metadata["sampler"])

# The authors' reference values (AUTOSAM_SPEC sections 1 and 5): post-norm
# blocks, 10,000 shared sampled negatives, max_len 100, patience 1; the
# sampler's tau 5, rewards scaled by 1e-2, SGD 0.1 and Bernoulli inference.
REFERENCE = dict(
    max_len=100, hidden_size=128, num_blocks=2, num_heads=4, ffn_size=256,
    dropout=0.1, norm="post", residual_scale_init=1e-8, batch_size=128,
    learning_rate=1e-3, num_negatives=10_000, window_overlap=0.0, patience=1,
    tau=5.0, base_rate=1.0, lambda1=1e-2, lambda2=1e-2, gamma=0.9, sampler_optimizer="sgd",
    sampler_learning_rate=0.1, normalize_rewards=False, sampler_surprise=False, inference_mode="stochastic",
)

# The reference architecture with a full softmax and half-overlapping windows
# (BUILD_NOTES.md, "What moves SASRec here"), the sampler changes that make its
# learning signal work, and the recommender trained on the full window, which
# keeps it as accurate as plain SASRec (BUILD_NOTES.md, "Making the sampler learn").
DEFAULT = dict(
    REFERENCE, num_negatives=0, dropout=0.3, window_overlap=0.5, patience=10,
    tau=1.0, normalize_rewards=True, sampler_optimizer="adam", sampler_learning_rate=3e-3, sampler_surprise=True,
    sampler_warmup_epochs=3, policy_weight=0.01, inference_mode="deterministic", recommender_input="full",
)

# Training examples close to RecBole's prefixes: each target trained once per epoch,
# with at least 90% of a window as context where the history has it.
EACH_TARGET_ONCE = dict(window_overlap=0.9, new_targets_only=True)

# GRU4Rec in RecBole's layout (GRU4Rec.yaml: one GRU without biases over dropped-out
# item embeddings, a projection back to the item table, dropout 0.3, cross-entropy over
# all items) at twice RecBole's widths: embeddings 128 and 256 GRU units score 0.1121
# test NDCG@10 over three seeds on ML-100K against 0.1075 at RecBole's 64 / 128
# (BUILD_NOTES.md, "Backbones"). Default sampler.
GRU4REC = dict(
    DEFAULT, **EACH_TARGET_ONCE, backbone="gru4rec", hidden_size=128, gru_size=256, num_blocks=1, dropout=0.3,
)

# The reference SASRec architecture with the recipe that trains it best on ML-100K
# (BUILD_NOTES.md, "What moves SASRec here"): each target once, RecBole's dropout 0.5,
# a residual scale starting at 1, label smoothing 0.1 and no softmax share for the
# items the window already holds. Three times the default preset's cost per epoch,
# hence not the CLI default.
SASREC = dict(
    DEFAULT, **EACH_TARGET_ONCE, dropout=0.5, residual_scale_init=1.0, label_smoothing=0.1, loss_excludes_history=True,
)

# For logs with accidental clicks: the recommender trains on the input the sampler's
# decision leaves (p >= 0.5, newest kept), as inference will give it. On ML-100K with
# planted noise it beats SASRec where the full-window default does not; on clean
# ML-100K it costs 10% against the default (BUILD_NOTES.md, "On ML-100K with planted noise").
DENOISE = dict(DEFAULT, recommender_input="decided")

# The CLI's default, the authors' reference values, each backbone's best-measured
# preset, and the preset for noisy logs.
PRESETS: dict[str, dict[str, Any]] = {
    "default": DEFAULT, "reference": REFERENCE, "sasrec": SASREC, "gru4rec": GRU4REC, "denoise": DENOISE,
}


@dataclasses.dataclass(frozen=True)
class SearchRange:
    """How ``python -m tf_autosam.tune`` searches one field: a float range
    (log-uniform where ``log``) or a list of ``choices``."""

    low: float = 0.0
    high: float = 0.0
    log: bool = False
    choices: tuple = ()


# AutoSAM's knobs and the learning rates, searched by tf_autosam.tune. A
# target_keep_rate of 0.0 stands for "unset" (keras-tuner choices cannot be None).
SEARCH_SPACE: dict[str, SearchRange] = {
    "tau": SearchRange(0.5, 5.0, log=True),
    "base_rate": SearchRange(0.0, 2.0),
    "lambda1": SearchRange(1e-3, 1.0, log=True),
    "lambda2": SearchRange(1e-3, 1.0, log=True),
    "gamma": SearchRange(0.5, 0.99),
    "learning_rate": SearchRange(3e-4, 3e-3, log=True),
    "sampler_learning_rate": SearchRange(1e-3, 1e-1, log=True),
    "target_keep_rate": SearchRange(choices=(0.0, 0.5, 0.7, 0.9)),
}
UNSET_KEEP_RATE = 0.0


def from_search(values: dict[str, Any]) -> dict[str, Any]:
    """Config overrides for one trial's values (searched fields only)."""
    overrides = {name: value for name, value in values.items() if name in SEARCH_SPACE}
    if overrides.get("target_keep_rate") == UNSET_KEEP_RATE:
        overrides["target_keep_rate"] = None
    return overrides


def field_names() -> list[str]:
    return [field.name for field in dataclasses.fields(TrainerConfig)]


def preset(name: str) -> TrainerConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; known presets: {', '.join(sorted(PRESETS))}")
    return TrainerConfig().replace(**PRESETS[name])

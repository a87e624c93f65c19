"""params.yaml: loading, profile resolution, overrides and validation.

`params.yaml` is the single source of configuration for the package CLI, Snakemake and DVC.
Resolution order: the base file < ``profiles[<profile>]`` < ``--set key.sub=value`` overrides.
The resolved tree is validated once against the pydantic schema below; unknown keys and bad
values are reported with their dotted path before any expensive work starts.
"""

from __future__ import annotations

import copy
import difflib
import os
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

KNOWN_METHODS = ("vssl", "byol", "mocov3", "simclr", "barlow_twins", "random")
BUILTIN_DATASETS = ("cifar10", "cifar100", "stl10", "fashion_mnist", "imagenet100")


class ConfigError(ValueError):
    """A bad params.yaml, profile or override, with a message that names the key."""


def _not_bool(v: Any) -> Any:
    # pydantic's lax mode reads a YAML `true` as the integer 1 (`pretrain.epochs: true` would
    # train one epoch); a numeric setting must be written as a number.
    if isinstance(v, bool):
        raise ValueError(f"must be a number, not a boolean ({str(v).lower()})")
    return v


# Every numeric field of the schema: an int or float that rejects booleans
# (tests/test_config.py walks the schema and checks that each numeric field does).
Int = Annotated[int, BeforeValidator(_not_bool)]
Float = Annotated[float, BeforeValidator(_not_bool)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class GridCfg(_Strict):
    datasets: list[str] = Field(min_length=1)
    # Method names or names declared under `variants:` (checked in `resolve`).
    methods: list[str] = Field(min_length=1)
    seeds: list[Annotated[Int, Field(ge=0)]] = Field(min_length=1)  # numpy seeds are >= 0

    @field_validator("methods")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        dup = sorted({m for m in v if v.count(m) > 1})
        if dup:
            raise ValueError(f"listed twice: {', '.join(dup)}")
        return v


# What a variant may override: the sections that shape a pretraining run and nothing the other
# stages read (data subsets, probes), so every stage after pretraining stays comparable.
VARIANT_SECTIONS = ("methods", "pretrain", "backbone")


class VariantCfg(_Strict):
    """A grid entry that is a method plus overrides: ``{method: vssl, set: {methods.vssl.kl:
    none}}``. Keys of ``set`` are dotted params paths under ``methods.<method>``, ``pretrain`` or
    ``backbone``; values replace the resolved profile's."""

    method: str
    set: dict[str, Any] = {}

    @field_validator("method")
    @classmethod
    def _known_method(cls, v: str) -> str:
        if v not in KNOWN_METHODS:
            raise ValueError(f"unknown method {v!r}; known: {', '.join(KNOWN_METHODS)}")
        return v


class MlflowCfg(_Strict):
    enabled: bool = True  # false: no run, no store, `mlflow` never imported (like --no-mlflow)
    tracking_uri: str = "sqlite:///mlflow.db"
    experiment: str = "vssl"


class NpzDatasetCfg(_Strict):
    kind: Literal["npz"] = "npz"
    path: str
    test_size: Int = Field(1000, gt=0)
    split_seed: Int = 0
    preset: str = "cifar"


def _workers_setting(v: Any) -> Any:
    _not_bool(v)
    if v == "auto" or (isinstance(v, int) and v >= 0):
        return v
    raise ValueError(f"must be a whole number >= 0 or 'auto', got {v!r}")


class DataCfg(_Strict):
    train_subset: Int | None = Field(None, gt=0)
    test_subset: Int | None = Field(None, gt=0)
    # DataLoader workers per process for on-disk datasets (image folders); auto: the cores this
    # process may use, shared among the processes on its machine, one left for the main process.
    num_workers: Annotated[Int | str, BeforeValidator(_workers_setting)] = 2

    def workers(self) -> int:
        """``num_workers`` as a number (``auto`` resolved for this process)."""
        if self.num_workers != "auto":
            return int(self.num_workers)
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
        return max(0, (cores or 1) // max(1, local) - 1)


class BackboneCfg(_Strict):
    name: Literal["resnet18", "resnet50"] = "resnet18"
    width: Int = Field(64, gt=0)
    cifar_stem: Literal["auto", True, False] = "auto"


class PretrainCfg(_Strict):
    epochs: Int = Field(ge=0)
    epochs_by_dataset: dict[str, Int] = {}
    batch_size: Int = Field(gt=0)
    optimizer: Literal["lars", "sgd", "adamw"] = "lars"
    # base_lr and weight_decay are each method's own (methods.<m>.optimizer): solo-learn's
    # values differ per method, and a shared default would be shadowed by every one of them.
    momentum: Float = Field(0.9, ge=0, lt=1)
    lars_eta: Float = Field(0.02, gt=0)
    warmup_epochs: Float = Field(10, ge=0)
    min_lr: Float = Field(0.0, ge=0)
    grad_accum_steps: Int = Field(1, ge=1)
    grad_clip_norm: Float | None = Field(None, gt=0)  # global L2 norm of the method's gradients
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = "auto"
    # true: batched augmentation (in-memory: all of it on the device; image folders: crops in the
    # workers, the rest on the device); false: per sample in workers; auto: true except for
    # image folders on the CPU.
    gpu_augment: Literal["auto", True, False] = "auto"
    # auto: channels-last CNN weights and inputs on CUDA and CPU (measured faster on both).
    channels_last: Literal["auto", True, False] = "auto"
    # auto: torch.compile the training module on CUDA, eager on CPU (falls back to eager).
    compile: Literal["auto", True, False] = "auto"
    # torch.compile's mode where it compiles; reduce-overhead replays CUDA graphs (fewer
    # launches). auto: reduce-overhead on one CUDA device (1.6-2.5x the default mode's images/s
    # on an H100), default elsewhere (see vssl.train.assembly.resolve_compile_mode).
    compile_mode: Literal[
        "auto", "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"
    ] = "auto"
    checkpoint_every: Int = Field(10, ge=1)
    knn_every: Int = Field(10, ge=0)
    eval_every: Int = Field(1, ge=1)  # epochs between online-probe test passes (and the last)
    online_probe_lr: Float = Field(0.1, gt=0)
    log_every: Int = Field(50, ge=1)
    # SIGTERM/SIGINT: save the last completed epoch before exiting (143/130), to --resume from.
    checkpoint_on_signal: bool = True

    @field_validator("mixed_precision", mode="before")
    @classmethod
    def _yaml_no(cls, value: Any) -> Any:
        # YAML 1.1 reads a bare `no` as false: `mixed_precision: no` means Accelerate's "no"
        return "no" if value is False else value


class MethodOptimCfg(_Strict):
    """A method's own optimiser settings: ``base_lr`` and ``weight_decay`` (required for every
    trained method, absent for ``random``), and ``grad_clip_norm`` (overrides
    ``pretrain.grad_clip_norm`` for this method)."""

    base_lr: Float | None = Field(None, gt=0)
    weight_decay: Float | None = Field(None, ge=0)
    grad_clip_norm: Float | None = Field(None, gt=0)


class _MethodCfg(_Strict):
    optimizer: MethodOptimCfg = MethodOptimCfg()


class _MomentumCfg(_MethodCfg):
    tau_base: Float = Field(ge=0, le=1)
    tau_final: Float = Field(ge=0, le=1)


class VsslCfg(_MomentumCfg):
    # No defaults here: params.yaml sets every value; the defaults of the library API are those
    # of the method classes' signatures (vssl/methods/*.py).
    proj_hidden_dim: Int = Field(gt=0)
    latent_dim: Int = Field(gt=0)
    pred_hidden_dim: Int = Field(gt=0)
    likelihood: Literal["gaussian", "cosine"]
    kl: Literal["gaussian", "cosine", "none"]
    beta: Float = Field(ge=0)
    sample: bool
    predictor: bool
    prior: Literal["teacher", "standard_normal"]
    head_input: Literal["projector", "predictor"]
    variance_input: Literal["head", "backbone"]
    likelihood_variance: Literal["student", "teacher"]
    reduction: Literal["sum", "mean"]
    direction_variance: Literal["per_coordinate", "isotropic"]
    logvar_min: Float
    logvar_max: Float

    @model_validator(mode="after")
    def _logvar_bounds(self) -> VsslCfg:
        if not self.logvar_min < self.logvar_max:
            raise ValueError(
                f"logvar_min ({self.logvar_min}) must be below logvar_max ({self.logvar_max})"
            )
        return self


class ByolCfg(_MomentumCfg):
    proj_hidden_dim: Int = Field(gt=0)
    proj_output_dim: Int = Field(gt=0)
    pred_hidden_dim: Int = Field(gt=0)


class MocoV3Cfg(ByolCfg):
    temperature: Float = Field(gt=0)


class SimclrCfg(_MethodCfg):
    proj_hidden_dim: Int = Field(gt=0)
    proj_output_dim: Int = Field(gt=0)
    temperature: Float = Field(gt=0)


class BarlowTwinsCfg(_MethodCfg):
    proj_hidden_dim: Int = Field(gt=0)
    proj_output_dim: Int = Field(gt=0)
    lamb: Float = Field(ge=0)
    scale_loss: Float = Field(gt=0)


class RandomCfg(_MethodCfg):
    pass


class MethodsCfg(_Strict):
    vssl: VsslCfg
    byol: ByolCfg
    mocov3: MocoV3Cfg
    simclr: SimclrCfg
    barlow_twins: BarlowTwinsCfg
    random: RandomCfg


class ExtractCfg(_Strict):
    batch_size: Int = Field(512, gt=0)


class LinearProbeCfg(_Strict):
    weight_decays: list[Annotated[Float, Field(ge=0)]] = Field(
        [0.0, 1e-6, 1e-5, 1e-4, 1e-3], min_length=1
    )
    val_fraction: Float = Field(0.1, gt=0, lt=1)
    max_iter: Int = Field(300, gt=0)  # full-batch L-BFGS iterations
    lr: Float = Field(1.0, gt=0)  # L-BFGS step size


class KnnProbeCfg(_Strict):
    k: list[Annotated[Int, Field(gt=0)]] = Field([20, 200], min_length=1)
    temperature: Float = Field(0.07, gt=0)


class ProbeCfg(_Strict):
    linear: LinearProbeCfg = LinearProbeCfg()
    knn: KnnProbeCfg = KnnProbeCfg()


class Params(_Strict):
    """The resolved configuration (profile applied). Profiles themselves are not kept."""

    # The params file's folder (not part of the configuration: never dumped or logged).
    _base_dir: Path | None = PrivateAttr(default=None)

    profile: str
    data_root: str
    grid: GridCfg
    mlflow: MlflowCfg = MlflowCfg()
    datasets: dict[str, NpzDatasetCfg] = {}
    variants: dict[str, VariantCfg] = {}
    data: DataCfg = DataCfg()
    backbone: BackboneCfg = BackboneCfg()
    pretrain: PretrainCfg
    methods: MethodsCfg
    extract: ExtractCfg = ExtractCfg()
    probe: ProbeCfg = ProbeCfg()

    def known_datasets(self) -> list[str]:
        return list(BUILTIN_DATASETS) + list(self.datasets)

    def data_root_path(self) -> Path:
        """The data root: VSSL_DATA_ROOT if set, else ``data_root`` from params.yaml."""
        return Path(os.environ.get("VSSL_DATA_ROOT") or self.data_root).expanduser()

    def tracking_uri(self) -> str:
        """``MLFLOW_TRACKING_URI`` if set (taken as given), else ``mlflow.tracking_uri`` with a
        relative SQLite path resolved against the params file's folder (the repository root), so
        ``sqlite:///mlflow.db`` is one store wherever a command runs."""
        env = os.environ.get("MLFLOW_TRACKING_URI")
        if env:
            return env
        return resolve_sqlite_uri(self.mlflow.tracking_uri, self._base_dir)

    def with_base_dir(self, folder: str | Path | None) -> Params:
        """Set (in place) the folder relative paths of these params resolve against (the params
        file's folder; :func:`load_params` sets it) and return ``self``."""
        self._base_dir = Path(os.path.abspath(folder)) if folder is not None else None
        return self

    @property
    def base_dir(self) -> Path | None:
        """The params file's folder (None for params not loaded from a file)."""
        return self._base_dir

    def epochs_for(self, dataset: str) -> int:
        return self.pretrain.epochs_by_dataset.get(dataset, self.pretrain.epochs)

    def entry_method(self, name: str) -> str:
        """The registry method a grid entry trains: ``name`` itself, or its variant's method."""
        if name in KNOWN_METHODS:
            return name
        if name in self.variants:
            return self.variants[name].method
        variants = f"; variants: {', '.join(self.variants)}" if self.variants else ""
        raise ConfigError(
            f"unknown method {name!r}; known: {', '.join(KNOWN_METHODS)}{variants} "
            "(declare a variant under `variants:` in params.yaml)"
        )

    def for_entry(self, name: str) -> Params:
        """These params with grid entry ``name``'s variant overrides applied (``self`` for a
        plain method). The CLI resolves the same through ``load_params(..., entry=name)``, which
        applies ``--set`` overrides after the variant's."""
        self.entry_method(name)
        if name not in self.variants:
            return self
        out = _validate(apply_variant(self.to_dict(), name), f"variant {name!r}")
        return out.with_base_dir(self._base_dir)

    def method_cfg(self, method: str) -> dict[str, Any]:
        """The method's hyperparameters as a plain dict (without its optimizer block)."""
        if method not in KNOWN_METHODS:
            raise ConfigError(f"unknown method {method!r}; known: {', '.join(KNOWN_METHODS)}")
        cfg = getattr(self.methods, method).model_dump()
        cfg.pop("optimizer", None)
        return cfg

    def optimizer_cfg(self, method: str) -> dict[str, Any]:
        """pretrain's optimiser keys plus the method's own ``base_lr`` and ``weight_decay`` (and
        its ``grad_clip_norm`` where it sets one)."""
        cfg = self.pretrain.model_dump()
        over = getattr(self.methods, method).optimizer.model_dump()
        cfg.update({k: v for k, v in over.items() if v is not None})
        return cfg

    def shadowed_clip(self, method: str) -> str | None:
        """A message when ``pretrain.grad_clip_norm`` is set but ``method``'s own optimizer block
        sets another value, which wins (a sweep over ``pretrain.grad_clip_norm`` would otherwise
        leave e.g. VSSL's default clip of 1.0 in place without a word); None otherwise."""
        general = self.pretrain.grad_clip_norm
        own = getattr(self.methods, method).optimizer.grad_clip_norm
        if general is None or own is None or own == general:
            return None
        return (
            f"pretrain.grad_clip_norm={general} does not apply to {method}: its own "
            f"methods.{method}.optimizer.grad_clip_norm={own} wins (set that key instead, or "
            "null to use pretrain's)"
        )

    def check_dataset(self, name: str) -> None:
        if name not in self.known_datasets():
            raise ConfigError(
                f"unknown dataset {name!r}; known: {', '.join(self.known_datasets())} "
                "(declare an .npz dataset under `datasets:` in params.yaml)"
            )

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def resolve_sqlite_uri(uri: str, base_dir: str | Path | None) -> str:
    """``sqlite:///<relative path>`` -> ``sqlite:///<base_dir>/<path>``; any other URI (an
    absolute SQLite path, ``sqlite://`` in memory, http, file...) and ``base_dir=None`` unchanged."""
    prefix = "sqlite:///"
    if base_dir is None or not uri.startswith(prefix):
        return uri
    rel = uri[len(prefix) :]
    if not rel or rel.startswith("/") or rel.startswith(":memory:") or Path(rel).is_absolute():
        return uri
    return prefix + os.path.normpath(Path(base_dir) / rel)


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}, "c": [1, 2]} -> {"a.b": 1, "c": [1, 2]}`` (lists stay whole)."""
    out: dict[str, Any] = {}
    for k, v in tree.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Recursively merge ``over`` into a copy of ``base`` (dicts merge, everything else replaces)."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"pretrain.epochs=5"`` -> (["pretrain", "epochs"], 5); the value is parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key.sub=value")
    key, raw = text.split("=", 1)
    parts = key.strip().split(".")
    if parts == [""]:
        raise ConfigError(f"override {text!r} has an empty key")
    if "" in parts:
        raise ConfigError(f"override {text!r}: the key {key.strip()!r} has an empty part")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as e:
        raise ConfigError(f"override {text!r}: value is not valid YAML ({e})") from e
    return parts, value


def _set_path(tree: dict[str, Any], parts: list[str], value: Any, what: str) -> None:
    """``tree[parts[0]][parts[1]]... = value`` in place; every key must already exist."""
    node = tree
    for i, p in enumerate(parts):
        if not isinstance(node, dict) or p not in node:
            where = ".".join(parts[:i]) or "<top level>"
            choices = list(node) if isinstance(node, dict) else []
            hint = difflib.get_close_matches(p, choices, n=1)
            extra = f"; did you mean {hint[0]!r}?" if hint else ""
            raise ConfigError(f"{what}: no key {p!r} under {where}{extra}")
        if i == len(parts) - 1:
            node[p] = copy.deepcopy(value)
        else:
            node = node[p]


def apply_overrides(tree: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key.sub=value`` overrides; a key that does not exist is an error (typo guard)."""
    tree = copy.deepcopy(tree)
    for text in overrides:
        parts, value = parse_override(text)
        _set_path(tree, parts, value, f"override {text!r}")
    return tree


def apply_variant(tree: dict[str, Any], name: str) -> dict[str, Any]:
    """The resolved tree with variant ``name``'s ``set`` applied (checked: known sections only,
    existing keys only). A plain method name returns the tree unchanged."""
    variants = tree.get("variants") or {}
    if name in KNOWN_METHODS or not isinstance(variants, dict) or name not in variants:
        return tree
    spec = variants[name] if isinstance(variants[name], dict) else {}
    method = spec.get("method")
    tree = copy.deepcopy(tree)
    for key, value in (spec.get("set") or {}).items():
        parts = [p for p in str(key).split(".") if p]
        what = f"variants.{name}.set: {key!r}"
        allowed = parts and parts[0] in VARIANT_SECTIONS
        if allowed and parts[0] == "methods":
            allowed = len(parts) > 2 and parts[1] == method
        if not allowed:
            raise ConfigError(
                f"{what}: a variant may only set keys under methods.{method}, pretrain or backbone"
            )
        _set_path(tree, parts, value, what)
    return tree


def _format_validation_error(e: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid configuration"]
    for err in e.errors():
        loc = ".".join(str(x) for x in err["loc"])
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        lines.append(f"  {loc}: {msg}")
    return "\n".join(lines)


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (plain YAML keeps the last
    silently: two `profile:` lines would run whichever comes second)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *anchor`: its keys may be overridden, as YAML means
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise _DuplicateKeyError(
                    f"the key {key!r} is given twice (lines {seen[key]} and {line})"
                )
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


class _DuplicateKeyError(Exception):
    pass


def load_raw(path: str | Path) -> dict[str, Any]:
    """Read params.yaml as a dict, with clear errors for a missing or malformed file."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"params file {path} is a folder; pass the YAML file itself")
    if not path.is_file():
        raise ConfigError(f"params file not found: {path}")
    try:
        tree = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)
    except _DuplicateKeyError as e:
        raise ConfigError(f"{path}: {e}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not a UTF-8 text file ({e})") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from e
    if not isinstance(tree, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(tree).__name__}")
    return tree


def resolve(
    tree: dict[str, Any],
    profile: str | None = None,
    overrides: list[str] | None = None,
    source: str = "params.yaml",
    entry: str | None = None,
) -> Params:
    """Apply the profile, then grid entry ``entry``'s variant overrides (if it names a variant),
    then the ``--set`` overrides to a raw params tree, and validate the result.

    Every variant is checked here (its method, and that its overrides apply and validate), so a
    typo in any of them fails before anything runs, whichever entry a job trains."""
    tree = copy.deepcopy(tree)
    profiles = tree.pop("profiles", {}) or {}
    if not isinstance(profiles, dict):
        raise ConfigError(f"{source}: `profiles` must be a mapping of name -> overrides")
    # `--set profile=NAME` must pick the profile before the profile is applied.
    prof_over = [o for o in overrides or [] if o.split("=", 1)[0].strip() == "profile"]
    rest = [o for o in overrides or [] if o not in prof_over]
    if prof_over:
        profile = parse_override(prof_over[-1])[1]
    profile = profile or tree.get("profile")
    if profile is None:
        raise ConfigError(f"{source}: no `profile:` key and none given")
    if profile not in profiles:
        known = ", ".join(profiles) or "none"
        raise ConfigError(f"{source}: unknown profile {profile!r}; known: {known}")
    prof = profiles[profile] or {}
    if not isinstance(prof, dict):
        raise ConfigError(f"{source}: profiles.{profile} must be a mapping")
    tree = deep_merge(tree, prof)
    tree["profile"] = profile
    plain = apply_overrides(tree, rest)
    # A bad value may come from the command line rather than the file: name both, so the user
    # does not search the file for a value it does not hold.
    if rest:
        source = f"{source} with --set overrides"
    params = _validate(plain, source)
    _check_method_optimizers(params, source)
    for ds in params.grid.datasets:
        try:
            params.check_dataset(ds)
        except ConfigError as e:
            raise ConfigError(f"{source}: grid.datasets: {e}") from None
    for name in params.variants:
        if name in KNOWN_METHODS:
            raise ConfigError(f"{source}: variants.{name}: a variant cannot take a method's name")
        try:
            _validate(apply_overrides(apply_variant(tree, name), rest), source)
        except ConfigError as e:
            raise ConfigError(f"{source}: variants.{name}: {e}") from None
    for m in params.grid.methods:
        try:
            params.entry_method(m)
        except ConfigError as e:
            raise ConfigError(f"{source}: grid.methods: {e}") from None
    if entry is None:
        return params
    params.entry_method(entry)  # ConfigError for an unknown name
    return _validate(apply_overrides(apply_variant(tree, entry), rest), source)


def _check_method_optimizers(params: Params, source: str) -> None:
    """Every trained method sets its ``base_lr`` and ``weight_decay``; ``random`` (never
    trained) sets no optimiser value, which would have no effect."""
    for method in KNOWN_METHODS:
        opt = getattr(params.methods, method).optimizer
        where = f"{source}: methods.{method}.optimizer"
        if method == "random":
            set_ = [k for k, v in opt.model_dump().items() if v is not None]
            if set_:
                raise ConfigError(f"{where}.{set_[0]}: `random` is never trained; remove it")
            continue
        for key in ("base_lr", "weight_decay"):
            if getattr(opt, key) is None:
                raise ConfigError(f"{where}.{key}: required (each method sets its own)")


def _validate(tree: dict[str, Any], source: str) -> Params:
    try:
        return Params.model_validate(tree)
    except ValidationError as e:
        raise ConfigError(_format_validation_error(e, source)) from None


def validate_tree(tree: dict[str, Any], source: str) -> Params:
    """Validate a resolved params tree (no profile or override step); a ``ConfigError`` headed
    ``source`` with one line per offending key otherwise (never pydantic's own dump)."""
    return _validate(tree, source)


def load_params(
    path: str | Path = "params.yaml",
    profile: str | None = None,
    overrides: list[str] | None = None,
    entry: str | None = None,
) -> Params:
    """Load, resolve and validate params.yaml. Raises ConfigError with the offending key.

    ``entry``: a grid entry (method or variant name) whose variant overrides to apply, between
    the profile and ``overrides``. Relative paths the params hold that are not data paths (the
    SQLite tracking store) resolve against the file's folder (:meth:`Params.tracking_uri`)."""
    params = resolve(
        load_raw(path), profile=profile, overrides=overrides, source=str(path), entry=entry
    )
    return params.with_base_dir(Path(path).parent)


def check_grid_matches_file(path: str | Path, params: Params) -> None:
    """DVC's matrix stages read the file's top-level `grid`; a profile that sets its own grid
    must therefore be mirrored there, or DVC would run a different grid than the profile says."""
    raw = load_raw(path)
    file_grid = raw.get("grid")
    if file_grid != params.grid.model_dump():
        sets = " ".join(
            f"-S 'grid.{k}=[{','.join(map(str, v))}]'" for k, v in params.grid.model_dump().items()
        )
        raise ConfigError(
            f"profile {params.profile!r} sets its own grid {params.grid.model_dump()}, but "
            f"dvc.yaml's matrix reads the top-level `grid:` of {path} ({file_grid}). "
            f"Run with: dvc exp run -S profile={params.profile} {sets}"
        )

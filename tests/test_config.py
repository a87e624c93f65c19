"""params.yaml: profiles, overrides, validation messages that name the key, DVC grid mirroring."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from vssl.cli import main
from vssl.config import (
    KNOWN_METHODS,
    ConfigError,
    check_grid_matches_file,
    deep_merge,
    load_params,
    load_raw,
    parse_override,
    resolve,
)

ROOT = Path(__file__).resolve().parents[1]
PARAMS = ROOT / "params.yaml"


def _write(tmp_path: Path, tree: dict) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(tree, sort_keys=False))
    return path


@pytest.mark.parametrize("profile", sorted(yaml.safe_load(PARAMS.read_text())["profiles"]))
def test_every_shipped_profile_validates(profile: str) -> None:
    p = load_params(PARAMS, profile=profile)
    assert p.profile == profile
    assert {p.entry_method(m) for m in p.grid.methods} <= set(KNOWN_METHODS)


def test_default_profile_is_quick_with_the_issue_grid() -> None:
    p = load_params(PARAMS)
    assert p.profile == "quick"
    # cifar10-mini: the untrained floor is far weaker there than on Fashion-MNIST (issue 10)
    assert p.grid.datasets == ["cifar10_mini"]
    assert p.grid.methods == ["vssl", "byol", "random"]
    assert p.backbone.name == "resnet18" and p.backbone.width < 64  # reduced width on CPU


def test_profile_values_override_the_base() -> None:
    base = load_raw(PARAMS)
    smoke = load_params(PARAMS, profile="smoke")
    assert smoke.pretrain.epochs == base["profiles"]["smoke"]["pretrain"]["epochs"]
    assert smoke.backbone.width == base["profiles"]["smoke"]["backbone"]["width"]
    # Untouched keys keep the base value.
    assert smoke.pretrain.lars_eta == base["pretrain"]["lars_eta"]
    assert smoke.methods.vssl.likelihood == base["methods"]["vssl"]["likelihood"]


def test_paper_profile_sets_its_own_grid_and_epochs() -> None:
    p = load_params(PARAMS, profile="paper")
    assert p.grid.datasets == ["cifar10", "cifar100", "imagenet100"]
    assert p.grid.methods == ["vssl", "byol", "mocov3", "simclr", "barlow_twins"]
    assert p.grid.seeds == [0, 1, 2]
    assert p.epochs_for("cifar10") == 1000 and p.epochs_for("imagenet100") == 400


def test_overrides_apply_after_the_profile_and_parse_yaml() -> None:
    p = load_params(PARAMS, profile="smoke", overrides=["pretrain.epochs=3", "grid.seeds=[0, 1]"])
    assert p.pretrain.epochs == 3 and p.grid.seeds == [0, 1]
    # `--set profile=NAME` selects the profile before it is applied.
    assert load_params(PARAMS, overrides=["profile=smoke"]).backbone.width == 4
    assert parse_override("a.b=[1, 2]") == (["a", "b"], [1, 2])
    assert parse_override("a=") == (["a"], None)


def test_a_bare_no_is_accelerates_no_mixed_precision() -> None:
    # YAML reads `no` as false; the field means the string Accelerate takes
    p = load_params(PARAMS, profile="smoke", overrides=["pretrain.mixed_precision=no"])
    assert p.pretrain.mixed_precision == "no"
    with pytest.raises(ConfigError, match="pretrain.mixed_precision"):
        load_params(PARAMS, profile="smoke", overrides=["pretrain.mixed_precision=yes"])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("pretrain.epoch=3", "no key 'epoch' under pretrain; did you mean 'epochs'?"),
        ("pretrain", "must look like key.sub=value"),
        ("=3", "empty key"),
        ("pretrain.=3", "the key 'pretrain.' has an empty part"),
        ("pretrain..epochs=3", "the key 'pretrain..epochs' has an empty part"),
        ("pretrain.epochs=[1", "not valid YAML"),
        ("pretrain.epochs=-1", "pretrain.epochs: Input should be greater than or equal to 0"),
        # Settings that used to pass validation and fail only after the work had started:
        ("probe.knn.k=[20, 0]", "probe.knn.k.1: Input should be greater than 0"),
        ("probe.linear.weight_decays=[-1]", "probe.linear.weight_decays.0: Input should be"),
        ("grid.seeds=[0, -1]", "grid.seeds.1: Input should be greater than or equal to 0"),
        ("methods.vssl.logvar_min=5", "logvar_min (5.0) must be below logvar_max (4.0)"),
        ("data.num_workers=-1", "data.num_workers: Value error, must be a whole number >= 0 or"),
        ("data.num_workers=many", "must be a whole number >= 0 or 'auto', got 'many'"),
    ],
)
def test_bad_overrides_name_the_key(override: str, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_params(PARAMS, profile="smoke", overrides=[override])
    assert message in str(e.value)


def test_auto_workers_share_this_process_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    """`data.num_workers: auto` (the paper profile's): the cores this process may use, divided
    among the processes on its machine, one left for the main process; a number is kept."""
    import os

    p = load_params(PARAMS, profile="paper")
    assert p.data.num_workers == "auto"
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert p.data.workers() == 15
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert p.data.workers() == 3
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    assert p.data.workers() == 0
    assert (
        load_params(PARAMS, profile="paper", overrides=["data.num_workers=3"]).data.workers() == 3
    )


def test_unknown_profile_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="unknown profile 'fast'; known: smoke, quick"):
        load_params(PARAMS, profile="fast")


def test_unknown_and_bad_keys_in_the_file_are_named(tmp_path: Path) -> None:
    tree = load_raw(PARAMS)
    tree["pretrain"]["epoch"] = 5  # typo: an unknown key
    tree["extract"]["batch_size"] = 0
    tree["profiles"]["smoke"]["methods"]["vssl"]["likelihood"] = "laplace"
    path = _write(tmp_path, tree)
    with pytest.raises(ConfigError) as e:
        load_params(path, profile="smoke")
    msg = str(e.value)
    assert "pretrain.epoch: unknown key" in msg
    assert "extract.batch_size: Input should be greater than 0" in msg
    assert "methods.vssl.likelihood" in msg and "'gaussian' or 'cosine'" in msg


def test_unknown_method_and_dataset_in_the_grid(tmp_path: Path) -> None:
    tree = load_raw(PARAMS)
    tree["grid"]["methods"] = ["vssl", "swav"]
    with pytest.raises(ConfigError, match="unknown method 'swav'; known: vssl, byol"):
        load_params(_write(tmp_path, tree))
    tree = load_raw(PARAMS)
    tree["grid"]["datasets"] = ["mnist"]
    with pytest.raises(ConfigError, match="grid.datasets: unknown dataset 'mnist'; known: cifar10"):
        load_params(_write(tmp_path, tree))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a: [1", "not valid YAML"),
        ("- 1\n- 2\n", "top level must be a mapping"),
        ("profile: quick\nprofile: smoke\n", r"the key 'profile' is given twice \(lines 1 and 2\)"),
        (
            "pretrain:\n  epochs: 1\n  epochs: 2\n",
            r"the key 'epochs' is given twice \(lines 2 and 3\)",
        ),
    ],
)
def test_malformed_files(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "params.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_raw(path)
    with pytest.raises(ConfigError, match="params file not found"):
        load_raw(tmp_path / "missing.yaml")


def test_unreadable_params_files(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_bytes(b"\x00\xff")
    with pytest.raises(ConfigError, match="not a UTF-8 text file"):
        load_raw(path)
    with pytest.raises(ConfigError, match="is a folder; pass the YAML file itself"):
        load_raw(tmp_path)
    # Anchors and merge keys still work; a key a merge brings in may be overridden.
    path.write_text("base: &b {x: 1, y: 2}\nother:\n  <<: *b\n  y: 3\n")
    assert load_raw(path)["other"] == {"x": 1, "y": 3}


def test_method_and_optimizer_cfg() -> None:
    p = load_params(PARAMS, profile="smoke")
    cfg = p.method_cfg("vssl")
    assert "optimizer" not in cfg and cfg["latent_dim"] == 32
    opt = p.optimizer_cfg("mocov3")
    assert opt["base_lr"] == 0.3 and opt["weight_decay"] == 1.0e-6  # the method's own block
    assert opt["batch_size"] == p.pretrain.batch_size  # the rest from pretrain
    with pytest.raises(ConfigError, match="unknown method 'dino'; known:"):
        p.method_cfg("dino")


def test_environment_overrides_data_root_and_tracking(monkeypatch: pytest.MonkeyPatch) -> None:
    p = load_params(PARAMS, profile="smoke")
    monkeypatch.delenv("VSSL_DATA_ROOT", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert p.data_root_path() == Path("../shared/data")
    # params.yaml's relative SQLite path is relative to the params file, not the working dir.
    assert p.tracking_uri() == f"sqlite:///{ROOT / 'mlflow.db'}"
    monkeypatch.setenv("VSSL_DATA_ROOT", "/elsewhere")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////tmp/x.db")
    assert p.data_root_path() == Path("/elsewhere")
    assert p.tracking_uri() == "sqlite:////tmp/x.db"


def test_deep_merge_does_not_mutate() -> None:
    base = {"a": {"b": 1, "c": [1]}, "d": 2}
    out = deep_merge(base, {"a": {"b": 5}, "e": 3})
    assert out == {"a": {"b": 5, "c": [1]}, "d": 2, "e": 3}
    assert base == {"a": {"b": 1, "c": [1]}, "d": 2}


def test_dvc_grid_check_prints_the_flags(tmp_path: Path) -> None:
    check_grid_matches_file(PARAMS, load_params(PARAMS, profile="quick"))
    check_grid_matches_file(PARAMS, load_params(PARAMS, profile="smoke"))
    with pytest.raises(ConfigError) as e:
        check_grid_matches_file(PARAMS, load_params(PARAMS, profile="paper"))
    msg = str(e.value)
    assert "dvc exp run -S profile=paper" in msg
    assert "-S 'grid.datasets=[cifar10,cifar100,imagenet100]'" in msg
    assert "-S 'grid.seeds=[0,1,2]'" in msg
    # With the grid mirrored as those flags would, the check passes.
    tree = load_raw(PARAMS)
    tree["profile"] = "paper"
    tree["grid"] = tree["profiles"]["paper"]["grid"]
    path = _write(tmp_path, tree)
    check_grid_matches_file(path, load_params(path))


def test_a_method_clip_that_shadows_pretrains_is_reported(capsys: pytest.CaptureFixture) -> None:
    # VSSL's own block sets grad_clip_norm: 1.0, which wins over pretrain's: a sweep over
    # pretrain.grad_clip_norm must say so instead of leaving VSSL at 1.0 silently.
    p = load_params(PARAMS, profile="smoke", overrides=["pretrain.grad_clip_norm=5"])
    msg = p.shadowed_clip("vssl")
    assert msg is not None and "methods.vssl.optimizer.grad_clip_norm=1.0 wins" in msg
    assert p.optimizer_cfg("vssl")["grad_clip_norm"] == 1.0
    assert p.shadowed_clip("byol") is None and p.optimizer_cfg("byol")["grad_clip_norm"] == 5.0
    assert p.shadowed_clip("random") is None
    assert load_params(PARAMS, profile="smoke").shadowed_clip("vssl") is None
    same = ["pretrain.grad_clip_norm=1.0"]
    assert load_params(PARAMS, profile="smoke", overrides=same).shadowed_clip("vssl") is None
    args = ["validate", "--params", str(PARAMS), "--profile", "smoke", "-q"]
    assert main([*args, "--set", "pretrain.grad_clip_norm=5"]) == 0
    err = capsys.readouterr().err
    assert "warning: grid entry vssl: pretrain.grad_clip_norm=5.0 does not apply to vssl" in err
    assert "grid entry byol" not in err
    assert main(args) == 0 and capsys.readouterr().err == ""


def test_validate_command(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["validate", "--params", str(PARAMS), "--profile", "smoke", "-q"]) == 0
    assert capsys.readouterr().out == ""
    assert main(["validate", "--params", str(PARAMS), "--profile", "smoke"]) == 0
    resolved = yaml.safe_load(capsys.readouterr().out)
    assert resolved["profile"] == "smoke" and "profiles" not in resolved
    assert main(["validate", "--params", str(PARAMS), "--profile", "paper", "--dvc", "-q"]) == 2
    assert "dvc exp run -S profile=paper" in capsys.readouterr().err
    assert main(["validate", "--params", str(PARAMS), "--set", "pretrain.epoch=1"]) == 2
    assert "did you mean 'epochs'" in capsys.readouterr().err


def _int_fields(model: type, tree: dict, prefix: str = "") -> list[tuple[str, str]]:
    """(dotted path, kind) of every numeric (int or float) field of the schema: kind is "int",
    "list" or "dict" (a container of numbers). Models inside dicts are visited through ``tree``'s keys."""
    import typing

    from pydantic import BaseModel

    def mentions_int(ann: object) -> bool:
        if ann is int or ann is float:
            return True
        return any(mentions_int(a) for a in typing.get_args(ann) if a is not bool)

    found: list[tuple[str, str]] = []
    for name, f in model.model_fields.items():
        ann, path = f.annotation, f"{prefix}{name}"
        origin, args = typing.get_origin(ann), typing.get_args(ann)
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            found += _int_fields(ann, tree.get(name) or {}, path + ".")
        elif origin is dict and isinstance(args[1], type) and issubclass(args[1], BaseModel):
            for key in tree.get(name) or {}:
                found += _int_fields(args[1], tree[name][key], f"{path}.{key}.")
        elif origin is dict and mentions_int(args[1]):
            found.append((path, "dict"))
        elif origin is list and mentions_int(args[0]):
            found.append((path, "list"))
        elif mentions_int(ann):
            found.append((path, "int"))
    return found


def test_numeric_fields_reject_booleans() -> None:
    """pydantic's lax mode reads `true` as 1: `pretrain.epochs: true` trained one epoch and
    `methods.vssl.optimizer.base_lr: true` gave lr 1.0."""
    from vssl.config import Params

    tree = load_params(PARAMS, profile="smoke").to_dict()
    fields = _int_fields(Params, tree)
    paths = {p for p, _ in fields}
    assert {"grid.seeds", "pretrain.epochs", "pretrain.batch_size", "extract.batch_size"} <= paths
    assert {"pretrain.epochs_by_dataset", "probe.knn.k", "datasets.cifar10_mini.test_size"} <= paths
    assert {"pretrain.momentum", "methods.vssl.beta", "probe.linear.weight_decays"} <= paths
    raw = load_raw(PARAMS)

    def in_file(path: str) -> bool:  # overrides may only set keys the file (or a profile) has
        node: object = raw
        for part in path.split("."):
            if not isinstance(node, dict) or part not in node:
                return False
            node = node[part]
        return True

    for path, kind in fields:
        if not in_file(path):
            continue
        value = {"int": "true", "list": "[1, true]", "dict": "{cifar10: true}"}[kind]
        with pytest.raises(ConfigError, match=rf"{re.escape(path)}.*boolean"):
            load_params(PARAMS, profile="smoke", overrides=[f"{path}={value}"])
    # The same in the file itself, and integers (and false for bool fields) still pass.
    with pytest.raises(ConfigError, match=r"pretrain.epochs: .*not a boolean"):
        load_params(PARAMS, profile="smoke", overrides=["pretrain.epochs=false"])
    p = load_params(PARAMS, profile="smoke", overrides=["pretrain.epochs=3", "grid.seeds=[0, 4]"])
    assert p.pretrain.epochs == 3 and p.grid.seeds == [0, 4]
    assert load_params(PARAMS, overrides=["methods.vssl.sample=false"]).methods.vssl.sample is False


def test_relative_sqlite_uri_resolves_against_the_params_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "params.yaml").write_text(PARAMS.read_text())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    p = load_params("../repo/params.yaml", profile="smoke")
    assert p.tracking_uri() == f"sqlite:///{repo / 'mlflow.db'}"
    sub = load_params(
        repo / "params.yaml", profile="smoke", overrides=["mlflow.tracking_uri=sqlite:///t/m.db"]
    )
    assert sub.tracking_uri() == f"sqlite:///{repo / 't' / 'm.db'}"
    # Variant params and copies keep the params file's folder.
    assert p.for_entry("vssl_nokl").tracking_uri() == p.tracking_uri()
    assert load_params(repo / "params.yaml", entry="vssl_nokl").tracking_uri() == p.tracking_uri()
    # Absolute paths, other schemes and the environment are taken as given.
    for uri in ("sqlite:////abs/x.db", "http://mlflow:5000", "file:./mlruns"):
        q = load_params(repo / "params.yaml", overrides=[f"mlflow.tracking_uri={uri}"])
        assert q.tracking_uri() == uri
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///relative.db")
    assert p.tracking_uri() == "sqlite:///relative.db"
    # The resolved config (logged to MLflow, stored in checkpoints) keeps the file's value.
    assert p.to_dict()["mlflow"]["tracking_uri"] == "sqlite:///mlflow.db"


def test_every_optimiser_value_takes_effect_or_is_refused() -> None:
    # base_lr and weight_decay live in each method's block only: pretrain has none to shadow.
    with pytest.raises(ConfigError, match="no key 'base_lr' under pretrain"):
        load_params(PARAMS, overrides=["pretrain.base_lr=0.5"])
    tree = load_raw(PARAMS)
    del tree["methods"]["byol"]["optimizer"]["weight_decay"]
    with pytest.raises(ConfigError, match=r"methods.byol.optimizer.weight_decay: required"):
        resolve(tree, profile="smoke")
    tree = load_raw(PARAMS)
    tree["methods"]["random"] = {"optimizer": {"base_lr": 0.1}}
    with pytest.raises(ConfigError, match=r"methods.random.optimizer.base_lr: `random` is never"):
        resolve(tree, profile="smoke")
    p = load_params(PARAMS, overrides=["methods.byol.optimizer.base_lr=0.2"])
    assert p.optimizer_cfg("byol")["base_lr"] == 0.2 and p.optimizer_cfg("vssl")["base_lr"] == 1.0
    # grad_clip_norm: pretrain's for every method, unless the method sets its own
    p = load_params(PARAMS, overrides=["pretrain.grad_clip_norm=5.0"])
    assert p.optimizer_cfg("byol")["grad_clip_norm"] == 5.0
    assert p.optimizer_cfg("vssl")["grad_clip_norm"] == 1.0


def test_a_bad_override_is_blamed_on_the_overrides_not_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """`params.yaml: invalid configuration` sent the user to a file that does not hold the
    value; the key lines stay as they were."""
    with pytest.raises(ConfigError) as e:
        load_params(PARAMS, profile="smoke", overrides=["pretrain.epochs=ten"])
    head, *keys = str(e.value).splitlines()
    assert head == f"{PARAMS} with --set overrides: invalid configuration"
    assert keys == ["  pretrain.epochs: Input should be a valid integer, unable to parse string as an integer"]  # fmt: skip
    with pytest.raises(ConfigError, match=r"with --set overrides: methods\.vssl\.optimizer\.base"):
        load_params(PARAMS, profile="smoke", overrides=["methods.vssl.optimizer.base_lr=null"])
    # A bad value in the file itself is still the file's, with or without `--set profile=`.
    tree = load_raw(PARAMS)
    tree["profiles"]["smoke"]["pretrain"]["epochs"] = "ten"
    path = _write(tmp_path, tree)
    for overrides in ([], ["profile=smoke"]):
        with pytest.raises(ConfigError) as e:
            load_params(path, profile="smoke", overrides=overrides)
        assert str(e.value).startswith(f"{path}: invalid configuration\n  pretrain.epochs: ")
    args = ["validate", "--params", str(PARAMS), "--profile", "smoke"]
    assert main([*args, "--set", "pretrain.epochs=ten"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"vssl validate: error: {PARAMS} with --set overrides: invalid conf")

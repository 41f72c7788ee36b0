"""A run parameter's default, bounds and choices live in the dataclass that defines it: the CLI
options, the rules' parameter forms (and, in tests/app/test_params_pages.py, the pages'
widgets) read them from there, so they cannot drift apart."""

from __future__ import annotations

import click
import pytest
import typer

from workbench.cli import app
from workbench.clusters import ClusterParams
from workbench.detection import DetectParams
from workbench.errors import ValidationError
from workbench.evaluation import Gate
from workbench.export import ExportOptions
from workbench.params import check_bounds, spec, specs
from workbench.rules import RULES
from workbench.taxonomies import TaxonomyParams
from workbench.training import TrainParams

OWNERS = (TrainParams, ExportOptions, DetectParams, Gate, TaxonomyParams, ClusterParams)

# command path → {option name: (owner, field)}
CLI = {
    ("train",): {
        "epochs": (TrainParams, "epochs"), "imgsz": (TrainParams, "imgsz"),
        "batch": (TrainParams, "batch"), "patience": (TrainParams, "patience"),
        "device": (TrainParams, "device"), "unreviewed": (ExportOptions, "unreviewed"),
        "fill_threshold": (ExportOptions, "fill_threshold"),
        "val": (ExportOptions, "val_fraction"), "holdout": (ExportOptions, "holdout_fraction"),
        "seed": (ExportOptions, "seed"), "pseudo_label": (ExportOptions, "pseudo_label")},
    ("export",): {
        "unreviewed": (ExportOptions, "unreviewed"),
        "fill_threshold": (ExportOptions, "fill_threshold"),
        "val": (ExportOptions, "val_fraction"), "holdout": (ExportOptions, "holdout_fraction"),
        "seed": (ExportOptions, "seed"), "pseudo_label": (ExportOptions, "pseudo_label")},
    ("evaluate",): {"min_gain": (Gate, "min_map50_95_gain"),
                    "max_class_drop": (Gate, "max_class_drop")},
    ("taxonomy", "create"): {
        "kind": (TaxonomyParams, "kind"), "threshold": (TaxonomyParams, "threshold"),
        "top_k": (TaxonomyParams, "top_k"), "mode": (TaxonomyParams, "mode")},
    ("cluster", "run"): {
        "algorithm": (ClusterParams, "algorithm"), "reduce_with": (ClusterParams, "reduce"),
        "components": (ClusterParams, "components"),
        "projection": (ClusterParams, "projection")},
}
# detect's options default to None on purpose: the version's own defaults (the size it was
# trained at) apply unless one is given; their help still comes from DetectParams.
CLI_VERSION_DEFAULTS = {("detect",): {"conf": (DetectParams, "conf"),
                                      "imgsz": (DetectParams, "imgsz"),
                                      "batch_size": (DetectParams, "batch_size")}}


def _options(path: tuple[str, ...]) -> dict[str, click.Parameter]:
    command = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]
    return {p.name: p for p in command.params if p.param_type_name == "option"}


@pytest.mark.parametrize("path", list(CLI), ids=" ".join)
def test_cli_options_default_to_the_dataclass(path):
    options = _options(path)
    for name, (owner, field) in CLI[path].items():
        s = spec(owner, field)
        assert options[name].default == s.default, (path, name)
        if s.choices or s.min is not None or s.max is not None:
            assert s.bounds_text() in options[name].help, (path, name, options[name].help)


def test_detect_options_leave_the_default_to_the_version_but_document_the_bounds():
    options = _options(("detect",))
    for name, (owner, field) in CLI_VERSION_DEFAULTS[("detect",)].items():
        assert options[name].default is None
        assert spec(owner, field).bounds_text() in options[name].help


def test_rule_parameters_are_the_dataclasses():
    sources = {**specs(TrainParams), **specs(ExportOptions), **specs(Gate)}
    for rule in ("retrain_on_corrections", "evaluate_on_batch"):
        for name, param in RULES[rule].params.items():
            if name not in sources:
                continue  # the rule's own (threshold, promote)
            s = sources[name]
            assert (param.kind, param.default, param.choices, param.optional, param.min,
                    param.max) == (s.kind, s.default, s.choices, s.optional, s.min, s.max), name
    assert {"epochs", "unreviewed", "min_map50_95_gain"} <= set(
        RULES["retrain_on_corrections"].params)


@pytest.mark.parametrize("owner", OWNERS, ids=lambda o: o.__name__)
def test_defaults_pass_their_own_checks_and_every_bound_is_enforced(owner):
    owner()  # the defaults are valid
    for name, s in specs(owner).items():
        if s.choices:
            with pytest.raises(ValidationError, match=f"{name} must be"):
                owner(**{name: "not-a-choice"})
        if s.min is not None:
            below = s.min - (1 if s.kind is int else 0.5)
            with pytest.raises(ValidationError, match=f"{name} must be"):
                owner(**{name: s.kind(below)})
        if s.max is not None:
            above = s.max + (1 if s.kind is int else 0.5)
            with pytest.raises(ValidationError, match=f"{name} must be"):
                owner(**{name: s.kind(above)})
        if s.kind in (int, float):
            with pytest.raises(ValidationError, match=f"{name} must be a"):
                owner(**{name: True})


def test_a_whole_number_parameter_refuses_a_fraction_and_a_nan():
    with pytest.raises(ValidationError, match="epochs must be a whole number, got 2.5"):
        TrainParams(epochs=2.5)
    with pytest.raises(ValidationError, match="conf must be a finite number, got nan"):
        DetectParams(conf=float("nan"))
    check_bounds(TrainParams(epochs=3))  # and a valid one passes

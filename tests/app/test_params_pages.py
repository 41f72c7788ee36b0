"""The pages' run-parameter widgets show the default, bounds and choices of the dataclass that
defines each parameter (the CLI and the rules are checked in tests/test_params.py)."""

from __future__ import annotations

from tests.app.conftest import populate, run_page
from workbench.clusters import ClusterParams
from workbench.detection import DetectParams
from workbench.evaluation import Gate
from workbench.export import ExportOptions
from workbench.params import spec
from workbench.rules import RULES
from workbench.taxonomies import TaxonomyParams
from workbench.training import TrainParams

# page → [(widget kind, key, owner, field, expected value or None for the dataclass default)]
WIDGETS = {
    "pages/5_Train.py": [
        ("number_input", "train_epochs", TrainParams, "epochs", None),
        ("number_input", "train_batch", TrainParams, "batch", None),
        ("number_input", "train_patience", TrainParams, "patience", None),
        ("number_input", "train_imgsz", TrainParams, "imgsz", 320),  # the parent's size
        ("slider", "export_threshold", ExportOptions, "fill_threshold", None),
        ("slider", "export_val", ExportOptions, "val_fraction", None),
        ("slider", "export_holdout", ExportOptions, "holdout_fraction", None),
        ("radio", "export_policy", ExportOptions, "unreviewed", None)],
    "pages/6_Models.py": [
        ("number_input", "gate_gain", Gate, "min_map50_95_gain", None),
        ("number_input", "gate_drop", Gate, "max_class_drop", None)],
    "pages/2_Detect.py": [
        ("slider", "run_conf", DetectParams, "conf", None),
        ("slider", "run_iou", DetectParams, "iou", None),
        ("number_input", "run_imgsz", DetectParams, "imgsz", 320),  # the version's size
        ("number_input", "run_batch", DetectParams, "batch_size", None)],
    "pages/8_Clusters.py": [
        ("number_input", "cluster_components", ClusterParams, "components", None),
        ("selectbox", "cluster_algorithm", ClusterParams, "algorithm", None),
        ("radio", "cluster_projection", ClusterParams, "projection", None)],
    "pages/7_Taxonomy.py": [
        ("slider", "tax_threshold", TaxonomyParams, "threshold", None),
        ("number_input", "tax_top_k", TaxonomyParams, "top_k", None),
        ("selectbox", "tax_kind", TaxonomyParams, "kind", None)],
}


def test_widgets_take_their_defaults_and_bounds_from_the_dataclasses(workspace, tmp_path):
    from tests.conftest import STARTER

    populate(workspace, tmp_path)
    workspace.registry.register_yolo(STARTER, lineage={"imgsz": 320})  # a second version
    workspace.references.create("refs", "cams")
    for page, widgets in WIDGETS.items():
        at = run_page(page)
        assert not at.exception, (page, [e.message for e in at.exception])
        for kind, key, owner, field, value in widgets:
            s = spec(owner, field)
            widget = getattr(at, kind)(key=key)
            assert widget.value == (s.default if value is None else value), (page, key)
            if s.choices:
                assert list(widget.options) == list(s.choices), (page, key)
            else:
                assert (widget.min, widget.max) == (s.min, s.max), (page, key)


def test_rule_forms_offer_the_bounds_of_the_dataclasses(workspace):
    at = run_page("pages/9_Automation.py")
    assert not at.exception, [e.message for e in at.exception]
    params = RULES["retrain_on_corrections"].params
    for name in ("epochs", "batch", "patience"):
        widget = at.number_input(key=f"rule_retrain_on_corrections_{name}")
        s = spec(TrainParams, name)
        assert (widget.value, widget.min, widget.max) == (s.default, s.min, s.max), name
        assert params[name].default == s.default
    gain = at.number_input(key="rule_evaluate_on_batch_min_map50_95_gain")
    assert gain.value == Gate.min_map50_95_gain

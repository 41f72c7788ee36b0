"""Widgets of the Taxonomy page: reference sets with their gallery, taxonomies, retroactive
apply with its before/after."""

from __future__ import annotations

import json

import plotly.graph_objects as go
import streamlit as st

from workbench import Workbench
from workbench.domain import Collection
from workbench.errors import WorkbenchError
from workbench.references import PROMOTABLE
from workbench.taxonomies import MODES, TaxonomyParams
from workbench.ui import choice_input, plain, setting_input, show_errors

GALLERY_PER_CLASS = 8
TREE_EXAMPLE = [{"name": "polygon", "threshold": 0.7},
                {"name": "square", "parent": "polygon"},
                {"name": "triangle", "parent": "polygon"},
                {"name": "round", "classes": ["circle"]}]


def reference_sets(wb: Workbench, collection: Collection) -> str | None:
    """Pick or create a reference set; promote, add, remove; returns the chosen set's name."""
    sets = [r.name for r in wb.references.list(collection.name)]
    with st.expander("New reference set", expanded=not sets):
        name = st.text_input("Name", f"{collection.name}-references", key="refs_new_name")
        if st.button("Create", key="refs_create"):
            with show_errors():
                wb.references.create(name, collection.name)
                st.rerun()
    if not sets:
        return None
    chosen = st.selectbox("Reference set", sets, key="refs_pick")
    refs = wb.references.get(chosen)
    counts = wb.references.class_counts(chosen)
    cols = st.columns(3)
    cols[0].metric("Version", refs.version)
    cols[1].metric("References", sum(counts.values()))
    cols[2].metric("Classes", len(counts))
    st.caption(f"Embeddings: {plain(refs.feature_uri)}")
    left, right = st.columns(2)
    with left.form("refs_promote"):
        labels = st.multiselect("Promote reviewed detections whose verdict is", PROMOTABLE,
                                default=list(PROMOTABLE), key="refs_labels")
        category = st.text_input("Category to record (optional)", key="refs_category")
        if st.form_submit_button("Promote", type="primary"):
            with show_errors():
                done = wb.references.promote(chosen, labels, category=category or None)
                st.toast(f"{done['added']} added, {done['already']} already in "
                         f"(version {done['version']})")
                st.rerun()
    with right.form("refs_edit"):
        ids = st.text_area("Detection ids (one per line)", key="refs_ids")
        true_class = st.text_input("True class (to add; default: predicted)", key="refs_cls")
        add, remove = st.columns(2)
        wanted = [line.strip() for line in ids.splitlines() if line.strip()]
        if add.form_submit_button("Add"):
            with show_errors():
                wb.references.add(chosen, wanted, true_class or None)
                st.rerun()
        if remove.form_submit_button("Remove"):
            with show_errors():
                wb.references.remove(chosen, wanted)
                st.rerun()
    gallery(wb, chosen)
    return chosen


def gallery(wb: Workbench, name: str) -> None:
    """A few crops per class of the set, with their detection ids."""
    by_class: dict[str, list] = {}
    for item in wb.references.items(name):
        by_class.setdefault(item.true_class, []).append(item)
    for cls, items in by_class.items():
        st.markdown(f"**{plain(cls)}** — {len(items)} reference(s)")
        cells = st.columns(GALLERY_PER_CLASS)
        for cell, item in zip(cells, items[:GALLERY_PER_CLASS], strict=False):
            crop = wb.references.thumbnail(item.id)
            if crop:
                cell.image(crop, caption=item.detection_id[-10:], width="stretch")
            else:
                cell.caption(item.detection_id)


def taxonomy_form(wb: Workbench, reference_set: str) -> None:
    """Build a flat taxonomy from the set's classes, or a tree from a node list."""
    with st.form("taxonomy_new"):
        cols = st.columns(4)
        name = cols[0].text_input("Taxonomy name", f"{reference_set}-taxonomy",
                                  key="tax_name")
        kind = choice_input(cols[1], TaxonomyParams, "kind", "Kind", key="tax_kind")
        threshold = setting_input(cols[2], TaxonomyParams, "threshold", "Threshold (cosine)",
                                  step=0.01, slider=True, key="tax_threshold")
        top_k = setting_input(cols[3], TaxonomyParams, "top_k", "top_k", key="tax_top_k")
        nodes = st.text_area("Nodes (JSON list; empty for a flat taxonomy of the set's "
                             "classes)", "", placeholder=json.dumps(TREE_EXAMPLE),
                             key="tax_nodes")
        if st.form_submit_button("Create taxonomy", type="primary"):
            with show_errors():
                parsed = json.loads(nodes) if nodes.strip() else None
                wb.taxonomies.create(name, reference_set, kind, parsed, threshold, int(top_k))
                st.rerun()


def taxonomy_view(wb: Workbench, collection: Collection, name: str) -> None:
    """One taxonomy: its nodes, attachment, label counts and the retroactive apply."""
    taxonomy = wb.taxonomies.get(name)
    refs = wb.references.get(taxonomy.reference_set_id)
    cols = st.columns(4)
    cols[0].metric("Version", taxonomy.version)
    cols[1].metric("Built on references", f"v{taxonomy.reference_version}",
                   delta=None if refs.version == taxonomy.reference_version else
                   f"set is at v{refs.version}", delta_color="off")
    cols[2].metric("Threshold", f"{taxonomy.threshold:.2f}")
    cols[3].metric("top_k", taxonomy.top_k)
    st.dataframe([n.to_dict() for n in taxonomy.nodes], width="stretch", hide_index=True)
    attached = dict((t.name, mode) for t, mode in wb.taxonomies.attachments(collection.name))
    left, right = st.columns(2)
    mode = left.selectbox("Mode on this collection", MODES, key="tax_mode",
                          index=MODES.index(attached.get(name, TaxonomyParams.mode)),
                          help="materialize: after each batch run; retroactive: re-apply to "
                               "every detection now; on_demand: a retriever stage")
    if left.button("Attach" if name not in attached else "Change mode", key="tax_attach"):
        with show_errors():
            wb.taxonomies.attach(name, collection.name, mode)
            st.rerun()
    running = [j for j in wb.jobs.active() if j.kind == "taxonomy"]
    if right.button("Apply retroactively to every detection", type="primary",
                    key="tax_apply", disabled=bool(running)):
        with show_errors():
            st.session_state["taxonomy_job"] = wb.taxonomies.submit_apply(name).id
            st.rerun()
    counts = wb.taxonomies.label_counts(name)
    if counts:
        figure = go.Figure(go.Bar(x=list(counts), y=list(counts.values())))
        figure.update_layout(title="Detections per label", height=280,
                             margin={"l": 10, "r": 10, "t": 40, "b": 10})
        st.plotly_chart(figure, width="stretch")
    apply_report(wb)


def apply_report(wb: Workbench) -> None:
    """Progress of the latest retroactive apply, then what changed, with crops."""

    @st.fragment(run_every=1.0)
    def report() -> None:
        jobs = [j for j in wb.jobs.list(limit=50) if j.kind == "taxonomy"]
        if not jobs:
            return
        job = jobs[0]
        if not job.finished:
            st.progress(min(1.0, job.fraction), text=f"Applying: {job.message}")
            return
        if job.status == "failed":
            st.error(f"The apply failed: {plain(job.message)}")
            return
        result = job.result or {}
        if not result:
            return
        st.markdown(
            f"**Last apply** (version {result['taxonomy_version']}, references "
            f"v{result['reference_version']}): {result['classified']} classified in "
            f"{result['seconds']} s — **{result['changed']} changed**, {result['new']} new, "
            f"{result['unchanged']} unchanged")
        sample = result.get("sample") or []
        if sample:
            st.caption("Before → after")
            cells = st.columns(min(6, len(sample)))
            for cell, change in zip(cells, sample[:6], strict=False):
                crop = detection_crop(wb, change["detection_id"])
                if crop:
                    cell.image(crop, width="stretch")
                cell.caption(f"{plain(change['before'])} → **{plain(change['after'])}** "
                             f"({change['score']:.2f})")

    report()


def detection_crop(wb: Workbench, detection_id: str) -> bytes | None:
    from workbench.ui.review import crop

    try:
        found = wb.detection.get(detection_id)
    except WorkbenchError:
        return None
    obj = wb.buckets.get_object(found.object_id)
    return crop(str(wb.image_path(obj)), found.xyxy)

"""Widgets of the Clusters page: the run form, the 2D scatter, a member grid, the actions."""

from __future__ import annotations

import json

import plotly.graph_objects as go
import streamlit as st

from workbench import Workbench
from workbench.clusters import DEFAULT_PARAMS, REDUCTIONS, ClusterParams, ClusterRun
from workbench.domain import Collection
from workbench.ui import choice_input, pick_version, plain, setting_input, show_errors
from workbench.ui.selection import add_to_references, crop_uri, detection_grid, find_similar

GRID = 8
MEMBER_ROWS = 120  # members in the selectable grid: each crop is a cost of the first render
HOVER_THUMBNAILS = 400  # members whose crop rides along in the scatter's point data


def run_form(wb: Workbench, collection: Collection) -> None:
    """Choose the input (a filter), the algorithm and its parameters, a reduction."""
    taxonomies = [t.name for t in wb.taxonomies.list()]
    with st.form("cluster_run"):
        version = pick_version(wb, collection, "cluster_version", label="Model version",
                               help="Whose detections and embeddings to cluster: any "
                                    "registered version, not only the active one.")
        cols = st.columns(4)
        source = cols[0].selectbox(
            "Detections", ["taxonomy unknown", "all", "by verdict", "by class",
                           "confidence range"], key="cluster_source")
        taxonomy = cols[1].selectbox("Taxonomy (for unknown)", taxonomies or ["—"],
                                     key="cluster_taxonomy")
        value = cols[2].text_input("Verdict or class", "false_positive", key="cluster_value")
        low, high = cols[3].slider("Confidence range", 0.0, 1.0, (0.0, 1.0), 0.05,
                                   key="cluster_conf")
        cols = st.columns(4)
        algorithm = choice_input(cols[0], ClusterParams, "algorithm", "Algorithm",
                                 key="cluster_algorithm")
        params = cols[1].text_input("Parameters (JSON)", "", key="cluster_params",
                                    placeholder=json.dumps(DEFAULT_PARAMS[ClusterParams.algorithm]),
                                    help="Empty: the defaults of the algorithm.")
        reduction = cols[2].selectbox("Reduce first", ["none", *REDUCTIONS],
                                      index=[None, *REDUCTIONS].index(ClusterParams.reduce),
                                      key="cluster_reduction")
        components = setting_input(cols[3], ClusterParams, "components", "Dimensions",
                                   key="cluster_components")
        projection = choice_input(st, ClusterParams, "projection", "2D view", radio=True,
                                  horizontal=True, key="cluster_projection")
        if st.form_submit_button("Run clustering", type="primary"):
            with show_errors():
                filters = {
                    "taxonomy unknown": {"field": f"taxonomy.{taxonomy}", "operator": "eq",
                                         "value": "unknown"},
                    "all": None,
                    "by verdict": {"field": "annotation.label", "operator": "eq",
                                   "value": value},
                    "by class": {"field": "class", "operator": "eq", "value": value},
                    "confidence range": {"AND": [
                        {"field": "confidence", "operator": "gte", "value": low},
                        {"field": "confidence", "operator": "lte", "value": high}]},
                }[source]
                job = wb.clusters.submit(
                    collection.name, algorithm, json.loads(params) if params.strip() else None,
                    filters, {"method": reduction, "n_components": int(components)}
                    if reduction != "none" else None, projection, version=version.version)
                st.session_state["cluster_job"] = job.id
                st.toast("Clustering queued: the worker runs it (UMAP stays compiled there).")
                st.rerun()


def scatter(wb: Workbench, run: ClusterRun) -> None:
    """Members in 2D, coloured by cluster; selecting points shows their crops."""
    members = wb.clusters.members(run.id)
    figure = go.Figure()
    paths: dict[str, str] = {}
    for index, m in enumerate(members):
        if index < HOVER_THUMBNAILS and m["object_id"] not in paths:
            paths[m["object_id"]] = str(wb.image_path(wb.buckets.get_object(m["object_id"])))
    for cluster in sorted({m["cluster"] for m in members}):
        group = [m for m in members if m["cluster"] == cluster]
        images = [crop_uri(paths[m["object_id"]], (m["x1"], m["y1"], m["x2"], m["y2"]))
                  if m["object_id"] in paths else "" for m in group]
        figure.add_scatter(
            x=[m["x"] for m in group], y=[m["y"] for m in group], mode="markers",
            name="noise" if cluster == -1 else f"{cluster}: {run.name_of(cluster)}",
            marker={"size": 6, "opacity": 0.5 if cluster == -1 else 0.85},
            customdata=[[m["detection_id"], m["class_name"], f"{m['confidence']:.2f}", img]
                        for m, img in zip(group, images, strict=True)],
            hovertemplate="%{customdata[0]}<br>%{customdata[1]} %{customdata[2]}"
                          "<extra></extra>")
    figure.update_layout(height=520, margin={"l": 10, "r": 10, "t": 30, "b": 10},
                         title=f"{run.algorithm} — {len(run.clusters)} clusters, {run.noise} "
                               "noise", legend={"itemsizing": "constant"})
    event = st.plotly_chart(figure, width="stretch", on_select="rerun", key="cluster_scatter",
                            selection_mode="points")
    picked = (event or {}).get("selection", {}).get("points", []) if event else []
    if picked:  # what plotly cannot show on hover, the page shows on click
        st.caption("Selected")
        cells = st.columns(min(GRID, len(picked)))
        for cell, point in zip(cells, picked[:GRID], strict=False):
            data = point.get("customdata") or []
            if len(data) > 3 and data[3]:
                cell.image(data[3], caption=plain(f"{data[1]} {data[2]}"), width="stretch")


def cluster_table(run: ClusterRun) -> None:
    rows = [{"cluster": int(key), "size": info["size"], "name": info.get("name", ""),
             "summary": info.get("summary", ""), "labeller": info.get("labeller", "")}
            for key, info in sorted(run.clusters.items(), key=lambda kv: -kv[1]["size"])]
    st.dataframe(rows, width="stretch", hide_index=True)


def member_grid(wb: Workbench, run: ClusterRun, cluster: int,
                limit: int = MEMBER_ROWS) -> list[str]:
    """The cluster's members as a grid of crops; clicking rows selects them (for a reference
    set, to find similar ones, or to leave them out of a relabel). Returns the selected
    detection ids."""
    members = wb.clusters.members(run.id, cluster)
    st.caption(f"{len(members)} members" + (f", the first {limit} shown" if len(members) >
                                            limit else "") +
               " · click rows' left edge to select members")
    paths: dict[str, str] = {}
    rows = []
    for m in members[:limit]:
        if m["object_id"] not in paths:
            paths[m["object_id"]] = str(wb.image_path(wb.buckets.get_object(m["object_id"])))
        rows.append({"crop": crop_uri(paths[m["object_id"]], (m["x1"], m["y1"], m["x2"],
                                                              m["y2"])),
                     "class": m["class_name"], "confidence": round(m["confidence"], 3),
                     "detection": m["detection_id"]})
    return detection_grid(rows, key=f"cluster_members_{run.id}_{cluster}", height=420)


def selection_actions(wb: Workbench, run: ClusterRun, selected: list[str]) -> None:
    """What the members selected in the grid can become: references, or a search."""
    st.caption(f"{len(selected)} member(s) selected")
    add_to_references(wb, wb.collections.get(run.collection_id), selected,
                      key="cluster_refs")
    find_similar(selected, key="cluster_find_similar")


def actions(wb: Workbench, run: ClusterRun, cluster: int, selected: list[str] = ()
            ) -> None:
    """Rename, promote to a taxonomy node, relabel the members (after a confirmation),
    leaving out those selected in the grid if asked to."""
    left, middle, right = st.columns(3)
    with left.form("cluster_rename"):
        name = st.text_input("Name", run.name_of(cluster), key="cluster_name")
        if st.form_submit_button("Rename"):
            with show_errors():
                wb.clusters.rename(run.id, cluster, name)
                st.rerun()
    taxonomies = [t.name for t in wb.taxonomies.list()]
    with middle.form("cluster_promote"):
        taxonomy = st.selectbox("Taxonomy", taxonomies or ["—"], key="cluster_promote_tax")
        parent = st.text_input("Parent node (tree only)", "", key="cluster_parent")
        if st.form_submit_button("Promote to a taxonomy node", disabled=not taxonomies):
            with show_errors():
                done = wb.clusters.promote(run.id, cluster, taxonomy, None, parent or None)
                st.toast(f"node {plain(done['node'])}: {done['references_added']} references; "
                         f"taxonomy v{done['taxonomy_version']}")
    with right.form("cluster_relabel"):
        true_class = st.text_input("Relabel members as", run.name_of(cluster),
                                   key="cluster_class")
        size = run.clusters[str(cluster)]["size"]
        leave_out = st.checkbox(f"Leave out the {len(selected)} member(s) selected in the grid",
                                disabled=not selected,
                                key="cluster_leave_out")
        excluded = list(selected) if leave_out else []
        sure = st.checkbox(f"Yes, annotate {size - len(excluded)} of the {size} members",
                           key="cluster_sure")
        if st.form_submit_button("Relabel for the next export"):
            with show_errors():
                if not sure:
                    st.warning("Tick the box to confirm: this writes one annotation per "
                               "member.")
                else:
                    done = wb.clusters.relabel(run.id, cluster, true_class, confirm=True,
                                               exclude=excluded)
                    st.toast(f"{done['written']} annotations written"
                             + (f", {len(excluded)} member(s) left out" if excluded else ""))

"""Widgets of the Clusters page: the run form, the 2D scatter, a member grid, the actions."""

from __future__ import annotations

import json
import math

import plotly.graph_objects as go
import streamlit as st

from workbench import Workbench
from workbench.clusters import DEFAULT_PARAMS, REDUCTIONS, ClusterParams, ClusterRun
from workbench.domain import Collection
from workbench.ui import choice_input, pick_version, plain, setting_input, show_errors
from workbench.ui.selection import add_to_references, crop_uri, detection_grid, find_similar

GRID = 8
MEMBERS_PER_PAGE = 24  # members in the selectable grid at a time: each crop costs a render


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


@st.cache_data(show_spinner=False, max_entries=16)
def _members(_wb: Workbench, home: str, run_id: str) -> list[dict]:
    """A run's members with their detections: a stored run never changes, so they are read
    once (0.12 s for 6,651 members)."""
    return _wb.clusters.members(run_id)


def scatter(wb: Workbench, run: ClusterRun) -> None:
    """Members in 2D, coloured by cluster; selecting points shows their crops.

    The crops are made for the selected points only: carried in the figure for every point
    they cost the page's first render a crop each (6 s for 400 at 100k detections) and every
    rerun their bytes."""
    import numpy as np

    members = _members(wb, str(wb.home), run.id)
    by_id = {m["detection_id"]: m for m in members}
    # Arrays, not lists: plotly checks a list point by point (0.36 s for 6,651 members).
    clusters = np.array([m["cluster"] for m in members], dtype=int)
    xy = np.array([(m["x"], m["y"]) for m in members], dtype=float).reshape(-1, 2)
    data = np.array([(m["detection_id"], m["class_name"], f"{m['confidence']:.2f}")
                     for m in members], dtype=str).reshape(-1, 3)
    figure = go.Figure()
    for cluster in sorted(set(clusters.tolist())):
        group = clusters == cluster
        figure.add_scattergl(
            x=xy[group, 0], y=xy[group, 1], mode="markers", customdata=data[group],
            name="noise" if cluster == -1 else f"{cluster}: {run.name_of(cluster)}",
            marker={"size": 6, "opacity": 0.5 if cluster == -1 else 0.85},
            hovertemplate="%{customdata[0]}<br>%{customdata[1]} %{customdata[2]}"
                          "<extra></extra>")
    figure.update_layout(height=520, margin={"l": 10, "r": 10, "t": 30, "b": 10},
                         title=f"{run.algorithm} — {len(run.clusters)} clusters, {run.noise} "
                               "noise", legend={"itemsizing": "constant"})
    event = st.plotly_chart(figure, width="stretch", on_select="rerun", key="cluster_scatter",
                            selection_mode="points")
    picked = (event or {}).get("selection", {}).get("points", []) if event else []
    chosen = [by_id[p["customdata"][0]] for p in picked
              if (p.get("customdata") or [None])[0] in by_id]
    if chosen:  # what plotly cannot show on hover, the page shows on click
        st.caption(f"Selected: {len(chosen)}" + (f", the first {GRID} shown"
                                                 if len(chosen) > GRID else ""))
        cells = st.columns(min(GRID, len(chosen)))
        for cell, m in zip(cells, chosen[:GRID], strict=False):
            path = str(wb.image_path(wb.buckets.get_object(m["object_id"])))
            cell.image(crop_uri(path, (m["x1"], m["y1"], m["x2"], m["y2"])),
                       caption=plain(f"{m['class_name']} {m['confidence']:.2f}"),
                       width="stretch")


def cluster_table(run: ClusterRun) -> None:
    rows = [{"cluster": int(key), "size": info["size"], "name": info.get("name", ""),
             "summary": info.get("summary", ""), "labeller": info.get("labeller", "")}
            for key, info in sorted(run.clusters.items(), key=lambda kv: -kv[1]["size"])]
    st.dataframe(rows, width="stretch", hide_index=True)


def member_grid(wb: Workbench, run: ClusterRun, cluster: int) -> list[str]:
    """The cluster's members as a grid of crops, a page at a time; clicking rows selects
    them (for a reference set, to find similar ones, or to leave them out of a relabel), and
    the selection is kept across the pages. Returns the selected detection ids."""
    members = wb.clusters.members(run.id, cluster)
    scope = f"{run.id}_{cluster}"
    state = st.session_state.setdefault(f"cluster_members_state_{scope}",
                                        {"page": 0, "selected": []})
    pages = max(1, math.ceil(len(members) / MEMBERS_PER_PAGE))
    state["page"] = min(state["page"], pages - 1)
    shown = members[state["page"] * MEMBERS_PER_PAGE:(state["page"] + 1) * MEMBERS_PER_PAGE]
    paths: dict[str, str] = {}
    rows = []
    for m in shown:
        if m["object_id"] not in paths:
            paths[m["object_id"]] = str(wb.image_path(wb.buckets.get_object(m["object_id"])))
        rows.append({"crop": crop_uri(paths[m["object_id"]], (m["x1"], m["y1"], m["x2"],
                                                              m["y2"])),
                     "class": m["class_name"], "confidence": round(m["confidence"], 3),
                     "detection": m["detection_id"]})
    picked = detection_grid(rows, key=f"cluster_members_{scope}_{state['page']}",
                            height=min(420, 38 + 56 * len(rows)), selected=state["selected"])
    on_page = {row["detection"] for row in rows}
    state["selected"] = [d for d in state["selected"] if d not in on_page] + picked
    nav = st.columns([1, 1, 6])
    nav[0].button("← Previous", key="cluster_members_previous", disabled=state["page"] == 0,
                  on_click=_turn, args=(state, -1), width="stretch")
    nav[1].button("Next →", key="cluster_members_next", disabled=state["page"] >= pages - 1,
                  on_click=_turn, args=(state, 1), width="stretch")
    first = state["page"] * MEMBERS_PER_PAGE
    nav[2].caption(f"members {first + 1:,}–{first + len(rows):,} of {len(members):,} (page "
                   f"{state['page'] + 1} of {pages}) · click rows' left edge to select members;"
                   " the selection is kept across pages")
    return list(state["selected"])


def _turn(state: dict, step: int) -> None:
    state["page"] += step


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

"""Helpers for the Streamlit pages: the only part of the package that imports streamlit.

A page is a few lines: ``wb = page_setup("Ingest")``, read widgets, call one service, render.
"""

from __future__ import annotations

import io
import re
import shutil
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import streamlit as st

from workbench import Workbench
from workbench.config import load_settings
from workbench.domain import ImageObject, Job
from workbench.errors import WorkbenchError
from workbench.params import spec
from workbench.ui.render import MISSING_TEXT, image_missing, placeholder

APP_TITLE = "Flywheel Workbench"
# The sidebar's page list (Streamlit's own would call the home page "app").
NAVIGATION = (
    ("app.py", "Home", ":material/home:"),
    ("pages/1_Ingest.py", "Ingest", ":material/upload:"),
    ("pages/2_Detect.py", "Detect", ":material/center_focus_strong:"),
    ("pages/3_Review.py", "Review", ":material/rate_review:"),
    ("pages/11_Search.py", "Search", ":material/image_search:"),
    ("pages/12_Retrievers.py", "Retrievers", ":material/filter_alt:"),
    ("pages/10_Annotations.py", "Annotations", ":material/fact_check:"),
    ("pages/4_Stats.py", "Stats", ":material/monitoring:"),
    ("pages/5_Train.py", "Export & Train", ":material/model_training:"),
    ("pages/6_Models.py", "Models", ":material/deployed_code:"),
    ("pages/7_Taxonomy.py", "Taxonomy", ":material/account_tree:"),
    ("pages/8_Clusters.py", "Clusters", ":material/bubble_chart:"),
    ("pages/9_Automation.py", "Automation", ":material/webhook:"),
)


@st.cache_resource(show_spinner=False)
def _workbench(home: str) -> Workbench:
    return Workbench.open(home)


WORKSPACE_KEY = "workspace.home"  # the workspace this browser session works in
_WORKSPACE_ERROR = "workspace.error"


def current_home() -> Path:
    """The workspace of this browser session: the one chosen in the sidebar, else the
    ``WORKBENCH_HOME`` setting."""
    chosen = st.session_state.get(WORKSPACE_KEY)
    return Path(chosen) if chosen else load_settings().home.resolve()


def page_setup(title: str) -> Workbench:
    """Configure the page, open the session's workspace (once per process and path) and
    start its worker."""
    st.set_page_config(page_title=f"{title} · {APP_TITLE}", layout="wide")
    settings = load_settings()
    home = current_home()
    wb = _workbench(str(home))
    if settings.autostart_worker:
        from workbench.jobs import ensure_worker

        ensure_worker(home)
    with st.sidebar:
        for path, label, icon in NAVIGATION:
            st.page_link(path, label=label, icon=icon)
        st.divider()
        workspace_switcher(home)
    from workbench.ui.signin import reviewer

    reviewer(wb)  # beyond loopback: a key first; verdicts are then the key's name's
    return wb


def workspace_switcher(home: Path) -> None:
    """The sidebar's workspace: which one this is, the recent ones, open or create one by
    path. The switch happens in the session (no restart); a path that is not a workspace
    gets a one-line error and the current workspace stays."""
    from workbench.ui import workspaces

    st.caption(f"Workspace {plain(home)}")
    with st.expander("Switch workspace", expanded=_WORKSPACE_ERROR in st.session_state):
        others = [p for p in workspaces.recent() if p != str(home)]
        if others:
            st.selectbox("Recent", others, key="ws_recent")
            st.button("Open recent", key="ws_open_recent", on_click=_switch_workspace,
                      args=("ws_recent", False), width="stretch")
        st.text_input("Folder", key="ws_path", placeholder="/path/to/workspace",
                      help="Open: a folder that holds a workspace. Create: a new or empty "
                           "folder becomes a new workspace.")
        left, right = st.columns(2)
        left.button("Open", key="ws_open", on_click=_switch_workspace, args=("ws_path", False),
                    width="stretch")
        right.button("Create", key="ws_create", on_click=_switch_workspace,
                     args=("ws_path", True), width="stretch")
        error = st.session_state.get(_WORKSPACE_ERROR)
        if error:
            st.error(plain(error), icon="⚠️")


def _switch_workspace(widget: str, create: bool) -> None:
    """Make the folder in ``widget`` this session's workspace, or say why not."""
    import sqlalchemy.exc

    from workbench.ui import workspaces

    before = current_home()
    typed = st.session_state.get(widget) or ""
    st.session_state.pop(_WORKSPACE_ERROR, None)
    try:
        target = workspaces.check_path(typed, create,
                                       shared_database=bool(load_settings().database_url))
        _workbench(str(target))  # opened (created, migrated) here: a failure leaves `before`
    except WorkbenchError as exc:
        st.session_state[_WORKSPACE_ERROR] = str(exc)
        return
    except (OSError, sqlalchemy.exc.DatabaseError) as exc:  # unreadable folder, foreign file
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        st.session_state[_WORKSPACE_ERROR] = (f"cannot open a workspace in {typed.strip()}: "
                                              f"{reason}; choose another folder")
        return
    # The pages' choices (collection, filters, selections, a signed-in reviewer) belong to
    # the old workspace: the new one starts as a fresh session would.
    for key in list(st.session_state):
        del st.session_state[key]
    st.session_state[WORKSPACE_KEY] = str(target)
    try:
        workspaces.remember(target, before)
    except OSError as exc:  # a read-only config folder costs the list, not the switch
        st.toast(f"Switched, but the recent list could not be saved: {plain(exc)}")


def pick_version(wb: Workbench, collection, key: str, where=None, label: str = "Version",
                 **kwargs):
    """One of the collection's registered versions (the active one first chosen), as an
    ``ExtractorVersion``: what a page exports, trains, clusters or detects with."""
    versions = [v.version for v in wb.registry.list(collection.extractor_name)]
    active = collection.active_version
    version = (where or st).selectbox(
        label, versions, index=versions.index(active) if active in versions else 0, key=key,
        format_func=lambda v: f"{collection.extractor_name}@{v}"
        + (" (active)" if v == active else ""), **kwargs)
    return wb.registry.get(collection.extractor_name, version)


_MARKDOWN = re.compile(r"([\\`*_{}\[\]<>#|~$!:])")


def plain(text: object) -> str:
    """A user's string (a name, a file name, a metadata value, an error quoting input) made
    safe to put in anything Streamlit renders as Markdown: the characters that make links,
    images, HTML, Streamlit's ``:color[…]`` directives, LaTeX, code and emphasis are escaped,
    so ``![x](http://…)`` shows as those characters and loads nothing, and newlines are
    folded so that no block can start."""
    return _MARKDOWN.sub(r"\\\1", " ".join(str(text).split()))


@contextmanager
def show_errors() -> Iterator[None]:
    """Show a WorkbenchError as a message on the page; anything else is a bug and surfaces."""
    try:
        yield
    except WorkbenchError as exc:
        st.error(plain(exc), icon="⚠️")


def pick_collection(wb: Workbench, key: str, empty: str, where=None):
    """The page's collection: a select box, or a note and a stop when there is none."""
    collections = wb.collections.list()
    if not collections:
        st.info(empty)
        st.stop()
    names = [c.name for c in collections]
    return wb.collections.get((where or st).selectbox("Collection", names, key=key))


def setting_input(where, owner: type, name: str, label: str, *, key: str, value=None,
                  step: float | None = None, slider: bool = False, **kwargs):
    """A number widget for one run parameter: its bounds, help and (unless ``value`` is
    given) default come from the dataclass that defines it (``TrainParams``, ``Gate``, …)."""
    s = spec(owner, name)
    cast = int if s.kind is int else float
    low, high = (None if b is None else cast(b) for b in (s.min, s.max))
    value = cast(s.default if value is None else value)
    step = None if step is None else cast(step)
    if slider:
        return where.slider(label, low, high, value, step, key=key, help=s.help, **kwargs)
    return where.number_input(label, low, high, value, step, key=key, help=s.help, **kwargs)


def choice_input(where, owner: type, name: str, label: str, *, key: str, radio: bool = False,
                 **kwargs):
    """A choice among a run parameter's choices, its default first selected."""
    s = spec(owner, name)
    widget = where.radio if radio else where.selectbox
    return widget(label, s.choices, index=s.choices.index(s.default), key=key,
                  help=kwargs.pop("help", s.help), **kwargs)


def stage_uploads(wb: Workbench, files: Sequence) -> tuple[Path, list]:
    """Save browser uploads to a fresh staging folder; return it and ingest sources."""
    from workbench.ingest import Source

    folder = wb.settings.staging_dir / uuid.uuid4().hex
    folder.mkdir(parents=True)
    sources = []
    for index, upload in enumerate(files):
        # A per-file subfolder keeps two uploads with the same name apart.
        target = folder / f"{index:05d}" / Path(upload.name).name
        target.parent.mkdir()
        target.write_bytes(upload.getbuffer())
        sources.append(Source(str(target), label=upload.name))
    return folder, sources


def discard_staging(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)


@st.cache_data(show_spinner=False, max_entries=5000)
def _thumbnail(path: str, size: int) -> bytes:
    from workbench.images import load_image

    image = load_image(Path(path))
    image.thumbnail((size, size))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def thumbnail(wb: Workbench, obj: ImageObject, size: int = 320) -> bytes:
    """JPEG bytes of an image scaled to fit ``size``; a grey "image missing" tile of its
    shape when its file cannot be read (not cached, so that a restored file shows)."""
    try:
        return _thumbnail(str(wb.image_path(obj)), size)
    except OSError:  # deleted from the blob store, a mount that moved, a truncated file
        image, _ = placeholder((obj.width, obj.height), size)
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=85)
        return buffer.getvalue()


def image_grid(wb: Workbench, objects: Sequence[ImageObject], columns: int = 6) -> None:
    """Thumbnails in rows, each captioned with its source, size and metadata."""
    for start in range(0, len(objects), columns):
        cells = st.columns(columns)
        for cell, obj in zip(cells, objects[start : start + columns], strict=False):
            with cell:
                st.image(thumbnail(wb, obj), caption=plain(Path(obj.source).name),
                         width="stretch")
                details = [f"{obj.width}×{obj.height} {obj.format}"]
                if image_missing(wb.image_path(obj)):
                    details.insert(0, f"**{MISSING_TEXT}**: its file is not in the blob store")
                details += [f"{plain(k)}: {plain(v)}" for k, v in obj.metadata.items()]
                st.caption(" · ".join(details))


def _job_row(home: Path, job: Job, cancellable: bool) -> None:
    label = f"**{job.kind}** `{job.id}` — {job.status}: {plain(job.message)}"
    left, right = st.columns([5, 1])
    if job.status == "running" and job.progress_total:
        left.progress(min(1.0, job.fraction), text=label)
    else:
        left.markdown(label)
    if cancellable and not job.finished and not job.cancel_requested:
        right.button("Cancel", key=f"cancel-{job.id}", on_click=_cancel,
                     args=(str(home), job.id))


def _cancel(home: str, job_id: str) -> None:
    _workbench(home).jobs.cancel(job_id)


def jobs_panel(wb: Workbench, title: str = "Jobs") -> None:
    """Active jobs with progress bars that update by themselves, and the last finished ones."""

    @st.fragment(run_every=1.0)
    def panel() -> None:
        active = wb.jobs.active()
        active_ids = {job.id for job in active}
        previously = st.session_state.get("_active_jobs", set())
        st.session_state["_active_jobs"] = active_ids
        if previously - active_ids:
            st.rerun()  # a job just finished: refresh the whole page to show its results
        st.subheader(title)
        if not active:
            st.caption("No job is running.")
        for job in active:
            _job_row(wb.home, job, cancellable=True)
        finished = [job for job in wb.jobs.list(limit=5) if job.finished]
        if finished:
            with st.expander("Recently finished", expanded=False):
                for job in finished:
                    _job_row(wb.home, job, cancellable=False)
                    if job.status == "failed" and job.error:
                        st.code(job.error[-2000:], language="text")

    panel()

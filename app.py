"""amortinv app: what exists today, the datasets on this machine and what augmentation does.

Run with `make run` (or `streamlit run app.py`). Pre-training, learning invariances and the
feature probe arrive with their issues; this page only shows what the library already does.
"""

from __future__ import annotations

import numpy as np
import streamlit as st
import torch

import amortinv.data as data
from amortinv.augment import LogMel, make_augment
from amortinv.invariance import default_space

st.set_page_config(page_title="amortinv", page_icon="🔀", layout="wide")


@st.cache_data(show_spinner="Loading dataset…")
def load_examples(name: str, n: int = 8) -> tuple[np.ndarray, dict]:
    """The first ``n`` test examples of a dataset and what the page needs to know about it."""
    ds = data.get(name)
    meta = {"modality": ds.modality, "task": ds.task, "description": ds.description,
            "needs": ds.needs, "train": len(ds.train), "test": len(ds.test),
            "shape": ds.input_shape, "classes": list(ds.class_names),
            "sample_rate": ds.sample_rate}
    return ds.test.x[:n], meta


def entry_table(names: list[str]) -> list[dict]:
    rows = []
    for name in names:
        e = data.info(name)
        rows.append({"dataset": e.name, "modality": e.modality, "task": e.task,
                     "kind": e.kind, "description": e.description, "needs": e.needs})
    return rows


st.title("amortinv: amortised invariance learning")
st.markdown(
    "A contrastive encoder `f(x; i)` takes an **invariance vector** `i` — one value in [0, 1] "
    "per augmentation group — as an input. Pre-training draws a vector per batch and makes "
    "both views with only the groups it switches on; downstream, a linear readout and `i` are "
    "learned together, so each task picks the invariances it needs "
    "(Chavhan et al., ICLR 2023)."
)
st.info("This build has the foundation: offline datasets, invariance spaces and batched "
        "augmentation. Encoders, pre-training, downstream learning and the feature probe "
        "come next.")

available = data.names()
with st.expander(f"Datasets on this machine ({len(available)})", expanded=False):
    st.dataframe(entry_table(available), hide_index=True, width="stretch")
    missing = [e for e in data.entries() if not e.available()]
    if missing:
        st.caption("Not available here: " + "; ".join(f"**{e.name}**: {e.hint}"
                                                         for e in missing))

st.header("What each invariance group does")
name = st.selectbox("Dataset", available,
                    index=available.index("fashion-mnist") if "fashion-mnist" in available else 0)
try:
    examples, meta = load_examples(name)
except (data.DatasetUnavailable, ValueError) as err:
    st.error(str(err))
    st.stop()
st.caption(f"{meta['description']} — {meta['train']} train / {meta['test']} test; "
           f"task: {meta['task']}. {meta['needs']}")

channels = examples.shape[1] if meta["modality"] == "image" else 1
space = default_space(meta["modality"], channels)
cols = st.columns(len(space))
vector = {}
for col, group in zip(cols, space.groups, strict=True):
    vector[group.name] = col.slider(group.name, 0.0, 1.0, 1.0, 0.05, help=group.description,
                                    key=f"group-{group.name}")
seed = st.number_input("Random seed", 0, 10_000, 0, key="seed")
augment = make_augment(space)
generator = torch.Generator().manual_seed(int(seed))

if meta["modality"] == "image":
    x = torch.tensor(examples, dtype=torch.float32) / 255  # cached arrays are read-only
    views = augment.views(x, vector, generator=generator)
    for label, batch in (("original", x), ("view 1", views[0]), ("view 2", views[1])):
        st.caption(label)
        st.image([img.permute(1, 2, 0).numpy().squeeze() for img in batch], width=96,
                 clamp=True)
else:
    spec = LogMel()(torch.tensor(examples[:4]))
    views = augment.views(spec, vector, generator=generator)
    for i, row in enumerate(st.columns(4)):
        row.audio(examples[i], sample_rate=meta["sample_rate"])
        for label, batch in (("original", spec), ("view 1", views[0])):
            img = batch[i].flip(0).numpy()
            img = (img - img.min()) / max(float(np.ptp(img)), 1e-6)
            row.image(img, caption=f"{label} (log-mel)", width="stretch", clamp=True)

"""Home: what amortised invariance learning is; the chosen encoder's card and dataset."""

import streamlit as st
import torch

from amortinv import ui
from amortinv.augment import LogMel, make_augment

st.title("amortinv: amortised invariance learning")
st.markdown(
    "A contrastive encoder `f(x; i)` takes an **invariance vector** `i` — one value in [0, 1] "
    "per augmentation group — as an input. Pre-training draws one vector per batch and makes "
    "both views with only the groups it switches on, so one network learns every combination "
    "of invariances. Downstream, a linear readout and `i` are learned together by gradient "
    "descent: each task picks the invariances it needs — class labels want invariance to "
    "crops and colour, flip or blur detection want sensitivity (Chavhan et al., ICLR 2023)."
)
encoder, dataset, path, ds = ui.page(None)  # the introduction above shows regardless
space = encoder.space

st.subheader("What the vector switches on")
st.caption(f"Two views of the same examples from **{dataset}** at three invariance vectors: "
           "at all zeros the views are identical; at all ones they differ by every group.")
augment = make_augment(space)
examples = ds.test.x[:6]
for label, value in (("all zeros", 0.0), ("half", 0.5), ("all ones", 1.0)):
    g = torch.Generator().manual_seed(0)
    cols = st.columns([1, 6])
    cols[0].markdown(f"**{label}**")
    with cols[1]:
        if encoder.config.modality == "image":
            x = torch.tensor(examples, dtype=torch.float32) / 255
            view = augment(x, value, generator=g)
            ui.show_image_grid((view * 255).round().to(torch.uint8).numpy(), width=64)
        else:
            spec = LogMel(encoder.config.mel)(torch.tensor(examples[:4]))
            view = augment(spec, value, generator=g)
            st.image([ui.spectrogram_image(v) for v in view], width=140, clamp=True)

left, right = st.columns(2)
with left:
    st.subheader("Encoder card")
    card = encoder.card
    cfg = encoder.config
    st.markdown(
        f"- **file**: `{path}`\n"
        f"- **trained on**: {card.get('dataset', '?')} ({card.get('steps', '?')} steps, "
        f"preset `{card.get('preset', '?')}`, {card.get('method', '?')}, "
        f"{card.get('sampling', '?')} vectors)\n"
        f"- **model**: {cfg.arch}, width {cfg.width}, conditioning `{cfg.conditioning}`"
        + (f" ({cfg.bases} bases, stages {list(cfg.conditioned_stages)})"
           if cfg.conditioning == "hyper" else "") + "\n"
        f"- **invariance space** `{space.name}`: "
        + ", ".join(f"`{g.name}`" for g in space.groups))
    metrics = card.get("metrics", {})
    if metrics:
        st.dataframe([metrics], hide_index=True)
with right:
    st.subheader("Dataset")
    st.markdown(f"**{dataset}**: {ds.description}  \n{len(ds.train)} train / {len(ds.test)} "
                f"test, {ds.target_kind}. *{ds.needs}*")
    st.dataframe([{"group": g.name, "what it does at 1": g.description} for g in space.groups],
                 hide_index=True)

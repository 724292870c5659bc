"""Home: what amortised invariance learning is; the chosen encoder's card and dataset."""

import streamlit as st

from amortinv import data, ui

#: What the downstream suites' tasks learned with this kind of encoder (README's tables), where
#: the paper's image examples below do not name its groups.
LEARNED = {
    "audio": "In this project's audio suite, spoken digits learned invariance to time shifts "
             "and masking, and pitch estimation sensitivity to pitch.",
    "rgb": "In this project's colour suite, the colour tasks (hue, grayscale, the colour "
           "label) learned sensitivity to colour and grayscale, and invariance to crops.",
}

st.title("amortinv: amortised invariance learning")
st.markdown(
    "A contrastive encoder `f(x; i)` takes an **invariance vector** `i` — one value in [0, 1] "
    "per augmentation group — as an input. Pre-training draws one vector per batch and makes "
    "both views with only the groups it switches on, so one network learns every combination "
    "of invariances. Downstream, a linear readout and `i` are learned together by gradient "
    "descent: each task picks the invariances it needs — class labels want invariance to "
    "crops and colour, flip or blur detection want sensitivity (Chavhan et al., ICLR 2023)."
)
# The card needs no data: it shows at once, even while a dataset is still being prepared.
encoder, dataset, path, _ = ui.page(None, with_dataset=False)
space, card, cfg = encoder.space, encoder.card, encoder.config
if space.name in LEARNED:
    st.markdown(LEARNED[space.name])

left, right = st.columns(2)
with left:
    st.subheader("Encoder card")
    st.markdown(
        f"- **file**: `{path.relative_to(ui.ROOT) if path.is_relative_to(ui.ROOT) else path}`\n"
        f"- **trained on**: {card.get('dataset', '?')} ({card.get('steps', '?')} steps, "
        f"preset `{card.get('preset', '?')}`, {card.get('method', '?')}, "
        f"{card.get('sampling', '?')} vectors)\n"
        f"- **model**: {cfg.arch}, width {cfg.width}, conditioning `{cfg.conditioning}`"
        + (f" ({cfg.bases} bases, stages {list(cfg.conditioned_stages)})"
           if cfg.conditioning == "hyper" else "") + "\n"
        f"- **invariance space** `{space.name}`: "
        + ", ".join(f"`{g.name}`" for g in space.groups))
    if card.get("metrics"):
        st.dataframe([card["metrics"]], hide_index=True)
with right:
    st.subheader("Invariance groups")
    st.dataframe([{"group": g.name, "what it does at 1": g.description} for g in space.groups],
                 hide_index=True)

st.subheader("What the vector switches on")
entry = data.info(dataset)
st.caption(f"The same examples from **{dataset}** ({entry.description}) augmented at three "
           "invariance vectors, one row each, with the same random draws: at all zeros they "
           "are left as they are; at all ones every group applies.")
ds = ui.dataset_when_ready(dataset, encoder)
if ds is not None:
    st.markdown(f"{len(ds.train)} train / {len(ds.test)} test, {ds.target_kind}. *{ds.needs}*")
    examples = ds.test.x[:6] if encoder.config.modality == "image" else ds.test.x[:4]
    ui.augmentation_preview(encoder, examples,
                            {"all zeros": 0.0, "half": 0.5, "all ones": 1.0})

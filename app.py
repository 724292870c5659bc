"""amortinv app: learn a task's invariances live, probe features, map invariances.

Run with `make run` (or `python -m amortinv.serve`, or `streamlit run app.py`). Pages live in
pages/ and stay thin: they call the library (amortinv) and draw.
"""

import streamlit as st

from amortinv.projection import warm_up_umap

st.set_page_config(page_title="amortinv", page_icon="🔀", layout="wide")
warm_up_umap()  # umap-learn compiles in the background (~15 s) while pages load

pages = [
    st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("pages/learn.py", title="Learn invariances", icon=":material/tune:"),
    st.Page("pages/probe.py", title="Probe features", icon=":material/scatter_plot:"),
    st.Page("pages/map.py", title="Invariance map", icon=":material/radar:"),
    st.Page("pages/runs.py", title="Pre-training runs", icon=":material/model_training:"),
]
st.navigation(pages).run()

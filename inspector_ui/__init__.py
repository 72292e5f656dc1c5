"""The PaDiM Inspector Streamlit app's pieces. No PaDiM math lives here (see padim_core).

``actions`` (what a button does, no drawing) · ``widgets`` (page frame, messages, progress,
synced sliders) · ``panels`` (inputs whose buttons run actions) · ``cards`` (model card,
comparison side) · ``state`` (typed session state) · ``resources`` (the shared backbone) ·
``uploads`` (browser files and the demo set as engine inputs) · ``views`` / ``plots`` (tables,
images and figures from stored results) · ``testing`` (AppTest helpers).
"""

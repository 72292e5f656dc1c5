"""UI support for the PaDiM Inspector Streamlit app: session state, cached resources,
upload handling, image views and plot builders. No PaDiM math lives here (see padim_core)."""

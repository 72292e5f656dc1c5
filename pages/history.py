"""History page: every inspected image recorded in the workspace, filtered by date, model,
version, verdict and decision; one row's image and heat-map thumbnails and the operator's decision;
CSV export."""

from __future__ import annotations

from datetime import date, timedelta

import streamlit as st

from inspector_ui import feedback_panel, recorded, widgets, workspace
from inspector_ui.text import md
from padim_core.store import DECISIONS, VERDICTS

widgets.page_start("History")
store = workspace.get_store()
workspace.sync_url(store)   # not shown here, but a reload must not lose the open model

ALL = "all"
with st.container(border=True):
    c1, c2, c3, c4, c5 = st.columns([2, 2, 1, 1, 2])
    today = date.today()
    period = c1.date_input("Dates", value=(today - timedelta(days=30), today),
                           key="hist_dates", format="YYYY-MM-DD")
    model = c2.selectbox("Model", [ALL, *workspace.model_names(store)], key="hist_model")
    version = c3.selectbox("Version", [ALL, *([] if model == ALL
                                              else store.history.versions(model))],
                           key="hist_version", disabled=model == ALL,
                           format_func=lambda v: v if v == ALL else f"@{v}")
    verdict = c4.selectbox("Verdict", [ALL, *VERDICTS], key="hist_verdict")
    decision = c5.selectbox("Decision", [ALL, "none", *DECISIONS], key="hist_decision",
                            format_func=lambda d: {"none": "no decision yet"}.get(
                                d, DECISIONS.get(d, d)))
dates = [d for d in (period if isinstance(period, tuple | list) else [period]) if d]
chosen = workspace.filters(dates[0] if dates else None, dates[-1] if dates else None,
                           None if model == ALL else model,
                           None if verdict == ALL else verdict,
                           None if decision == ALL else decision,
                           None if version == ALL else version)

total = store.history.count(chosen)
rows = store.history.find(chosen, limit=workspace.MAX_ROWS)
left, right = st.columns([3, 1])
left.markdown(f"**{total}** inspected image(s)"
              + (f", the newest {len(rows)} shown" if total > len(rows) else ""))
right.download_button("Download CSV", data=workspace.history_csv(store, chosen),
                      file_name="inspection-history.csv", mime="text/csv", key="hist_csv",
                      disabled=total == 0)
if not rows:
    st.info("Nothing recorded for these filters. Images inspected with a library model "
            "are recorded here (`padim predict --model NAME --record` on the command line).")
    st.stop()

st.dataframe(workspace.history_table(rows), hide_index=True, key="hist_table",
             column_config={"score": st.column_config.NumberColumn(format="%.3f"),
                            "score / threshold": st.column_config.NumberColumn(format="%.2f")})

by_id = {r.id: r for r in rows}
picked = st.selectbox("Row", list(by_id), key="hist_row",
                      format_func=lambda i: f"#{i} · {by_id[i].file_name} · {by_id[i].verdict}")
row = by_id[picked]
image, overlay = store.history.thumbnails(row.id)
with st.container(border=True):
    # The file name, model and operator are typed text (an upload names itself): escaped.
    st.markdown(f"**{md(row.file_name)}** · {md(row.model_ref)} · score {row.score:.3f} "
                f"(threshold {row.image_threshold:.3f}) · **{row.verdict}** · "
                f"{row.inspected_at.astimezone():%Y-%m-%d %H:%M:%S}"
                + (f" · by {md(row.operator)}" if row.operator else ""))
    recorded.thumbnail_pair(image, overlay, "image", "heat map")
    workspace.decision_panel(store, row.id, "hist")
    feedback_panel.show(store, row.id, "hist", image=feedback_panel.session_image(row.id))

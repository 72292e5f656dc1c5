"""The fit panel's resize and scoring options reach the settings a model is fitted with."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest

from inspector_ui import testing as t


def _panel() -> None:
    import streamlit as st

    from inspector_ui.panels import fit_settings

    st.session_state["settings"] = fit_settings("t")


def test_defaults_then_a_square_resize_offers_the_crop() -> None:
    at = AppTest.from_function(_panel, default_timeout=t.TIMEOUT).run()
    assert not at.exception, [e.value for e in at.exception]
    first = at.session_state["settings"]
    assert (first.resize, first.sigma, first.score_top_percent) == ("pad-reflect", 4.0, 0.5)
    assert first.upsample == "bilinear"
    assert first.crop == first.image_size
    at.radio(key="t_resize").set_value("stretch")
    at.number_input(key="t_sigma").set_value(6.0)
    at.number_input(key="t_top").set_value(0.0)
    at.radio(key="t_upsample").set_value("nearest")
    at.run()
    picked = at.session_state["settings"]
    assert (picked.resize, picked.sigma, picked.score_top_percent) == ("stretch", 6.0, 0.0)
    assert picked.upsample == "nearest"
    assert picked.crop < picked.image_size
    at.radio(key="t_resize").set_value("pad").run()
    assert at.session_state["settings"].crop == at.session_state["settings"].image_size


def _caption(at: AppTest) -> str:
    return next(c.value for c in at.caption if "settings" in c.value)


def test_presets_set_the_panel_and_the_widgets_stay_free() -> None:
    at = AppTest.from_function(_panel, default_timeout=t.TIMEOUT).run()
    assert _caption(at) == "These are the **quality** settings (the default)."
    at.button(key="t_preset_reference").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.warning, [w.value for w in at.warning]
    back = at.session_state["settings"]
    assert (back.backbone, back.d, back.image_size, back.crop, back.resize, back.upsample,
            back.sigma, back.score_top_percent) == \
        ("efficientnet_lite0", 100, 256, 224, "stretch", "nearest", 4.0, 0.0)
    assert _caption(at) == "These are the **reference** settings."
    at.number_input(key="t_sigma").set_value(6.0).run()           # still adjustable
    assert at.session_state["settings"].sigma == 6.0
    assert _caption(at) == "Custom settings."
    at.button(key="t_preset_reference").click().run()              # back to the preset
    assert at.session_state["settings"].sigma == 4.0
    at.button(key="t_preset_quality").click().run()
    picked = at.session_state["settings"]
    assert (picked.backbone, picked.d, picked.image_size, picked.crop, picked.resize,
            picked.upsample, picked.sigma, picked.score_top_percent) == \
        ("efficientnet_lite2", 192, 224, 224, "pad-reflect", "bilinear", 4.0, 0.5)
    assert _caption(at) == "These are the **quality** settings (the default)."
